"""The one module of ``features`` that reads the store: SQL pushed down, pandas frames out.

Features of one family are columns of one aggregation query grouped by ``profile_id``, every
query filtered to the facts visible as of the cutoff (``timestamp <= cutoff AND received_at <=
cutoff``); several families read inside one transaction, so they see the same data while
ingestion goes on (a snapshot on PostgreSQL, a WAL read transaction on SQLite). Large results
leave PostgreSQL through ``COPY ... TO STDOUT`` parsed by pyarrow, several times faster than
row-by-row fetching for a million profiles.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import numpy as np
import orjson
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from pandas.api.types import union_categoricals
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    case,
    func,
    select,
    true,
)
from sqlalchemy.sql.elements import ColumnElement

from cdp.config import Settings
from cdp.events.backfills import backfill_watermark
from cdp.store.db import create_store_engine, reader
from cdp.store.tables import events, trait_changes
from features.definitions import (
    CATEGORIES,
    EVENTS,
    PANDAS,
    PURCHASES,
    SESSION_TIMEOUT,
    SESSIONS,
    TRAIT_CLASSES,
    TRAITS,
    Feature,
    slug,
)
from features.labels import Label
from features.schemas import Partition, Purchases
from features.sql import (
    Dialect,
    EventRows,
    PurchaseRows,
    SessionRows,
    after,
    dialect_named,
    in_partition,
    is_track,
    known_by,
    order_value,
    product_lines,
)

# Hash aggregation over a million profiles needs a few hundred MB; PostgreSQL's default 4MB
# work_mem would spill it to disk. Set for the feature transaction only (SET LOCAL).
POSTGRES_WORK_MEM = "512MB"
# The purchase families scan the whole heap for their JSON payloads, a read the disk serves faster
# to more concurrent readers than the default two workers (1M profiles x 50 events, paired runs:
# features.load 65.9 / 56.2 s with two, 59.8 / 52.9 s with four).
POSTGRES_PARALLEL_WORKERS = 4
_FETCH_ROWS = 500_000  # rows per chunk when fetching from SQLite: bounds the Python objects alive
T = TypeVar("T")
Found = tuple[dict[str, pd.Series], "pd.DataFrame | None"]


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of the store for a batch of queries.

    ``conn`` is a transaction opened by :func:`snapshot`. On PostgreSQL its snapshot is exported
    (``pg_export_snapshot``) so that :meth:`run` can put independent queries on connections of
    their own that see exactly the same data, side by side (as ``pg_dump --jobs`` does): one
    family's heap scan waits on the disk while another's aggregation uses the CPU.
    """

    conn: Connection
    engine: Engine
    exported: str | None = None

    def run(self, jobs: Sequence[Callable[[Connection], T]]) -> list[T]:
        """Each job's result; concurrently on PostgreSQL, one after the other on SQLite."""
        if self.exported is None or len(jobs) < 2:
            return [job(self.conn) for job in jobs]
        with ThreadPoolExecutor(len(jobs) - 1) as pool:
            others = [pool.submit(self._shared, job) for job in jobs[1:]]
            first = jobs[0](self.conn)
            return [first, *(future.result() for future in others)]

    def _shared(self, job: Callable[[Connection], T]) -> T:
        with reader(self.engine).connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{self.exported}'")
                _tune(conn)
                return job(conn)


@contextmanager
def opened(store: Engine | Settings) -> Iterator[Engine]:
    """The store's engine: ``store`` itself, or one opened from settings and closed afterwards."""
    if isinstance(store, Engine):
        yield store
        return
    engine = create_store_engine(store, pool=False)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def snapshot(engine: Engine) -> Iterator[Snapshot]:
    """A transaction for reading in which every query sees the same data."""
    with reader(engine).connect() as conn:
        if conn.dialect.name != "postgresql":
            with conn.begin():
                yield Snapshot(conn, engine)
            return
        conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            _tune(conn)
            exported = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
            yield Snapshot(conn, engine, exported)


def _tune(conn: Connection) -> None:
    conn.exec_driver_sql(f"SET LOCAL work_mem = '{POSTGRES_WORK_MEM}'")
    conn.exec_driver_sql(f"SET LOCAL max_parallel_workers_per_gather = {POSTGRES_PARALLEL_WORKERS}")


