"""User-item interactions and the item catalog, read from the store as of a cutoff.

An interaction is a track event naming a product: by default the Segment e-commerce spec's
``Product Viewed``, ``Product Clicked``, ``Product Added``, ``Product Reviewed`` (its rating
counts) and the lines of ``Order Completed`` (``properties.products[]``), keyed by
``product_id``. Each belongs to ``events.profile_id``: the identity graph has already given the
anonymous browsing before a sign-up to the profile. Extraction is SQL pushed down to the store
(``json_each`` on SQLite, ``jsonb_array_elements`` on PostgreSQL); weights and time decay are
numpy over the rows, since the sequence-aware models need the rows anyway.

A fact is visible as of the cutoff only if its event time and its received time are both at or
before it, as everywhere in ``features``. Reads go through ``read.py``'s snapshot and fetch
(``COPY`` on PostgreSQL), so this module shares its transport instead of repeating it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import numpy as np
import pandas as pd
import orjson
from sqlalchemy import (
    Connection, Engine, Float, Integer, Select, bindparam, case, cast, func, literal, select, true, union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from cdp.store.tables import catalog_items, events
from cdp.store.types import UTCDateTime
from features.read import _fetch, snapshot
from features.sql import Dialect, dialect_named, is_track, visible

CATALOG_PROPERTIES = ("name", "category", "brand", "price")
_NUMERIC_PROPERTIES = ("price",)


@dataclass(frozen=True)
class InteractionEvent:
    """One kind of event that counts as an interaction, and how much.

    Parameters
    ----------
    name : str
        Track event name.
    weight : float
        Strength of one such event.
    products : str, optional
        Property holding an array of products (``"products"`` for ``Order Completed``); each
        element is one interaction. ``None``: the product is in the properties themselves.
    value : str, optional
        A numeric property that scales the weight as ``weight * (value - center)``, e.g. a
        review's ``rating``: a 1-star review is evidence against the item. Events without a
        numeric value are dropped.
    center : float
        See ``value``.
    """

    name: str
    weight: float
    products: str | None = None
    value: str | None = None
    center: float = 0.0


SEGMENT_ECOMMERCE = (
    InteractionEvent("Product Viewed", 1.0),
    InteractionEvent("Product Clicked", 1.0),
    InteractionEvent("Product Added", 3.0),
    InteractionEvent("Product Reviewed", 1.0, value="rating", center=3.0),
    InteractionEvent("Order Completed", 5.0, products="products"),
)


@dataclass(frozen=True)
class InteractionSpec:
    """Which events are interactions, their item key, and how fast they fade.

    Parameters
    ----------
    events : tuple of InteractionEvent
        The interaction events; Segment's e-commerce spec by default.
    item_key : str
        Property (of the event, or of each element of its products array) naming the item.
    half_life_days : float, optional
        An interaction's weight halves every ``half_life_days`` before the cutoff; ``None``
        keeps every interaction at full weight.
    """

    events: tuple[InteractionEvent, ...] = SEGMENT_ECOMMERCE
    item_key: str = "product_id"
    half_life_days: float | None = 60.0

    def __post_init__(self) -> None:
        names = [e.name for e in self.events]
        if not names or len(set(names)) != len(names):
            raise ValueError("InteractionSpec.events needs distinct event names, at least one")
        if self.half_life_days is not None and self.half_life_days <= 0:
            raise ValueError("half_life_days must be positive")

    def weight_of(self, event_names: pd.Series, values: pd.Series) -> np.ndarray:
        """The weight of each row given its event name and (possibly missing) value."""
        spec = {e.name: e for e in self.events}
        names = event_names.astype("object")
        base = names.map({name: e.weight for name, e in spec.items()}).to_numpy(dtype="float64")
        center = names.map({name: e.center for name, e in spec.items()}).to_numpy(dtype="float64")
        scaled = names.map({name: e.value is not None for name, e in spec.items()}).to_numpy(dtype=bool)
        return np.where(scaled, base * (values.to_numpy(dtype="float64") - center), base)


def read_interactions(engine: Engine, *, as_of: datetime, spec: InteractionSpec = InteractionSpec()) -> pd.DataFrame:
    """Every interaction visible as of ``as_of``, oldest first.

    Returns
    -------
    pandas.DataFrame
        ``profile_id`` (int64), ``item_id`` (str), ``event`` (categorical), ``timestamp``
        (UTC), ``weight`` (float64, before time decay; negative for a bad review). Sorted by
        ``timestamp``, ``profile_id`` and the event's arrival; an order's lines share its
        timestamp and keep their order.
    """
    _check_aware(as_of)
    with snapshot(engine) as view:
        dialect = dialect_named(view.conn.dialect.name)
        found = _fetch(
            view.conn,
            _interaction_rows(dialect, spec, as_of, columns=()),
            text_columns=("item_id",),
            categorical=("event",),
        )
    found["timestamp"] = pd.to_datetime(found["timestamp"].astype("int64"), unit="us", utc=True)
    found["weight"] = spec.weight_of(found["event"], found["value"])
    found = found[np.isfinite(found["weight"])]
    ordered = found.sort_values(["timestamp", "profile_id", "event_id"], kind="stable").reset_index(drop=True)
    return ordered[["profile_id", "item_id", "event", "timestamp", "weight"]]


def read_catalog(engine: Engine, *, as_of: datetime, spec: InteractionSpec = InteractionSpec()) -> pd.DataFrame:
    """The items of the interactions visible as of ``as_of``, described by their latest event.

    Returns
    -------
    pandas.DataFrame
        Index ``item_id`` (str, ascending); ``name``, ``category``, ``brand`` (str or None),
        ``price`` (float64, NaN when unknown): the values of the item's most recent interaction
        event that has the property (an order line counts), so a renamed or repriced product
        shows its current description.
    """
    _check_aware(as_of)
    with snapshot(engine) as view:
        dialect = dialect_named(view.conn.dialect.name)
        rows = _interaction_rows(dialect, spec, as_of, columns=CATALOG_PROPERTIES).subquery("interactions")
        item = rows.c.item_id

        def latest(name: str) -> ColumnElement:
            # Rows without the property sort last (false < true on both stores).
            newest_first = (rows.c[name].is_(None), rows.c.timestamp.desc())
            return func.first_value(rows.c[name]).over(partition_by=item, order_by=newest_first).label(name)

        ranked = select(item, *(latest(name) for name in CATALOG_PROPERTIES),
                        func.row_number().over(partition_by=item).label("rank")).subquery("ranked")
        query = select(ranked.c.item_id, *(ranked.c[name] for name in CATALOG_PROPERTIES)).where(ranked.c.rank == 1)
        texts = [name for name in CATALOG_PROPERTIES if name not in _NUMERIC_PROPERTIES]
        found = _fetch(view.conn, query, text_columns=("item_id", *texts))
    return found.set_index("item_id").sort_index()


def read_imported_catalog(engine: Engine) -> pd.DataFrame:
    """The catalog imported with ``cdp catalog import`` as it is now (not point in time: stock is current).

    Returns
    -------
    pandas.DataFrame
        Index ``item_id``; ``name``, ``category``, ``brand``, ``price`` as :func:`read_catalog`,
        ``available`` (bool).
    """
    with snapshot(engine) as view:
        # As a number: the COPY transport of PostgreSQL reads booleans as 't' / 'f'.
        query = select(catalog_items.c.item_id, *(catalog_items.c[name] for name in CATALOG_PROPERTIES),
                       cast(catalog_items.c.available, Integer).label("available"))
        texts = [name for name in ("item_id", *CATALOG_PROPERTIES) if name not in _NUMERIC_PROPERTIES]
        found = _fetch(view.conn, query, text_columns=texts)
    found["available"] = found["available"].astype(bool)
    return found.set_index("item_id").sort_index()


def with_imported(described: pd.DataFrame, imported: pd.DataFrame) -> pd.DataFrame:
    """The catalog of :func:`read_catalog` overlaid with :func:`read_imported_catalog`.

    An imported value wins over what the events said (a missing one does not erase it); imported
    items no event names are added; ``available`` is the imported flag, true for items not imported.
    """
    combined = imported[list(CATALOG_PROPERTIES)].combine_first(described[list(CATALOG_PROPERTIES)])
    combined["available"] = imported["available"].reindex(combined.index).fillna(True).astype(bool)
    return combined.sort_index()


def recent_items(conn: Connection, *, profile_id: int, as_of: datetime, limit: int,
                 spec: InteractionSpec = InteractionSpec()) -> list[str]:
    """The profile's ``limit`` latest distinct interaction items as of ``as_of``, newest first.

    For serving, one profile per request: a small query the events index on ``profile_id,
    timestamp`` answers, and the item ids read from the few payloads here. (The pushed-down
    extraction of :func:`read_interactions` costs SQLAlchemy over a millisecond per call to build
    and key; this query, a tenth of that.)
    """
    _check_aware(as_of)
    arrays = {e.name: e.products for e in spec.events}
    items: dict[str, None] = {}
    found = conn.execute(_recent_events(tuple(arrays)), {"profile_id": profile_id, "as_of": as_of, "rows": limit * 5})
    for event, payload in found:
        properties = payload.get("properties") if isinstance(payload, dict) else None
        if not isinstance(properties, dict):
            continue
        products = properties.get(arrays[event]) if arrays[event] else [properties]
        for product in products if isinstance(products, list) else []:
            item = _item_key(product.get(spec.item_key)) if isinstance(product, dict) else None
            if item is not None:
                items.setdefault(item)
    return list(items)[:limit]


@lru_cache(maxsize=16)
def _recent_events(names: tuple[str, ...]) -> Select:
    """One profile's latest interaction events (built once: a request only binds its values)."""
    as_of = bindparam("as_of", type_=UTCDateTime)
    return (select(events.c.event, events.c.payload)
            .where(events.c.profile_id == bindparam("profile_id"), visible(as_of), is_track(list(names)))
            .order_by(events.c.timestamp.desc(), events.c.id.desc())
            .limit(bindparam("rows")))  # several rows per item are common (viewed, added, ordered)


