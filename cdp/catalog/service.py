"""Reading catalog files and upserting them into ``catalog_items``."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from cdp.errors import InvalidInput
from cdp.store.tables import catalog_items

FIELDS = ("item_id", "name", "category", "brand", "price", "available")
_TRUE = {"1", "true", "yes", "y", "t", "in_stock"}
_FALSE = {"0", "false", "no", "n", "f", "out_of_stock", ""}
WRITE_CHUNK = 5000


def read_catalog_file(path: Path) -> Iterator[dict[str, Any]]:
    """Catalog rows of a CSV (header row) or JSON lines file (by suffix: ``.csv``, else JSON lines)."""
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}")
    with path.open(newline="") as handle:
        if path.suffix.lower() == ".csv":
            for number, row in enumerate(csv.DictReader(handle), start=2):
                yield catalog_row(row, where=f"{path.name}:{number}")
            return
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise InvalidInput(f"{path.name}:{number} is not JSON: {exc}") from None
                yield catalog_row(record, where=f"{path.name}:{number}")


def catalog_row(record: dict[str, Any], *, where: str) -> dict[str, Any]:
    """One validated row: ``item_id`` required; empty strings are unknown; ``available`` defaults to true."""
    item_id = str(record.get("item_id") or "").strip()
    if not item_id:
        raise InvalidInput(f"{where}: item_id is missing")

    def text(name: str) -> str | None:
        value = record.get(name)
        return None if value is None or str(value).strip() == "" else str(value).strip()

    price = text("price")
    try:
        price_value = None if price is None else float(price)
    except ValueError:
        raise InvalidInput(f"{where}: price {price!r} is not a number") from None
    return {"item_id": item_id, "name": text("name"), "category": text("category"), "brand": text("brand"),
            "price": price_value, "available": _flag(record.get("available", True), where)}


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InvalidInput(f"{where}: available {value!r} is not a boolean")


def import_catalog(conn: Connection, rows: Iterator[dict[str, Any]], *, now: datetime) -> int:
    """Insert or replace items (the file is the truth for the items it lists); returns the rows written."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    written = 0
    chunk: dict[str, dict[str, Any]] = {}
    for row in rows:
        chunk[row["item_id"]] = {**row, "updated_at": now}  # a repeated id: its last line wins
        if len(chunk) >= WRITE_CHUNK:
            written += _upsert(conn, dialect, list(chunk.values()))
            chunk = {}
    return written + _upsert(conn, dialect, list(chunk.values()))


def _upsert(conn: Connection, dialect: Any, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    statement = dialect.insert(catalog_items)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["item_id"], set_={name: statement.excluded[name] for name in (*FIELDS[1:], "updated_at")}),
        rows)
    return len(rows)