def read_features(
    engine: Engine,
    *,
    as_of: datetime,
    features: Sequence[Feature],
    purchases: Purchases = Purchases(),
    partition: Partition = Partition(),
    backfilled_until: datetime | None = None,
) -> pd.DataFrame:
    """:func:`features_at` in a snapshot of its own."""
    with snapshot(engine) as view:
        return features_at(view, as_of=as_of, features=features, purchases=purchases, partition=partition,
                           backfilled_until=backfilled_until)


def features_at(
    view: Snapshot,
    *,
    as_of: datetime,
    features: Sequence[Feature],
    purchases: Purchases = Purchases(),
    partition: Partition = Partition(),
    backfilled_until: datetime | None = None,
) -> pd.DataFrame:
    """Features of every profile (of ``partition``) with at least one event visible as of ``as_of``.

    Facts received by ``backfilled_until``, or by the end of the last history import
    (:mod:`cdp.events.backfills`), count from their event time (see :func:`features.sql.known_by`).

    Returns
    -------
    pandas.DataFrame
        Index ``profile_id`` (int64, ascending); one column per feature in the given order
        (``category_share`` expands to ``category_share__<category>`` columns), of the
        feature's dtype; a profile absent from a family's query gets the feature's ``missing``.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    scope = EventRows(dialect_named(view.conn.dialect.name), as_of, purchases, partition=partition,
                      backfilled_until=backfill_watermark(view.conn, backfilled_until))
    families = (EVENTS, PURCHASES, SESSIONS, CATEGORIES, PANDAS, TRAITS)
    family = {name: [f for f in features if f.family == name] for name in families}

    def event_features(conn: Connection) -> pd.DataFrame:
        columns = [f.sql(scope.windowed(f.window_days)).label(f.name) for f in family[EVENTS]]
        query = _grouped(events.c.profile_id, columns).where(scope.visible)
        return _fetch(conn, query).set_index("profile_id").sort_index()

    def session_features(conn: Connection) -> Found:
        longest = max(f.window_days or 0 for f in family[SESSIONS])
        rows = SessionRows.build(scope, days=longest, timeout=SESSION_TIMEOUT)
        query = _grouped(rows.c.profile_id, [f.sql(rows).label(f.name) for f in family[SESSIONS]])
        return _by_profile(_fetch(conn, query)), None

    # Every family but the events one: (columns by feature name, category shares or None).
    jobs: list[Callable[[Connection], Found]] = []
    if family[PURCHASES]:
        jobs.append(lambda conn: _purchase_features(conn, scope, family[PURCHASES]))
    if family[CATEGORIES]:
        jobs.append(lambda conn: _category_features(conn, scope))
    if family[SESSIONS]:
        jobs.append(session_features)
    if family[TRAITS]:
        jobs.append(lambda conn: (_traits(conn, scope, family[TRAITS]), None))
    if family[PANDAS]:
        jobs.append(lambda conn: (_pandas_features(conn, scope, family[PANDAS]), None))
    frame, *found = view.run([event_features, *jobs])
    parts: dict[str, pd.Series] = {name: frame[name] for name in frame.columns}
    shares = None
    for columns_found, shares_found in found:
        parts.update(columns_found)
        shares = shares_found if shares_found is not None else shares
    columns: dict[str, pd.Series] = {}
    for feature in features:
        if feature.family == CATEGORIES:
            assert shares is not None
            columns.update(shares.reindex(frame.index).items())
            continue
        columns[feature.name] = _finished(feature, parts.get(feature.name), frame.index)
    return pd.DataFrame(columns, index=frame.index)


def _grouped(profile_id: ColumnElement, columns: list[ColumnElement]) -> Select:
    return select(profile_id.label("profile_id"), *columns).group_by(profile_id)


def _by_profile(found: pd.DataFrame) -> dict[str, pd.Series]:
    indexed = found.set_index("profile_id")
    return {name: indexed[name] for name in indexed.columns}


def _finished(feature: Feature, values: pd.Series | None, index: pd.Index) -> pd.Series:
    found = values if values is not None else pd.Series(dtype="float64")
    result = found.reindex(index)
    if feature.finish is not None:
        result = feature.finish(result.astype("float64"))
    if not (isinstance(feature.missing, float) and np.isnan(feature.missing)):
        result = result.where(index.isin(found.index), feature.missing)
    if feature.dtype == "object":
        return result.astype("object").where(result.notna(), None)
    return result.astype(feature.dtype)


def _purchase_features(conn: Connection, scope: EventRows, features: Sequence[Feature]) -> Found:
    rows = PurchaseRows.build(scope)
    return _by_profile(_fetch(conn, _grouped(rows.c.profile_id, [f.sql(rows).label(f.name) for f in features]))), None


def _category_features(conn: Connection, scope: EventRows) -> Found:
    """Category shares, from one row per purchased product line pivoted in pandas.

    Which categories exist is only known from the data, and SQL can't return a column per value
    it finds. Grouping the lines by (profile, category) first in the store costs more than it
    saves in transfer.
    """
    lines = PurchaseRows.build(scope).lines()
    found = _fetch(conn, lines, categorical=("category",))
    return {}, category_shares(found[["profile_id", "category", "quantity"]], scope.purchases.categories)


def category_shares(lines: pd.DataFrame, categories: Sequence[str] | None) -> pd.DataFrame:
    """Pivot ``(profile_id, category, quantity)`` into ``category_share__<slug>`` columns.

    The denominator is every purchased line, with or without a category, so a profile's shares
    sum to at most 1. Categories whose slugs collide are added together. Vectorised (a
    ``pivot_table`` takes seconds on a million profiles).
    """
    total = lines.groupby("profile_id")["quantity"].sum()
    named = lines[lines["category"].notna()]
    codes, found = pd.factorize(named["category"])
    slugs = [slug(str(c)) for c in found]
    columns = sorted(set(slugs)) if categories is None else list(dict.fromkeys(slug(c) for c in categories))
    position = {name: i for i, name in enumerate(columns)}
    column_of = np.array([position.get(name, -1) for name in slugs], dtype=np.int64)[codes]
    keep = column_of >= 0
    quantities = np.zeros((len(total), len(columns)))
    rows = total.index.get_indexer(named["profile_id"])
    np.add.at(quantities, (rows[keep], column_of[keep]), named["quantity"].to_numpy(dtype="float64")[keep])
    denominator = total.to_numpy(dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = quantities / np.where(denominator > 0, denominator, np.nan)[:, None]
    return pd.DataFrame(shares, index=total.index, columns=[f"category_share__{name}" for name in columns])


def _traits(conn: Connection, scope: EventRows, features: Sequence[Feature]) -> dict[str, pd.Series]:
    names = sorted({f.key for f in features if f.key})
    latest = func.row_number().over(
        partition_by=(trait_changes.c.profile_id, trait_changes.c.name),
        order_by=(trait_changes.c.event_time.desc(), trait_changes.c.received_at.desc(), trait_changes.c.id.desc()),
    )
    ranked = (
        select(trait_changes.c.profile_id, trait_changes.c.name, trait_changes.c.value, latest.label("rank"))
        .where(
            trait_changes.c.name.in_(names),
            trait_changes.c["class"].in_(TRAIT_CLASSES),
            trait_changes.c.event_time <= scope.cutoff,
            trait_changes.c.received_at <= known_by(scope.cutoff, scope.backfilled_until),
            in_partition(trait_changes.c.profile_id, scope.partition),
        )
        .subquery()
    )
    rows = conn.execute(select(ranked.c.profile_id, ranked.c.name, ranked.c.value).where(ranked.c.rank == 1)).all()
    found = pd.DataFrame(rows, columns=["profile_id", "name", "value"])
    return {
        f.name: found.loc[found["name"] == f.key].set_index("profile_id")["value"].astype("object") for f in features
    }


def _pandas_features(conn: Connection, scope: EventRows, features: Sequence[Feature]) -> dict[str, pd.Series]:
    windows = [f.window_days for f in features]
    longest = None if None in windows else max(w for w in windows if w is not None)
    names = None if any(f.events is None for f in features) else sorted({n for f in features for n in f.events or ()})
    properties = sorted({p for f in features for p in f.properties})
    where = and_(scope.visible, scope.windowed(longest).in_window)
    if names is not None:
        where = and_(where, events.c.event.in_(names))
    exported = _fetch_events(conn, scope.dialect, scope.purchases, where, properties)
    return {f.name: run_pandas_feature(f, exported, scope.cutoff) for f in features}


def run_pandas_feature(feature: Feature, exported: pd.DataFrame, as_of: datetime) -> pd.Series:
    """Call a pandas feature on the rows of ``exported`` (visible as of ``as_of``) it asked for."""
    assert feature.pandas is not None
    rows = exported
    if feature.window_days is not None:
        rows = rows[rows["timestamp"] > pd.Timestamp(as_of) - timedelta(days=feature.window_days)]
    if feature.events is not None:
        rows = rows[rows["event"].isin(feature.events)]
    result = feature.pandas(rows.reset_index(drop=True), as_of)
    if not isinstance(result, pd.Series):
        raise TypeError(f"pandas feature {feature.name!r} must return a Series indexed by profile_id")
    return result.rename(feature.name)


# -- labels ----------------------------------------------------------------------------------


def labels_at(
    conn: Connection, *, cutoff: datetime, horizon: timedelta, label: Label, purchases: Purchases = Purchases()
) -> pd.Series:
    """``label``'s aggregate for every profile with an event in ``(cutoff, cutoff + horizon]``.

    Returns
    -------
    pandas.Series
        Index ``profile_id``; the raw aggregate (e.g. a count, a revenue) before
        :meth:`Label.outcome`. Profiles without an event in the window are absent.
    """
    if horizon <= timedelta(0):
        raise ValueError("horizon must be positive")
    rows = EventRows(dialect_named(conn.dialect.name), cutoff, purchases)
    query = _grouped(events.c.profile_id, [label.aggregate(rows).label("value")]).where(after(cutoff, horizon))
    found = _fetch(conn, query)
    return found.set_index("profile_id")["value"]


# -- what the readiness report needs ---------------------------------------------------------


@dataclass(frozen=True)
class History:
    """The span of the store's events (attributed to a profile) and their variety."""

    first_event: datetime | None
    last_event: datetime | None
    event_kinds: int  # distinct (type, event name) visible as of the cutoff asked for


