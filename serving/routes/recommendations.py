"""The Recommendations API (contract.md): recommendations for a person, similar items."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from cdp.config import Settings
from cdp.errors import NotFound, Unavailable
from cdp.profiles.service import find_person
from cdp.store.db import reader
from features.interactions import recent_items
from models.recommend.filters import ItemRules
from models.recommend.fresh import interacted_since
from models.recommend.serve import Answer, Ask, ServingModel
from models.tracking import RECOMMENDER, champion_card
from serving.body import StrictJSONRoute
from serving.deps import RECOMMENDATIONS_READ, RecommendationsReader, SettingsDep, authorize
from serving.responses import JSONBody

router = APIRouter(route_class=StrictJSONRoute, tags=["recommendations"])


def _names(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


class AskQuery(BaseModel):
    """The request's count, business rules and diversity (query parameters)."""

    limit: int = Field(10, ge=1, le=100)
    in_stock: bool = Field(False, description="Only items the catalog marks available.")
    category: str | None = Field(None, description="Comma-separated.")
    exclude_category: str | None = Field(None, description="Comma-separated.")
    brand: str | None = Field(None, description="Comma-separated.")
    exclude_brand: str | None = Field(None, description="Comma-separated.")
    min_price: float | None = None
    max_price: float | None = None
    max_per_category: int | None = Field(None, ge=1, description="Diversity: at most this many items per category.")
    exclude_seen: bool | None = Field(None, description="Leave out items already interacted with [CDP_RECS_EXCLUDE_SEEN].")

    def ask(self, settings: Settings) -> Ask:
        """As the model wants it: the rules parsed, ``exclude_seen`` defaulted from the settings."""
        price = None
        if self.min_price is not None or self.max_price is not None:
            price = (float("-inf") if self.min_price is None else self.min_price,
                     float("inf") if self.max_price is None else self.max_price)
        rules = ItemRules(categories=_names(self.category), brands=_names(self.brand),
                          exclude_categories=_names(self.exclude_category) or (),
                          exclude_brands=_names(self.exclude_brand) or (), price_range=price,
                          available="available" if self.in_stock else None)
        seen = settings.recs_exclude_seen if self.exclude_seen is None else self.exclude_seen
        return Ask(n=self.limit, rules=rules, exclude_seen=seen, max_per_category=self.max_per_category)


def _ask_query(request: Request) -> AskQuery:
    """The query parameters validated in one call. Not FastAPI's query model: it inspects every field's
    annotation on every request; with the token's dependency that was a third of the CPU of a request
    served from a stored list (cProfile, in process)."""
    try:
        return AskQuery.model_validate(dict(request.query_params))
    except ValidationError as error:
        problems = [{**problem, "loc": ("query", *problem["loc"])} for problem in error.errors()]
        raise RequestValidationError(problems) from None


# What FastAPI would have documented for a query model, since the routes read the query themselves.
ASK_PARAMETERS = {"parameters": [
    {"name": name, "in": "query", "required": False, "schema": field, **({"description": field["description"]}
                                                                          if "description" in field else {})}
    for name, field in AskQuery.model_json_schema()["properties"].items()
]}


def _champion(request: Request) -> ServingModel:
    current = request.app.state.recommender.current  # read once: a swap during this request can't mix models
    if current is None:
        raise Unavailable("no recommender has been trained and promoted yet: run `cdp recs train`",
                          code="no_recommender")
    return current


def _response(answer: Answer, model: ServingModel) -> JSONBody:
    # Not a response model: it would validate what we built ourselves.
    return JSONBody({"items": answer.items, "model_version": model.version, "strategy": answer.strategy})


@router.get("/v1/recommendations/{identifier}", openapi_extra=ASK_PARAMETERS)
async def recommendations(request: Request, identifier: str) -> JSONBody:
    """Recommended items for a person (``user_id:u1``, ``anonymous_id:a1`` or a bare user id); unknown and
    anonymous people get a fallback, named in ``strategy``: personalized, session or popular. Scope
    ``recommendations:read``."""
    # The token checked here, not as a dependency: FastAPI's solving of one costs as much as the check.
    await authorize(request, RECOMMENDATIONS_READ)
    # In the event loop: the usual request (a known profile, idle since training) is two indexed
    # lookups and a stored list, and a visitor's session a few item scores, a fraction of what a hop to
    # the thread pool and back costs (0.8 ms of CPU for a session answer of 0.6). Scoring a user's
    # row (milliseconds) goes to the thread pool.
    settings: Settings = request.app.state.settings
    ask = _ask_query(request).ask(settings)
    model = _champion(request)
    profile_id, recent = _person(request.app.state.engine, identifier, model, settings.recs_session_items)
    answer = model.quick_answer(profile_id, recent, ask)
    if answer is None:
        answer = await run_in_threadpool(model.for_profile, profile_id, recent, ask)
    return _response(answer, model)


_read_only = lru_cache(maxsize=4)(reader)  # a new engine facade per request costs as much as a query


def _person(engine: Engine, identifier: str, model: ServingModel, session_items: int) -> tuple[int | None, list[str]]:
    """The live profile of ``identifier`` and its latest interaction items (newest first): none for a
    profile the model knows that has not interacted since training (its older ones are seen)."""
    with _read_only(engine).connect() as conn:
        profile_id = find_person(conn, identifier)
        if profile_id is None or (model.knows(profile_id) and
                                  not interacted_since(conn, profile_id=profile_id, since=model.bundle.as_of)):
            return profile_id, []
        return profile_id, recent_items(conn, profile_id=profile_id, as_of=datetime.now(UTC), limit=session_items)


@router.get("/v1/items/{item_id}/similar", openapi_extra=ASK_PARAMETERS)
async def similar_items(request: Request, item_id: str) -> JSONBody:
    """Items similar to an item, by the champion's item-to-item scores (``strategy`` ``similar_items``).
    Scope ``recommendations:read``."""
    await authorize(request, RECOMMENDATIONS_READ)
    ask = _ask_query(request).ask(request.app.state.settings)
    model = _champion(request)
    try:
        answer = await run_in_threadpool(model.similar, item_id, ask)
    except KeyError:
        raise NotFound(f"item {item_id!r} is not known to the recommender") from None
    return _response(answer, model)


@router.get("/v1/recommender")
def recommender_card(settings: SettingsDep, _token: RecommendationsReader) -> JSONBody:
    """The champion recommender's card: version, gate decision and held-out metrics per family (``model``: the
    chosen one, beside ``popularity``); ``data`` is null until a recommender is trained and promoted."""
    card = champion_card(settings.resolved_mlflow_tracking_uri, RECOMMENDER)
    return JSONBody({"data": card})
