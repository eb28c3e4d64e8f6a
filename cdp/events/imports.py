"""Bulk import of files (JSON lines, CSV, Parquet) with the Tracking API's rules, streamed in chunks."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections import OrderedDict
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
# A cell is a number only when written as one, in decimal without leading zeros: "00123" (a
# customer number, a zip code) stays text, as do "nan", "inf" and "1_000", which Python's int()
# and float() would take.
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

    def message(self, row: Mapping[str, Any], repeats: RepeatCounter) -> dict[str, Any]:
        """The message of a row; ``repeats`` has seen the file's rows before it.

        Without a messageId column, the row's id is derived from its content, and a repeat of
        the same content gets its occurrence number too: importing the file again, or a re-export
        in another order, stores nothing twice, and two identical rows (two orders of the same
        amount on the same day, in a log without order ids) stay two events.
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
            digest = hashlib.sha256(content).hexdigest()[:32]
            earlier = repeats.count(digest)
            message["messageId"] = f"cdp-{digest}" + (f"-{earlier + 1}" if earlier else "")
        return message


class RepeatCounter:
    """How many rows of the same content a file had before this one.

    It remembers the last ``memory`` distinct contents only, so a file of millions of rows streams
    in bounded memory: identical rows further apart than that (rare: a log sorted by customer or
    time keeps them together) share an id, and the later one is taken for a repeat delivery.
    """

    def __init__(self, memory: int = 200_000) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._memory = memory

    def count(self, digest: str) -> int:
        earlier = self._seen.pop(digest, 0)
        self._seen[digest] = earlier + 1
        if len(self._seen) > self._memory:
            self._seen.popitem(last=False)
        return earlier


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
        number = value.strip()
        if text or not NUMBER.fullmatch(number):
            return value
        if not any(c in number for c in ".eE"):
            return int(number)
        return float(number) if math.isfinite(float(number)) else value  # "1e400" stays text
    if isinstance(value, float) and not math.isfinite(value):  # NaN: a missing cell (JSON has no infinity either)
        return None
    if id_field and isinstance(value, int | float) and not isinstance(value, bool):
        # A Parquet column of integer ids ("123", as the Spec has them); pandas stores one with
        # gaps as floats: 123.0 is still "123".
        return str(int(value)) if isinstance(value, int) or value.is_integer() else str(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
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
        repeats = RepeatCounter()
        for row in reader:
            now = raw.tell()
            if now != position:
                progress(now - position)
                position = now
            yield mapping.message(row, repeats)


def _read_parquet(path: Path, mapping: ColumnMapping, progress: Progress) -> Iterator[Any]:
    import pyarrow.parquet as pq

    repeats = RepeatCounter()
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            yield mapping.message(row, repeats)
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