def history(conn: Connection, *, as_of: datetime, backfilled_until: datetime | None = None) -> History:
    # One scan grouped by kind (a few hundred groups) answers both questions.
    received_by = known_by(as_of, backfill_watermark(conn, backfilled_until))
    kinds = conn.execute(
        select(
            func.min(events.c.timestamp),
            func.max(events.c.timestamp),
            func.count().filter(and_(events.c.timestamp <= as_of, events.c.received_at <= received_by)),
        )
        .where(events.c.profile_id.is_not(None))
        .group_by(events.c.type, events.c.event)
    ).all()
    return History(
        first_event=min((k[0] for k in kinds), default=None),
        last_event=max((k[1] for k in kinds), default=None),
        event_kinds=sum(1 for k in kinds if k[2] > 0),
    )


# -- exports for the pandas reference (tests, benchmark) -------------------------------------


@dataclass(frozen=True)
class Export:
    """Everything the pandas reference needs, point-in-time filtering not applied.

    ``events``: ``id, profile_id, type, event, timestamp, received_at, revenue`` (revenue of
    purchases, NaN for other events) and one column per requested property (decoded JSON).
    ``lines``: product lines of purchases, ``event_id, profile_id, timestamp, received_at,
    category, quantity``. ``traits``: the trait log, ``id, profile_id, name, value, class,
    event_time, received_at``. Times are pandas UTC timestamps.
    """

    events: pd.DataFrame
    lines: pd.DataFrame
    traits: pd.DataFrame


