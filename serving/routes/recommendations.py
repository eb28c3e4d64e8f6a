"""The Recommendations API (contract.md): recommendations for a person, similar items."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from cdp.errors import NotFound, Unavailable
from cdp.profiles.service import find_person
from cdp.store.db import reader
from features.interactions import recent_items
from models.recommend.filters import ItemRules
from models.recommend.serve import Answer, Ask, ServingModel
from models.tracking import RECOMMENDER, champion_card
from serving.deps import EngineDep, RecommendationsReader, SettingsDep

router = APIRouter(tags=["recommendations"])

Names = Annotated[str | None, Query(description="Comma-separated.")]


def _names(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


async def _ask(  # async: no thread-pool hop for pure parsing (see serving.deps)
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    in_stock: Annotated[bool, Query(description="Only items the catalog marks available.")] = False,
    category: Names = None, exclude_category: Names = None, brand: Names = None, exclude_brand: Names = None,
    min_price: float | None = None, max_price: float | None = None,
    max_per_category: Annotated[int | None, Query(ge=1, description="Diversity: at most this many items per category.")] = None,
    exclude_seen: Annotated[bool | None, Query(description="Leave out items already interacted with [CDP_RECS_EXCLUDE_SEEN].")] = None,
) -> Ask:
    """The request's count, business rules and diversity (query parameters)."""
    price = None
    if min_price is not None or max_price is not None:
        price = (float("-inf") if min_price is None else min_price, float("inf") if max_price is None else max_price)
    rules = ItemRules(categories=_names(category), brands=_names(brand), exclude_categories=_names(exclude_category) or (),
                      exclude_brands=_names(exclude_brand) or (), price_range=price,
                      available="available" if in_stock else None)
    seen = settings.recs_exclude_seen if exclude_seen is None else exclude_seen
    return Ask(n=limit, rules=rules, exclude_seen=seen, max_per_category=max_per_category)


AskDep = Annotated[Ask, Depends(_ask)]


def _champion(request: Request) -> ServingModel:
    current = request.app.state.recommender.current  # read once: a swap during this request can't mix models
    if current is None:
        raise Unavailable("no recommender has been trained and promoted yet: run `cdp recs train`",
                          code="no_recommender")
    return current


def _response(answer: Answer, model: ServingModel) -> Response:
    # Serialised here: FastAPI's ORJSONResponse is deprecated and warns on every call, and a
    # response model would validate what we built ourselves.
    body = {"items": answer.items, "model_version": model.version, "strategy": answer.strategy}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/v1/recommendations/{identifier}")
def recommendations(request: Request, engine: EngineDep, settings: SettingsDep, _token: RecommendationsReader,
                    identifier: str, ask: AskDep) -> Response:
    """Recommended items for a person (``user_id:u1``, ``anonymous_id:a1`` or a bare user id); unknown and
    anonymous people get a fallback, named in ``strategy``: personalized, session or popular."""
    model = _champion(request)
    with reader(engine).connect() as conn:
        profile_id = find_person(conn, identifier)
        recent = [] if profile_id is None else recent_items(
            conn, profile_id=profile_id, as_of=datetime.now(UTC), limit=settings.recs_session_items)
    return _response(model.for_profile(profile_id, recent, ask), model)


@router.get("/v1/items/{item_id}/similar")
def similar_items(request: Request, _token: RecommendationsReader, item_id: str, ask: AskDep) -> Response:
    """Items similar to an item, by the champion's item-to-item scores (``strategy`` ``similar_items``)."""
    model = _champion(request)
    try:
        answer = model.similar(item_id, ask)
    except KeyError:
        raise NotFound(f"item {item_id!r} is not known to the recommender") from None
    return _response(answer, model)


@router.get("/v1/recommender")
def recommender_card(settings: SettingsDep, _token: RecommendationsReader) -> Response:
    """The champion recommender's card: version, gate decision and held-out metrics per family (``model``: the
    chosen one, beside ``popularity``); ``data`` is null until a recommender is trained and promoted."""
    card = champion_card(settings.resolved_mlflow_tracking_uri, RECOMMENDER)
    return Response(orjson.dumps({"data": card}, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