def _item_key(value: object) -> str | None:
    """As :func:`_identifier` reads it in SQL: a string as is, a number as its JSON text, else none."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return orjson.dumps(value).decode()
    return None


def decayed_weights(interactions: pd.DataFrame, *, as_of: datetime, half_life_days: float | None) -> np.ndarray:
    """Each interaction's weight after time decay: halved every ``half_life_days`` before ``as_of``."""
    _check_aware(as_of)
    weight = interactions["weight"].to_numpy(dtype="float64")
    if half_life_days is None:
        return weight
    age_days = (pd.Timestamp(as_of) - interactions["timestamp"]).dt.total_seconds().to_numpy() / 86400.0
    return weight * np.exp2(-np.maximum(age_days, 0.0) / half_life_days)


def _check_aware(as_of: datetime) -> None:
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")


def _interaction_rows(dialect: Dialect, spec: InteractionSpec, as_of: datetime, *, columns: Sequence[str]) -> Select:
    """One row per interaction: ``event_id, profile_id, item_id, event, timestamp`` (epoch us), ``value``,
    and the product properties in ``columns`` (strings; ``price`` a number)."""
    single = [e for e in spec.events if e.products is None]
    arrays = [e for e in spec.events if e.products is not None]
    parts = []
    if single:
        parts.append(_rows_of(dialect, spec, single, events.c.payload, ("properties",), as_of, columns)
                     .where(is_track([e.name for e in single])))
    for event in arrays:
        elements, element = dialect.array_elements(events.c.payload, ("properties", event.products))
        parts.append(_rows_of(dialect, spec, [event], element, (), as_of, columns)
                     .select_from(events).join(elements, true()).where(is_track([event.name])))
    return parts[0] if len(parts) == 1 else union_all(*parts)