def export(engine: Engine, *, purchases: Purchases = Purchases(), properties: Sequence[str] = ()) -> Export:
    with snapshot(engine) as view:
        conn = view.conn
        dialect = dialect_named(conn.dialect.name)
        attributed = events.c.profile_id.is_not(None)
        exported = _fetch_events(conn, dialect, purchases, attributed, properties)
        elements, category, quantity = product_lines(dialect)
        lines = _fetch(
            conn,
            select(
                events.c.id.label("event_id"),
                events.c.profile_id,
                dialect.epoch_microseconds(events.c.timestamp).label("timestamp"),
                dialect.epoch_microseconds(events.c.received_at).label("received_at"),
                category.label("category"),
                quantity.label("quantity"),
            )
            .select_from(events)
            .join(elements, true())
            .where(attributed, is_track(purchases.events)),
            text_columns=("category",),
        )
        traits = conn.execute(
            select(*(trait_changes.c[name] for name in _TRAIT_LOG)).order_by(trait_changes.c.id)
        ).all()
    trait_frame = pd.DataFrame(traits, columns=list(_TRAIT_LOG))
    for column in ("event_time", "received_at"):
        trait_frame[column] = pd.to_datetime(trait_frame[column], utc=True)
    return Export(events=exported, lines=_with_times(lines), traits=trait_frame)


_TRAIT_LOG = ("id", "profile_id", "name", "value", "class", "event_time", "received_at")


