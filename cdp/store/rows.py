"""Bulk inserts into Core tables at the driver level, for the write paths that run per event.

SQLAlchemy binds every parameter of every row through its type, compiles ``ON CONFLICT`` statements
again on each call (they have no cache key), and psycopg runs an ``executemany`` as one statement per
row: for a batch of small rows that costs more than the database's own work. Here each column's
values are converted once, by its type in the table (the table stays the schema): a prepared
``executemany`` on SQLite; on PostgreSQL one ``INSERT ... SELECT FROM unnest`` of column arrays, one
round trip whatever the count. The same idea as ``cdp.events.bulk``, for any table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import JSON, Connection, Table
from sqlalchemy.dialects import postgresql

from cdp.store.types import UTCDateTime, dumps_json, sqlite_datetime

_PG_DIALECT = postgresql.dialect()


def insert_rows(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]], *, suffix: str = ""
) -> None:
    """Insert ``rows`` (values in ``columns`` order) into ``table``; ``suffix`` follows the statement
    (an ``ON CONFLICT`` clause, naming the columns as they are in the table)."""
    if not rows:
        return
    statement, converters = _statement(conn.dialect.name, table, columns, suffix)
    if conn.dialect.name == "postgresql":
        arrays = [list(values) for values in zip(*rows, strict=True)]
        for index, convert in converters:
            arrays[index] = [convert(value) for value in arrays[index]]
        conn.exec_driver_sql(statement, tuple(arrays))
        return
    if converters:
        rows = [list(row) for row in rows]
        for row in rows:
            for index, convert in converters:
                row[index] = convert(row[index])
    conn.exec_driver_sql(statement, [tuple(row) for row in rows])


def insert_statement(dialect: str, table: Table, columns: tuple[str, ...], suffix: str = "") -> str:
    """The statement :func:`insert_rows` runs, for a caller that builds the driver parameters itself:
    on PostgreSQL, one array per column (JSON as text); on SQLite, one tuple per row."""
    return _statement(dialect, table, columns, suffix)[0]


@cache
def _statement(
    dialect: str, table: Table, columns: tuple[str, ...], suffix: str
) -> tuple[str, list[tuple[int, Callable[[Any], Any]]]]:
    """The statement for these columns, and the value conversions it needs (column index, function)."""
    types = [table.c[name].type for name in columns]
    converters: list[tuple[int, Callable[[Any], Any]]] = [
        (index, dumps_json) for index, type_ in enumerate(types) if _is_json(type_)]  # None -> JSON null, as SQLAlchemy
    names = ", ".join(f'"{name}"' for name in columns)
    if dialect == "postgresql":
        # JSON travels as text and becomes jsonb in the select: psycopg sends a list of str as text[].
        # Arrays go in binary (%b): in text format psycopg escapes every element with a regular expression.
        aliases = [f"c{index}" for index in range(len(columns))]
        arrays = ", ".join(
            f"%b::{'text' if _is_json(type_) else type_.compile(dialect=_PG_DIALECT)}[]" for type_ in types)
        selected = ", ".join(f"{alias}::jsonb" if _is_json(type_) else alias for alias, type_ in zip(aliases, types))
        statement = (f"INSERT INTO {table.name} ({names}) SELECT {selected} "
                     f"FROM unnest({arrays}) AS t({', '.join(aliases)}) {suffix}")
        return statement, converters
    converters += [(index, sqlite_datetime) for index, type_ in enumerate(types) if isinstance(type_, UTCDateTime)]
    placeholders = ", ".join("?" * len(columns))
    return f"INSERT INTO {table.name} ({names}) VALUES ({placeholders}) {suffix}", converters


def _is_json(type_: Any) -> bool:
    return isinstance(type_, JSON)  # JSONB on PostgreSQL is a variant of it (cdp.store.types.JSONDocument)
