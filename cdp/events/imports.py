"""Bulk import of files (JSON lines, CSV, Parquet) with the Tracking API's rules, streamed in chunks."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from cdp.errors import InvalidInput
from cdp.events.backfills import record_backfill
from cdp.events.ingest import IngestConfig, prepare_batch, store_prepared
from cdp.events.schemas import Envelope
from cdp.store.db import write_transaction

FORMATS = ("jsonl", "csv", "parquet")
# Top-level Segment Spec fields a column may fill; any other column becomes a property or trait.
SPEC_FIELDS = frozenset(
    {"type", "messageId", "userId", "anonymousId", "event", "name", "groupId", "previousId",
     "timestamp", "originalTimestamp", "sentAt", "category"}
)
ID_FIELDS = frozenset({"messageId", "userId", "anonymousId", "groupId", "previousId"})
TRAIT_TYPES = frozenset({"identify", "group"})
# A cell becomes a number only when it reads back the same: "00123" (a customer number, a zip
# code) stays text, as do "nan", "inf" and "1_000", which Python's int() and float() would take.
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")

Progress = Callable[[int], None]  # called with the number of input bytes or rows just consumed


@dataclass(frozen=True)
class ImportResult:
    read: int
    accepted: int
    quarantined: int


@dataclass(frozen=True)
class ColumnMapping:
    """How tabular rows become messages: ``fields`` maps a message path (``properties.revenue``) to a column."""

    fields: Mapping[str, str]
    default_type: str = "track"
    default_event: str | None = None

    @classmethod
    def parse(cls, pairs: Iterable[str], *, default_type: str, default_event: str | None) -> ColumnMapping:
        fields = {}
        for pair in pairs:
            target, sep, column = pair.partition("=")
            if not sep or not target.strip() or not column.strip():
                raise InvalidInput(f"--map takes FIELD=COLUMN (e.g. userId=customer_id), got {pair!r}")
            fields[target.strip()] = column.strip()
        return cls(fields=fields, default_type=default_type, default_event=default_event)

    def message(self, row: Mapping[str, Any], row_number: int) -> dict[str, Any]:
        """The message of the file's ``row_number``-th row (from 1).

        Without a messageId column, the row's own id is derived from its content and its row
        number: importing the same file again stores nothing twice, and two identical rows (two
        orders of the same amount on the same day, in a log without order ids) stay two events.
        """
        mapped_columns = set(self.fields.values())
        message: dict[str, Any] = {"type": self.default_type}
        if self.default_event:
            message["event"] = self.default_event
        for column, value in row.items():
            if column not in mapped_columns and column not in self.fields:
                target = column if column in SPEC_FIELDS or "." in column else None
                if target is None:
                    target = f"{_bag(row, self)}.{column}"
                _put(message, target, value)
        for target, column in self.fields.items():
            if column not in row:
                raise InvalidInput(f"--map {target}={column}: the file has no column {column!r}")
            _put(message, target, row[column])
        if "messageId" not in message:
            content = orjson.dumps(message, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
            message["messageId"] = f"cdp-row{row_number}-{hashlib.sha256(content).hexdigest()[:32]}"
        return message


def _bag(row: Mapping[str, Any], mapping: ColumnMapping) -> str:
    kind = row.get(mapping.fields.get("type", "type")) or mapping.default_type
    return "traits" if kind in TRAIT_TYPES else "properties"


def _put(message: dict[str, Any], path: str, value: Any) -> None:
    # Ids, names and times are text in the Spec, whatever they look like.
    value = _plain(value, text=path in SPEC_FIELDS, id_field=path in ID_FIELDS)
    if value is None:
        return
    *parents, leaf = path.split(".")
    node = message
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _plain(value: Any, *, text: bool, id_field: bool) -> Any:
    """CSV cells and Parquet scalars to JSON values: numbers stay numbers (unless ``text``), times become ISO
    text, integer ids (``id_field``) their digits."""
    if isinstance(value, str):
        if value == "":
            return None
        if text or not NUMBER.fullmatch(value):
            return value
        return float(value) if any(c in value for c in ".eE") else int(value)
    if id_field and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a Parquet column of integer ids: "123", as the Spec has them
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN: a missing cell
        return None
    return value


def detect_format(path: Path, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise InvalidInput(f"unknown format {given!r}; use one of {', '.join(FORMATS)}")
        return given
    suffixes = "".join(path.suffixes).lower()
    for fmt, endings in (("jsonl", (".jsonl", ".ndjson", ".json")), ("csv", (".csv",)), ("parquet", (".parquet", ".pq"))):
        if suffixes.endswith(endings):
            return fmt
    raise InvalidInput(f"cannot tell the format of {path.name}; pass --format {'|'.join(FORMATS)}")


def read_messages(path: Path, fmt: str, mapping: ColumnMapping, progress: Progress) -> Iterator[Any]:
    """Messages from a file, streamed; a line that is not JSON comes back as its text, to be quarantined."""
    if fmt == "jsonl":
        yield from _read_jsonl(path, progress)
    elif fmt == "csv":
        yield from _read_csv(path, mapping, progress)
    else:
        yield from _read_parquet(path, mapping, progress)


def _read_jsonl(path: Path, progress: Progress) -> Iterator[Any]:
    with path.open("rb") as handle:
        for line in handle:
            progress(len(line))
            if line.strip():
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield line.decode("utf-8", "replace").rstrip("\n")


def _read_csv(path: Path, mapping: ColumnMapping, progress: Progress) -> Iterator[Any]:
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.DictReader(text)
        position = 0
        for number, row in enumerate(reader, start=1):
            now = raw.tell()
            if now != position:
                progress(now - position)
                position = now
            yield mapping.message(row, number)


def _read_parquet(path: Path, mapping: ColumnMapping, progress: Progress) -> Iterator[Any]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            number += 1
            yield mapping.message(row, number)
        progress(batch.num_rows)


def import_messages(
    engine: Engine,
    *,
    source_id: int,
    messages: Iterable[Any],
    chunk_rows: int,
    config: IngestConfig,
    live: bool,
) -> ImportResult:
    """Ingest ``messages`` in committed chunks: an interrupted import resumes by running it again.

    Not ``live``, the import is history: once it finishes it is recorded as a backfill, and what
    it brought counts in features from when it happened (:mod:`cdp.events.backfills`).
    """
    started_at = datetime.now(UTC)
    read = accepted = quarantined = 0
    iterator = iter(messages)
    while chunk := list(islice(iterator, chunk_rows)):
        envelope = Envelope(received_at=datetime.now(UTC))
        prepared = prepare_batch(chunk, envelope, config=config)  # outside the write lock
        result = write_transaction(engine, lambda conn: store_prepared(
            conn, source_id=source_id, prepared=prepared, envelope=envelope, config=config, live=live))
        read += len(chunk)
        accepted += result.accepted
        quarantined += result.quarantined
    if not live and read:
        write_transaction(engine, lambda conn: record_backfill(
            conn, source_id=source_id, started_at=started_at, finished_at=datetime.now(UTC), accepted=accepted))
    return ImportResult(read=read, accepted=accepted, quarantined=quarantined)
