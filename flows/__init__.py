"""Prefect flows: thin wrappers that schedule the plain functions of features/ and models/.

``run`` runs one here and now (Prefect's temporary local server, nothing to start by hand);
``serve`` serves them all to a Prefect server, ``daily`` on a cron schedule. Adding a flow: see
:mod:`flows.steps`.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import Flow
from prefect import serve as prefect_serve
from prefect.exceptions import ParameterTypeError
from prefect.settings import PREFECT_API_URL

from cdp.config import Settings
from cdp.errors import InvalidInput
from flows.daily import daily
from flows.runtime import local_api, prefect_settings, task_runner
from flows.steps import STEPS

FLOWS: dict[str, Flow] = {**STEPS, "daily": daily}
SCHEDULED = "daily"


def chosen(name: str) -> Flow:
    if name not in FLOWS:
        raise InvalidInput(f"no flow named {name!r}; the flows are {', '.join(FLOWS)}")
    return FLOWS[name]


def run(name: str, settings: Settings, **parameters: Any) -> Any:
    """Run the flow ``name`` in this process with the configured task runner; its return value."""
    flow = chosen(name).with_options(task_runner=task_runner(settings))
    unknown = sorted(set(parameters) - set(flow.parameters.properties))
    if unknown:
        raise InvalidInput(f"{name} has no parameter {', '.join(unknown)}; "
                           f"it takes {', '.join(flow.parameters.properties) or 'none'}")
    # Prefect logs pydantic's whole report before raising; the user gets it in one line instead.
    checks = logging.getLogger("prefect.flows")
    level = checks.level
    checks.setLevel(logging.CRITICAL)
    try:
        flow.validate_parameters(parameters)
    except ParameterTypeError as error:
        raise InvalidInput(f"{name}: {' '.join(str(error).split())}") from None
    finally:
        checks.setLevel(level)
    with prefect_settings(settings), local_api():
        return flow(**parameters)


def serve(settings: Settings) -> None:
    """Serve every flow to the Prefect server (``daily`` on its schedule) until interrupted."""
    with prefect_settings(settings):
        if not PREFECT_API_URL.value():
            # Prefect's temporary server runs no scheduler: the schedule would never fire.
            raise InvalidInput("serving needs a Prefect server: start one (`prefect server start`) and "
                               "set PREFECT_API_URL=http://127.0.0.1:4200/api")
        runner = task_runner(settings)
        prefect_serve(*(
            flow.with_options(task_runner=runner).to_deployment(
                name=name, cron=settings.flows_schedule if name == SCHEDULED else None)
            for name, flow in FLOWS.items()
        ))