def _rows_of(
    dialect: Dialect,
    spec: InteractionSpec,
    kinds: Sequence[InteractionEvent],
    product: ColumnElement,
    prefix: tuple[str, ...],
    as_of: datetime,
    columns: Sequence[str],
) -> Select:
    item = _identifier(dialect, product, (*prefix, spec.item_key))
    value = _value_of(dialect, kinds)
    described = [
        (dialect.json_number if name in _NUMERIC_PROPERTIES else dialect.json_string)(product, (*prefix, name)).label(name)
        for name in columns
    ]
    return select(
        events.c.id.label("event_id"),
        events.c.profile_id,
        item.label("item_id"),
        events.c.event,
        dialect.epoch_microseconds(events.c.timestamp).label("timestamp"),
        value.label("value"),
        *described,
    ).where(visible(as_of), item.is_not(None))


def _identifier(dialect: Dialect, document: ColumnElement, path: tuple[str, ...]) -> ColumnElement[str]:
    """A JSON string as is, a JSON number as its JSON text (the same on both stores), else NULL."""
    number = case((dialect.json_number(document, path).is_not(None), dialect.json_text(document, path)))
    return func.coalesce(dialect.json_string(document, path), number)


def _value_of(dialect: Dialect, kinds: Sequence[InteractionEvent]) -> ColumnElement[float]:
    """The event's scaling value (``InteractionEvent.value``); NULL where none applies."""
    valued = [(k.name, k.value) for k in kinds if k.value is not None]
    if not valued:
        return literal(None, Float)
    return case(*((events.c.event == name, dialect.json_number(events.c.payload, ("properties", prop))) for name, prop in valued))
