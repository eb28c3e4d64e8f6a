"""SQL building blocks that give the same numbers on SQLite and PostgreSQL.

Datetimes are timestamptz on PostgreSQL and text ``YYYY-MM-DD HH:MM:SS.ffffff`` (naive UTC) on
SQLite. Comparisons against bound datetimes are exact on both; durations go through "epoch days"
(float days since 1970-01-01 UTC). SQLite's ``julianday`` keeps milliseconds, so a duration may
differ between the two stores by at most a millisecond. Calendar days are computed from the text
on SQLite, exactly.

JSON: only a JSON number counts as a number and only a JSON string as a string, on both stores
(PostgreSQL would raise on ``'abc'::float8``; SQLite would silently coerce it), so one malformed
message can neither break a feature query nor give the two stores different answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Date,
    Float,
    Integer,
    Interval,
    Text,
    and_,
    case,
    cast,
    extract,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import CTE, FromClause, Select, TableClause, type_coerce

from cdp.store.tables import PURCHASE_FACT_EVENTS, events, purchase_facts
from features.schemas import Partition, Purchases

UNIX_EPOCH_JULIAN_DAY = 2440587.5
SECONDS_PER_DAY = 86400.0


def epoch_days_of(moment: datetime) -> float:
    """Float days since 1970-01-01 UTC of an aware datetime (the Python twin of ``epoch_days``)."""
    if moment.tzinfo is None:
        raise ValueError("a cutoff must be timezone-aware")
    return moment.timestamp() / SECONDS_PER_DAY


def day_number_of(moment: datetime) -> int:
    """The UTC calendar day of ``moment`` as days since 1970-01-01."""
    return (moment.astimezone(UTC).date() - datetime(1970, 1, 1).date()).days


class Dialect:
    """Per-store spelling of the few operations that SQLite and PostgreSQL name differently."""

    def epoch_days(self, moment: ColumnElement) -> ColumnElement[float]:
        raise NotImplementedError

    def longer_than(self, later: ColumnElement, earlier: ColumnElement, span: timedelta) -> ColumnElement[bool]:
        """``later - earlier > span`` for two datetimes."""
        raise NotImplementedError

    def day_number(self, moment: ColumnElement) -> ColumnElement[int]:
        raise NotImplementedError

    def epoch_microseconds(self, moment: ColumnElement) -> ColumnElement[int]:
        """Exact integer microseconds since 1970-01-01 UTC, for export to pandas."""
        raise NotImplementedError

    def json_number(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[float]:
        """The value at ``path`` if it is a JSON number, else NULL."""
        raise NotImplementedError

    def json_string(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[str]:
        """The value at ``path`` if it is a JSON string, else NULL."""
        raise NotImplementedError

    def json_boolean(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[bool]:
        """True / false if the value at ``path`` is a JSON boolean, else NULL."""
        raise NotImplementedError

    def json_text(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[str]:
        """The JSON text of the value at ``path`` (NULL when absent), for export to Python."""
        raise NotImplementedError

    def json_at(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement:
        """The JSON value at ``path``, as the store keeps JSON (jsonb; text for SQLite's arrays)."""
        raise NotImplementedError

    def array_elements(self, document: ColumnElement, path: Sequence[str]) -> tuple[FromClause, ColumnElement]:
        """A lateral FROM item with one row per element of the JSON array at ``path`` (none if
        it is not an array), and the element's column."""
        raise NotImplementedError


class _SQLite(Dialect):
    def epoch_days(self, moment: ColumnElement) -> ColumnElement[float]:
        return func.julianday(moment) - UNIX_EPOCH_JULIAN_DAY

    def longer_than(self, later: ColumnElement, earlier: ColumnElement, span: timedelta) -> ColumnElement[bool]:
        return (func.julianday(later) - func.julianday(earlier)) * SECONDS_PER_DAY > span.total_seconds()

    def day_number(self, moment: ColumnElement) -> ColumnElement[int]:
        # From the stored text, not from julianday: that rounds 23:59:59.9996 up to the next day.
        return cast(func.julianday(func.substr(moment, 1, 10)) - UNIX_EPOCH_JULIAN_DAY, Integer)

    def epoch_microseconds(self, moment: ColumnElement) -> ColumnElement[int]:
        # Whole seconds of the text without its fraction (strftime would round .9996 up to the next
        # second), microseconds from the text.
        seconds = cast(func.strftime("%s", func.substr(moment, 1, 19)), Integer)
        return seconds * 1_000_000 + cast(func.substr(moment, 21, 6), Integer)

    def json_number(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[float]:
        at = _sqlite_path(path)
        return case((func.json_type(document, at).in_(("integer", "real")), cast(func.json_extract(document, at), Float)))

    def json_string(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[str]:
        at = _sqlite_path(path)
        return case((func.json_type(document, at) == "text", func.json_extract(document, at)))

    def json_boolean(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[bool]:
        kind = func.json_type(document, _sqlite_path(path))
        return case((kind == "true", true()), (kind == "false", false()))

    def json_text(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[str]:
        at = _sqlite_path(path)
        kind = func.json_type(document, at)
        # json_extract turns true / false into 1 / 0; spell booleans out so they decode as on PostgreSQL.
        return case(
            (kind.in_(("true", "false")), kind),
            (kind.is_not(None), func.json_quote(func.json_extract(document, at))),
        )

    def json_at(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement:
        return func.json_extract(document, _sqlite_path(path))

    def array_elements(self, document: ColumnElement, path: Sequence[str]) -> tuple[FromClause, ColumnElement]:
        at = _sqlite_path(path)
        # json_each over an object would walk its members: hand it an empty array instead.
        guarded = case((func.json_type(document, at) == "array", func.json_extract(document, at)), else_="[]")
        elements = func.json_each(guarded).table_valued("value", name="element")
        return elements, elements.c.value


class _PostgreSQL(Dialect):
    def epoch_days(self, moment: ColumnElement) -> ColumnElement[float]:
        return cast(extract("epoch", moment), Float) / SECONDS_PER_DAY

    def longer_than(self, later: ColumnElement, earlier: ColumnElement, span: timedelta) -> ColumnElement[bool]:
        return later - earlier > literal(span, Interval)  # interval arithmetic: exact, and cheap

    def day_number(self, moment: ColumnElement) -> ColumnElement[int]:
        return cast(func.timezone("UTC", moment), Date) - literal_column("DATE '1970-01-01'", Date)

    def epoch_microseconds(self, moment: ColumnElement) -> ColumnElement[int]:
        return cast(extract("epoch", moment) * 1_000_000, BigInteger)

    def _at(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement:
        value = type_coerce(document, JSONB)
        for key in path:
            value = value[literal(key)]
        return value

    def json_number(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[float]:
        value = self._at(document, path)
        return case((func.jsonb_typeof(value) == "number", cast(value.astext, Float)))

    def json_string(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[str]:
        value = self._at(document, path)
        return case((func.jsonb_typeof(value) == "string", value.astext))

    def json_boolean(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[bool]:
        value = self._at(document, path)
        return case((func.jsonb_typeof(value) == "boolean", value.astext == "true"))

    def json_text(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement[str]:
        return cast(self._at(document, path), Text)

    def json_at(self, document: ColumnElement, path: Sequence[str]) -> ColumnElement:
        return self._at(document, path)

    def array_elements(self, document: ColumnElement, path: Sequence[str]) -> tuple[FromClause, ColumnElement]:
        value = self._at(document, path)
        guarded = case((func.jsonb_typeof(value) == "array", value), else_=literal_column("'[]'::jsonb", JSONB))
        elements = func.jsonb_array_elements(guarded).table_valued("value", name="element").lateral()
        return elements, type_coerce(elements.c.value, JSONB)


def _sqlite_path(path: Sequence[str]) -> str:
    for key in path:
        if '"' in key:
            raise ValueError(f"a property name can't contain a double quote: {key!r}")
    return "$" + "".join(f'."{key}"' for key in path)


def dialect_named(name: str) -> Dialect:
    if name == "sqlite":
        return _SQLite()
    if name == "postgresql":
        return _PostgreSQL()
    raise ValueError(f"features support sqlite and postgresql stores, not {name!r}")


@dataclass(frozen=True)
class EventRows:
    """What an event feature's SQL sees: one profile's events as of ``cutoff``, in a window.

    A SQL feature is one aggregate expression over these rows (the query groups by profile).
    Build it with :meth:`count`, :meth:`sum`, :meth:`min` and :meth:`max`: they keep to the
    feature's window. Row-level pieces: :attr:`timestamp`, :attr:`type`, :attr:`event`,
    :meth:`number` / :meth:`string` / :meth:`boolean` for ``properties`` (or any payload path),
    :attr:`is_purchase` and :attr:`revenue`. Point-in-time visibility (event time and receipt
    time at or before the cutoff) is applied by the query, never by the feature, and so is the
    restriction to one :class:`~features.schemas.Partition` of the profiles.
    """

    dialect: Dialect
    cutoff: datetime
    purchases: Purchases
    window_days: int | None = None
    partition: Partition = Partition()
    backfilled_until: datetime | None = None

    def windowed(self, days: int | None) -> EventRows:
        return replace(self, window_days=days)

    @property
    def visible(self) -> ColumnElement[bool]:
        """The events the query reads: visible as of the cutoff, of the partition's profiles."""
        return self.visible_in(events)

    def visible_in(self, rows: TableClause) -> ColumnElement[bool]:
        """:attr:`visible` for the rows of another table of facts (``purchase_facts``)."""
        return and_(visible(self.cutoff, self.backfilled_until, rows), in_partition(rows.c.profile_id, self.partition))

    # -- row-level pieces -------------------------------------------------------------------
    @property
    def timestamp(self) -> ColumnElement:
        return events.c.timestamp

    @property
    def type(self) -> ColumnElement[str]:
        return events.c.type

    @property
    def event(self) -> ColumnElement[str]:
        return events.c.event

    @property
    def payload(self) -> ColumnElement:
        return events.c.payload

    def number(self, *path: str) -> ColumnElement[float]:
        """``properties.<path>`` if a JSON number (``number("revenue")``), else NULL."""
        return self.dialect.json_number(events.c.payload, ("properties", *path))

    def string(self, *path: str) -> ColumnElement[str]:
        """``properties.<path>`` if a JSON string, else NULL."""
        return self.dialect.json_string(events.c.payload, ("properties", *path))

    def boolean(self, *path: str) -> ColumnElement[bool]:
        """``properties.<path>`` if a JSON boolean, else NULL."""
        return self.dialect.json_boolean(events.c.payload, ("properties", *path))

    def named(self, *names: str) -> ColumnElement[bool]:
        """A track call named one of ``names``."""
        return is_track(names)

    @property
    def is_purchase(self) -> ColumnElement[bool]:
        return is_track(self.purchases.events)

    @property
    def revenue(self) -> ColumnElement[float]:
        """An order's value: the revenue property, else the sum of its product lines.

        The fallback is a correlated subquery, which keeps PostgreSQL from scanning in parallel:
        a revenue feature belongs in the ``purchases`` family (``PurchaseRows.revenue``).
        """
        return order_value(self.dialect, self.purchases)

    @property
    def in_window(self) -> ColumnElement[bool]:
        if self.window_days is None:
            return true()
        return self.timestamp > self.cutoff - timedelta(days=self.window_days)

    def between_days_ago(self, newest: int, oldest: int) -> ColumnElement[bool]:
        """Event time in ``(cutoff - oldest days, cutoff - newest days]``."""
        return and_(
            self.timestamp > self.cutoff - timedelta(days=oldest), self.timestamp <= self.cutoff - timedelta(days=newest)
        )

    def days_before_cutoff(self, moment: ColumnElement) -> ColumnElement[float]:
        return literal(epoch_days_of(self.cutoff), Float) - self.dialect.epoch_days(moment)

    # -- aggregates, kept to the window ----------------------------------------------------
    def _where(self, where: ColumnElement[bool] | None) -> ColumnElement[bool]:
        return self.in_window if where is None else and_(self.in_window, where)

    def count(self, where: ColumnElement[bool] | None = None) -> ColumnElement[int]:
        return func.count().filter(self._where(where))

    def sum(self, value: ColumnElement, where: ColumnElement[bool] | None = None) -> ColumnElement[float]:
        """Sum over the window, 0 when no row qualifies."""
        return func.coalesce(func.sum(value).filter(self._where(where)), 0.0)

    def min(self, value: ColumnElement, where: ColumnElement[bool] | None = None) -> ColumnElement:
        return func.min(value).filter(self._where(where))

    def max(self, value: ColumnElement, where: ColumnElement[bool] | None = None) -> ColumnElement:
        return func.max(value).filter(self._where(where))


PRODUCTS = ("properties", "products")


@dataclass(frozen=True)
class Properties:
    """Where a row's event properties are: a JSON column, and the path to them inside it."""

    document: ColumnElement
    prefix: tuple[str, ...] = ()

    def at(self, *path: str) -> tuple[str, ...]:
        return (*self.prefix, *path)


EVENT_PROPERTIES = Properties(events.c.payload, ("properties",))


def is_track(names: Sequence[str]) -> ColumnElement[bool]:
    return and_(events.c.type == "track", events.c.event.in_(list(names)))


def order_value(dialect: Dialect, purchases: Purchases, properties: Properties = EVENT_PROPERTIES) -> ColumnElement[float]:
    """The value of an order event: ``properties.<revenue>``, else the sum of its product lines
    (price x quantity, quantity 1 when absent), else its own ``price`` x ``quantity`` (a row of
    a flat order-lines file, UCI's Online Retail say); NULL if none is there."""
    elements, element = dialect.array_elements(properties.document, properties.at("products"))
    price = dialect.json_number(element, ("price",))
    quantity = func.coalesce(dialect.json_number(element, ("quantity",)), 1.0)
    # Correlated on the event row; COALESCE only evaluates it when the property is absent.
    lines = func.sum(price * quantity).select().select_from(elements).scalar_subquery()
    line = dialect.json_number(properties.document, properties.at("price")) * func.coalesce(
        dialect.json_number(properties.document, properties.at("quantity")), 1.0)
    return func.coalesce(dialect.json_number(properties.document, properties.at(purchases.revenue)), lines, line)


def product_lines(
    dialect: Dialect, document: ColumnElement = events.c.payload, path: Sequence[str] = PRODUCTS
) -> tuple[FromClause, ColumnElement[str | None], ColumnElement[float]]:
    """The lateral FROM item of an order's product lines, a line's category and its quantity."""
    elements, element = dialect.array_elements(document, path)
    category = dialect.json_string(element, ("category",))
    quantity = func.coalesce(dialect.json_number(element, ("quantity",)), 1.0)
    return elements, category, quantity


def known_by(cutoff: datetime, backfilled_until: datetime | None) -> datetime:
    """The latest receipt time a fact may have to count as of ``cutoff``.

    Facts received by ``backfilled_until`` (history imported in bulk, e.g. on switching from
    another CDP) count from the moment they happened: their receipt time only says when the import
    ran. Facts received later count from their receipt, so a late one never leaks.
    """
    return cutoff if backfilled_until is None else max(cutoff, backfilled_until)


def visible(cutoff: datetime, backfilled_until: datetime | None = None, rows: TableClause = events) -> ColumnElement[bool]:
    """A fact exists as of ``cutoff`` only if it happened and was received by then (see :func:`known_by`)."""
    return and_(
        rows.c.timestamp <= cutoff,
        rows.c.received_at <= known_by(cutoff, backfilled_until),
        rows.c.profile_id.is_not(None),
    )


def in_partition(profile_id: ColumnElement, partition: Partition) -> ColumnElement[bool]:
    return true() if partition.count == 1 else profile_id % partition.count == partition.index


def after(cutoff: datetime, horizon: timedelta) -> ColumnElement[bool]:
    """Event time in ``(cutoff, cutoff + horizon]``: a label's window."""
    return and_(events.c.timestamp > cutoff, events.c.timestamp <= cutoff + horizon, events.c.profile_id.is_not(None))


@dataclass(frozen=True)
class PurchaseRows:
    """What a purchase feature's SQL sees: one row per purchase visible as of the cutoff.

    Columns of :attr:`c`: ``profile_id``; ``timestamp``; ``day`` (UTC calendar day number);
    ``revenue`` (the order's value, 0 when unknown); ``gap_days`` (days since the profile's
    previous purchase, NULL for its first); ``gap_mean_days`` (the profile's mean gap);
    ``first_day`` (the day of its first purchase). :meth:`lines` gives the product lines of
    the same purchases. Purchases named in ``PURCHASE_FACT_EVENTS`` come from the narrow
    ``purchase_facts`` mirror (migration 0015), which the two read apart and side by side in
    less time than one statement reading it once; other names from ``events``.
    """

    purchase: CTE
    rows: FromClause
    dialect: Dialect
    cutoff: datetime

    @classmethod
    def build(cls, scope: EventRows) -> PurchaseRows:
        dialect = scope.dialect
        names = list(scope.purchases.events)
        if set(names) <= set(PURCHASE_FACT_EVENTS):  # the narrow mirror has them all
            rows, properties = purchase_facts, Properties(purchase_facts.c.properties)
            which = and_(scope.visible_in(rows), rows.c.event.in_(names))
        else:
            rows, properties, which = events, EVENT_PROPERTIES, and_(scope.visible, scope.is_purchase)
        purchase = (
            select(
                rows.c.profile_id,
                rows.c.timestamp,
                dialect.day_number(rows.c.timestamp).label("day"),
                func.coalesce(order_value(dialect, scope.purchases, properties), 0.0).label("revenue"),
                dialect.json_at(properties.document, properties.at("products")).label("products"),
            )
            .where(which)
            .cte("purchase")
        )
        at = dialect.epoch_days(purchase.c.timestamp)
        # No tie-break: gaps between sorted times don't depend on the order of equal times.
        previous = func.lag(at, type_=Float).over(partition_by=purchase.c.profile_id, order_by=purchase.c.timestamp)
        gaps = select(purchase.c.profile_id, purchase.c.timestamp, purchase.c.day, purchase.c.revenue,
                      (at - previous).label("gap_days")).subquery("gaps")
        by_profile = {"partition_by": gaps.c.profile_id}
        rows = select(
            gaps,
            func.avg(gaps.c.gap_days, type_=Float).over(**by_profile).label("gap_mean_days"),
            func.min(gaps.c.day).over(**by_profile).label("first_day"),
        ).subquery("purchases")
        return cls(purchase, rows, dialect, scope.cutoff)

    def lines(self) -> Select:
        """One row per purchased product line: ``profile_id, category`` (NULL if none), ``quantity``."""
        elements, category, quantity = product_lines(self.dialect, self.purchase.c.products, ())
        return (
            select(self.purchase.c.profile_id, category.label("category"), quantity.label("quantity"))
            .select_from(self.purchase)
            .join(elements, true())
        )

    @property
    def c(self):  # type: ignore[no-untyped-def]
        return self.rows.c

    @property
    def cutoff_day(self) -> int:
        return day_number_of(self.cutoff)

    def between_days_ago(self, newest: int, oldest: int) -> ColumnElement[bool]:
        """Purchase time in ``(cutoff - oldest days, cutoff - newest days]``."""
        moment = self.rows.c.timestamp
        return and_(moment > self.cutoff - timedelta(days=oldest), moment <= self.cutoff - timedelta(days=newest))

    def revenue(self, where: ColumnElement[bool] | None = None) -> ColumnElement[float]:
        """Revenue of the purchases (``where`` they match), 0 without any."""
        total = func.sum(self.rows.c.revenue)
        return func.coalesce(total if where is None else total.filter(where), 0.0)


@dataclass(frozen=True)
class SessionRows:
    """The events of the last ``days`` before the cutoff, each with the time of the one before.

    A session is a run of a profile's events with no gap over ``timeout``; counted in a window,
    it is one that has at least one event there (a session cut by the window's start counts).
    """

    rows: FromClause
    dialect: Dialect
    cutoff: datetime
    timeout: timedelta

    @classmethod
    def build(cls, scope: EventRows, *, days: int, timeout: timedelta) -> SessionRows:
        # Equal times may come in any order: the later one's gap is 0 either way.
        previous = func.lag(events.c.timestamp, type_=events.c.timestamp.type).over(
            partition_by=events.c.profile_id, order_by=events.c.timestamp
        )
        rows = (
            select(events.c.profile_id, events.c.timestamp, previous.label("previous"))
            .where(scope.visible, events.c.timestamp > scope.cutoff - timedelta(days=days))
            .subquery("timeline")
        )
        return cls(rows, scope.dialect, scope.cutoff, timeout)

    @property
    def c(self):  # type: ignore[no-untyped-def]
        return self.rows.c

    def starts(self, days: int) -> ColumnElement[bool]:
        """The row opens a session as seen from a window of ``days``."""
        start = self.cutoff - timedelta(days=days)
        row = self.rows.c
        return and_(
            row.timestamp > start,
            or_(
                row.previous.is_(None),
                row.previous <= start,
                self.dialect.longer_than(row.timestamp, row.previous, self.timeout),
            ),
        )
