"""Statements run straight on the driver, for the lookups the busiest API routes make per request.

SQLAlchemy executes a statement it has compiled before at about 0.1 ms of CPU (a cache key, events,
parameter and result processing): four times an indexed lookup on SQLite, and most of a
recommendation served from a stored list. :class:`DriverStatement` compiles once per dialect and
hands the SQL and the processed parameters to the connection's own cursor, inside the
connection's transaction as any other statement of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Executable
from sqlalchemy.engine import Compiled, Dialect
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class _Compiled:
    compiled: Compiled
    positions: tuple[str, ...] | None  # bind names in order for a positional paramstyle, else None
    processors: Mapping[str, Callable[[Any], Any]]


class DriverStatement:
    """``statement`` run on the driver's cursor; rows as the driver returns them (tuples, values not
    processed: only for columns the driver already gives as Python wants them, such as integers,
    text and booleans, which SQLite gives as 0 and 1)."""

    def __init__(self, statement: Executable) -> None:
        self._statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple | None:
        """The first row of the statement run with ``params``, in ``conn``'s transaction."""
        compiled = self._compiled(conn.dialect)
        values = compiled.compiled.construct_params(params)  # with the literals' values; refuses a missing one
        for name, process in compiled.processors.items():
            values[name] = process(values[name])
        bound = values if compiled.positions is None else [values[name] for name in compiled.positions]
        if not conn.in_transaction():
            conn.begin()  # what executing through SQLAlchemy would do first: a writer's BEGIN IMMEDIATE
        dbapi = conn.dialect.loaded_dbapi
        cursor = conn.connection.cursor()
        try:
            cursor.execute(compiled.compiled.string, bound)
            return cursor.fetchone()
        except dbapi.Error as error:
            failed, lost = error, conn.dialect.is_disconnect(error, conn.connection.dbapi_connection, cursor)
        finally:
            cursor.close()
        # As SQLAlchemy handles it: a lost connection is dropped, not pooled again, and the error raised as
        # SQLAlchemy's, so the API's handlers still tell a store that is down (503) from a value it can't take (400).
        if lost:
            conn.invalidate(failed)
        raise DBAPIError.instance(compiled.compiled.string, bound, failed, dbapi.Error, connection_invalidated=lost,
                                  dialect=conn.dialect) from failed

    def _compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            compiled = self._statement.compile(dialect=dialect)
            processors = {compiled.bind_names[bind]: process for bind in compiled.binds.values()
                          if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
            found = _Compiled(compiled, tuple(compiled.positiontup) if compiled.positional else None, processors)
            self._by_dialect[dialect.name] = found
        return found
