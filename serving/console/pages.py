"""The console's pages: each reads the ``/v1`` APIs as the signed-in user (see :mod:`serving.console`)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup

from serving.body import StrictJSONRoute
from serving.console.charts import bars, interval, paired_bars, rates, share
from serving.console.flow import duration, flow
from serving.console.session import ApiProblem, ConsoleSession, api_for, render

router = APIRouter(route_class=StrictJSONRoute, include_in_schema=False)

# Model card plots by task, as models.plots logs them.
PLOTS = ("roc.png", "calibration.png", "gains.png", "value_by_decile.png", "feature_importance.png")
# Predicted traits the Profiles page shows beside the score (cdp.predictions.traits.trait_names).
PREDICTED_PARTS = ("probability", "value", "percentile", "decile", "reasons", "model_version", "scored_at")


@router.get("/ui")
async def overview(request: Request, session: ConsoleSession) -> HTMLResponse:
    async with api_for(request) as api:
        data = (await api.get("/v1/overview"))["data"]
    now = datetime.now(UTC)
    minutes = [f"{(now - timedelta(minutes=30 - i)):%H:%M}" for i in range(1, 31)]
    rate = data["events_per_minute"]
    return render(request, "overview.html", session, data=data, rate_now=sum(rate[-5:]) / 5,
                  rate_chart=bars(rate, labels=minutes, title="Events received per minute, last 30 minutes"),
                  identified_chart=share(data["identified"] or 0, data["profiles"] or 0, title="Identified profiles"))


def _list_page(name: str) -> Any:
    """``/ui/NAME``: the list ``/v1/NAME`` answers, in the template ``NAME.html``."""

    async def page(request: Request, session: ConsoleSession) -> HTMLResponse:
        async with api_for(request) as api:
            found = (await api.get(f"/v1/{name}"))["data"]
        return render(request, f"{name}.html", session, **{name: found})

    return page


for _name in ("audiences", "predictions", "destinations"):
    router.add_api_route(f"/ui/{_name}", _list_page(_name), methods=["GET"], response_class=HTMLResponse)


@router.get("/ui/audiences/new")
async def audience_builder(request: Request, session: ConsoleSession, key: str | None = None) -> HTMLResponse:
    async with api_for(request) as api:
        predictions, known, computed, editing = await asyncio.gather(
            api.get_or_none("/v1/predictions"), api.get("/v1/audiences"), api.get_or_none("/v1/computed-traits"),
            api.get(f"/v1/audiences/{quote(key, safe='')}") if key else _none())
    return render(request, "builder.html", session,
                  predictions=[{"key": p["key"], "task": p["task"]} for p in (predictions or {"data": []})["data"]],
                  audiences=[a["key"] for a in known["data"] if a["key"] != key],
                  computed=[t["name"] for t in (computed or {"data": []})["data"]],
                  editing=editing["data"] if editing else None)


@router.get("/ui/audiences/{key}")
async def audience(request: Request, session: ConsoleSession, key: str) -> HTMLResponse:
    async with api_for(request) as api:
        found, members = await asyncio.gather(api.get(f"/v1/audiences/{quote(key, safe='')}"),
                                              api.get(f"/v1/audiences/{quote(key, safe='')}/members", limit=50))
    return render(request, "audience.html", session, audience=found["data"], members=members)


@router.get("/ui/profiles")
async def profiles(request: Request, session: ConsoleSession, id: str | None = None) -> HTMLResponse:
    """Search by any identifier (``type:value``; a bare value is tried as a user id, then an email)."""
    if not id or not id.strip():
        return render(request, "profiles.html", session, profile=None, query="")
    query = id.strip()
    candidates = [query] if ":" in query else [f"user_id:{query}", f"email:{query}", f"anonymous_id:{query}"]
    async with api_for(request) as api:
        for identifier in candidates:
            try:
                profile = await _profile(api, identifier)
                break
            except ApiProblem as problem:
                if problem.status != 404 or identifier == candidates[-1]:
                    if problem.status == 404:
                        return render(request, "profiles.html", session, profile=None, query=query,
                                      not_found=f"No profile has the identifier {query!r}.", status_code=404)
                    raise
    return render(request, "profiles.html", session, profile=profile, query=query)


async def _profile(api: Any, identifier: str) -> dict[str, Any]:
    base = f"/v1/profiles/{quote(identifier, safe=':')}"
    metadata = await api.get(f"{base}/metadata")  # a 404 here: no such profile
    traits, events, ids, member_of, merges = await asyncio.gather(
        api.get(f"{base}/traits", verbose="true", limit=200), api.get(f"{base}/events", limit=25),
        api.get(f"{base}/external_ids", limit=50), api.get(f"{base}/audiences"), api.get(f"{base}/merges"))
    predicted: dict[str, dict[str, Any]] = {}
    plain = {}
    for name, trait in traits["traits"].items():
        part = next((p for p in PREDICTED_PARTS if name.endswith(f"_{p}")), None) if trait["class"] == "predicted" else None
        if part is None:
            plain[name] = trait
        else:
            predicted.setdefault(name.removesuffix(f"_{part}"), {})[part] = trait["value"]
    return {"identifier": identifier, "metadata": metadata["metadata"], "traits": plain, "predicted": predicted,
            "events": events["data"], "events_more": events["cursor"]["has_more"], "ids": ids["data"],
            "audiences": member_of["data"], "merges": merges["data"], "profile_id": merges["profile_id"]}


@router.get("/ui/predictions/{key}")
async def prediction(request: Request, session: ConsoleSession, key: str) -> HTMLResponse:
    async with api_for(request) as api:
        found, scores = await asyncio.gather(api.get(f"/v1/predictions/{quote(key, safe='')}"),
                                             api.get(f"/v1/predictions/{quote(key, safe='')}/scores"))
        stored, distribution = found["data"], scores["data"]
        card = stored["model_card"]
        outcomes = _recorded_outcomes(card, stored["task"]) or await _outcomes(api, key)
    metrics = card["metrics"] if card else {}
    predictors = (["model"] if "model" in metrics else []) + sorted(p for p in metrics if p != "model")
    names = sorted({m for values in metrics.values() for m in values})
    plots = [p for p in PLOTS if card and f"plots/{p}" in card["artifacts"]]
    histogram = bars([b["profiles"] for b in distribution["bins"]],
                     labels=[f"{b['from']:.3g}–{b['to']:.3g}" for b in distribution["bins"]],
                     title=f"Scores of {distribution['sampled']:,} profiles")
    scoring = (card or {}).get("last_scoring") or {}
    drift = sorted(((name.removeprefix("psi."), value) for name, value in scoring.get("metrics", {}).items()
                    if name.startswith("psi.")), key=lambda item: -item[1])[:5]
    return render(request, "prediction.html", session, prediction=stored, card=card, predictors=predictors,
                  metric_names=names, metrics=metrics, plots=plots, histogram=histogram, sampled=distribution["sampled"],
                  scoring=scoring, drift=drift, outcomes=outcomes, outcomes_chart=_outcomes_chart(outcomes))


def _recorded_outcomes(card: dict[str, Any] | None, task: str) -> dict[str, Any] | None:
    """The realized outcomes the scoring flow last recorded beside the champion (``/outcomes``' shape), if any.

    Read from the card rather than computed: over a million scored profiles the computation takes far
    longer than a page may.
    """
    logged = (card or {}).get("last_outcomes")
    if not logged:
        return None
    metrics = logged["metrics"]
    deciles = sorted(name.split(".")[0] for name in metrics if name.startswith("decile_") and name.endswith(".predicted"))
    return {"task": task, "as_of": logged["as_of"], "window_end": logged["window_end"],
            "model_version": logged["model_version"], "profiles": int(metrics["profiles"]),
            "predicted": metrics["predicted"], "realized": metrics["realized"],
            "bands": [{"decile": int(d.removeprefix("decile_")), "predicted": metrics[f"{d}.predicted"],
                       "realized": metrics[f"{d}.realized"]} for d in deciles]}


async def _outcomes(api: Any, key: str) -> dict[str, Any]:
    """Realized outcomes by score decile computed now, or ``{"missing": why}`` while no scoring's window has passed."""
    try:
        return (await api.get(f"/v1/predictions/{quote(key, safe='')}/outcomes"))["data"]
    except ApiProblem as problem:
        if problem.status not in (400, 404):
            raise
        return {"missing": problem.message}


def _outcomes_chart(outcomes: dict[str, Any]) -> Markup | None:
    if "missing" in outcomes:
        return None
    rate = outcomes["task"] != "value"
    return paired_bars([(f"{b['decile']}", b["predicted"], b["realized"]) for b in outcomes["bands"]],
                       names=("predicted", "realized"), percent=rate,
                       title=f"Predicted beside realized {'rate' if rate else 'value'}, by score decile (1 = top 10%)")


@router.get("/ui/destinations/{destination_id}")
async def destination(request: Request, session: ConsoleSession, destination_id: int,
                      status: str | None = None) -> HTMLResponse:
    async with api_for(request) as api:
        found, log = await asyncio.gather(api.get(f"/v1/destinations/{destination_id}"),
                                          api.get(f"/v1/destinations/{destination_id}/deliveries", limit=50,
                                                  status=status))
    return render(request, "destination.html", session, destination=found["data"], log=log["data"], status=status)


@router.get("/ui/governance")
async def governance(request: Request, session: ConsoleSession, window: str = "24h") -> HTMLResponse:
    async with api_for(request) as api:
        plans, violations, held = await asyncio.gather(
            api.get("/v1/tracking-plans"), api.get("/v1/violations", window=window), api.get("/v1/quarantine"))
    return render(request, "governance.html", session, plans=plans, violations=violations, quarantine=held,
                  window=window)


@router.get("/ui/recommendations")
async def recommendations(request: Request, session: ConsoleSession, user: str | None = None,
                          item: str | None = None) -> HTMLResponse:
    answer, error = None, None
    async with api_for(request) as api:
        card = (await api.get("/v1/recommender"))["data"]
    if user or item:
        path = (f"/v1/recommendations/{quote(user.strip(), safe=':')}" if user
                else f"/v1/items/{quote((item or '').strip(), safe='')}/similar")
        async with api_for(request) as api:
            try:
                answer = await api.get(path, limit=10)
            except ApiProblem as problem:
                if problem.status not in (404, 503):
                    raise
                error = problem.message
    metrics = card["metrics"] if card else {}
    compared = [(name.replace("_at_", "@"), metrics["model"][name], metrics.get("popularity", {}).get(name))
                for name in sorted(metrics.get("model", {}))]
    families = sorted(f for f in metrics if f not in ("model", "popularity"))
    return render(request, "recommendations.html", session, answer=answer, error=error, user=user or "",
                  item=item or "", card=card, compared=compared, families=families, metrics=metrics, share=share)


@router.get("/ui/journeys")
async def journeys(request: Request, session: ConsoleSession) -> HTMLResponse:
    """Each journey with its entries, sends, conversions and lift (its report), and the contact policy."""
    async with api_for(request) as api:
        found, policy = await asyncio.gather(api.get("/v1/journeys"), api.get("/v1/contact-policy"))
        reports = await asyncio.gather(*(api.get(f"/v1/journeys/{quote(j['key'], safe='')}/report")
                                         for j in found["data"]))
    return render(request, "journeys.html", session, journeys=found["data"], reports=[r["data"] for r in reports],
                  policy=policy["data"], policy_json=_policy_document(policy["data"]), duration=duration)


@router.get("/ui/journeys/new")
async def journey_builder(request: Request, session: ConsoleSession) -> HTMLResponse:
    async with api_for(request) as api:
        destinations, audiences = await asyncio.gather(api.get_or_none("/v1/destinations"), api.get("/v1/audiences"))
    return render(request, "journey_builder.html", session,
                  destinations=[{"id": d["id"], "name": d["name"]} for d in (destinations or {"data": []})["data"]],
                  audiences=[a["key"] for a in audiences["data"]])


@router.get("/ui/journeys/{key}")
async def journey(request: Request, session: ConsoleSession, key: str) -> HTMLResponse:
    async with api_for(request) as api:
        found, report, destinations = await asyncio.gather(
            api.get(f"/v1/journeys/{quote(key, safe='')}"), api.get(f"/v1/journeys/{quote(key, safe='')}/report"),
            api.get_or_none("/v1/destinations"))
    stored, lift = found["data"], report["data"]
    names = {d["id"]: d["name"] for d in (destinations or {"data": []})["data"]}
    arms = [(arm, lift[arm]["conversion_rate"], f"of {lift[arm]['entries']:,} converted")
            for arm in ("treated", "holdout")]
    return render(request, "journey.html", session, journey=stored, report=lift, flow=flow(stored, names),
                  goal_within=duration(stored["goal"]["within"]) if stored.get("goal") else None,
                  rates_chart=rates(arms, title="Goal conversion, treated against holdout"),
                  lift_chart=interval(lift["absolute_lift"], lift["absolute_ci"],
                                      title="Absolute lift with its 95% interval"))


def _policy_document(policy: dict[str, Any]) -> str:
    """The policy as the admin edits it: what ``PUT /v1/contact-policy`` takes."""
    return json.dumps({k: v for k, v in policy.items() if k != "updated_at"}, indent=2)


@router.get("/ui/")
def trailing_slash() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=308)


async def _none() -> None:
    return None