def _fetch_events(
    conn: Connection, dialect: Dialect, purchases: Purchases, where: ColumnElement[bool], properties: Sequence[str]
) -> pd.DataFrame:
    query = select(
        events.c.id,
        events.c.profile_id,
        events.c.type,
        events.c.event,
        dialect.epoch_microseconds(events.c.timestamp).label("timestamp"),
        dialect.epoch_microseconds(events.c.received_at).label("received_at"),
        # An order of unknown value counts as a purchase worth 0, as in the SQL features.
        case((is_track(purchases.events), func.coalesce(order_value(dialect, purchases), 0.0))).label("revenue"),
        *(dialect.json_text(events.c.payload, ("properties", name)).label(name) for name in properties),
    ).where(where)
    frame = _fetch(conn, query, text_columns=properties, categorical=("type", "event"))
    for name in properties:
        frame[name] = [None if text is None else orjson.loads(text) for text in frame[name].tolist()]
    return _with_times(frame)


def _with_times(frame: pd.DataFrame) -> pd.DataFrame:
    for column in ("timestamp", "received_at"):
        frame[column] = pd.to_datetime(frame[column].astype("int64"), unit="us", utc=True)
    return frame


# -- fetching --------------------------------------------------------------------------------


def _fetch(
    conn: Connection, query: Select, *, text_columns: Sequence[str] = (), categorical: Sequence[str] = ()
) -> pd.DataFrame:
    """The query's rows as a frame: ids and times (epoch us) int64, ``text_columns`` strings (None
    for NULL), ``categorical`` pandas categoricals (few distinct values, millions of rows), every
    other column float64."""
    if conn.dialect.name == "postgresql":
        return _typed(_copy_out(conn, query, text_columns, categorical), text_columns, categorical)
    result = conn.execute(query)
    names = list(result.keys())
    # Typed chunk by chunk, so that 50M events never sit in memory as Python strings; plain
    # tuples, because pandas probes every SQLAlchemy Row's attributes (longer than the query).
    chunks = [_typed(pd.DataFrame([tuple(row) for row in rows], columns=names), text_columns, categorical)
              for rows in result.partitions(_FETCH_ROWS)]
    if not chunks:
        return _typed(pd.DataFrame(columns=names), text_columns, categorical)
    for name in categorical:  # the same categories in every chunk, else concat falls back to strings
        found = union_categoricals([chunk[name] for chunk in chunks], sort_categories=True).categories
        for chunk in chunks:
            chunk[name] = chunk[name].cat.set_categories(found)
    return pd.concat(chunks, ignore_index=True)


def _copy_out(conn: Connection, query: Select, text_columns: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """Run ``query`` as ``COPY (...) TO STDOUT`` (CSV) and parse the stream with pyarrow."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    raw = conn.connection.driver_connection
    statement = psycopg.ClientCursor(raw).mogrify(compiled.string, compiled.params)
    types: dict[str, pa.DataType] = {}
    for name in query.selected_columns.keys():
        if name in categorical:
            types[name] = pa.dictionary(pa.int32(), pa.string())
        elif name in text_columns:
            types[name] = pa.string()
        else:
            types[name] = pa.int64() if name in _INTEGER_COLUMNS else pa.float64()
    options = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False)
    with raw.cursor() as cursor, cursor.copy(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv, HEADER true)") as copy:
        stream = io.BufferedReader(_Blocks(copy), buffer_size=1 << 20)
        table = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=16 << 20), convert_options=options).read_all()
    return table.to_pandas()


class _Blocks(io.RawIOBase):
    """A readable file over the byte blocks of a COPY, so that pyarrow parses as they arrive
    instead of after the whole result sits in memory twice."""

    def __init__(self, blocks: Iterable[bytes | memoryview]) -> None:
        self._blocks = iter(blocks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = memoryview(bytes(block))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


_INTEGER_COLUMNS = ("profile_id", "id", "event_id", "timestamp", "received_at")


def _typed(frame: pd.DataFrame, text_columns: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    for name in frame.columns:
        if name in categorical:
            frame[name] = frame[name].astype("category")
        elif name in text_columns:
            frame[name] = frame[name].astype("object").where(frame[name].notna(), None)
        elif name in _INTEGER_COLUMNS:
            frame[name] = frame[name].astype("int64")
        else:
            frame[name] = pd.to_numeric(frame[name], errors="raise").astype("float64")
    return frame
