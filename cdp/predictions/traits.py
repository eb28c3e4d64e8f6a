"""Scores written back to profiles as ``predicted`` traits, in bulk; the trait change log keeps their history.

Per prediction key ``K``: ``K_probability`` (or ``K_value`` for a value), ``K_percentile`` (Segment's:
0.8 is the top 20 %), ``K_decile`` (1 is the top 10 %), ``K_reasons`` (phrases), ``K_model_version``
(``fallback:<heuristic>`` when no trained model exists) and ``K_scored_at``. A profile deleted by a
regulation loses them with its other traits (:mod:`cdp.privacy.regulations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from cdp.profiles.traits import record_trait_changes
from cdp.store.db import write_transaction
from cdp.store.tables import profile_traits, trait_changes

PREDICTED = "predicted"
FALLBACK_PREFIX = "fallback:"
# Profiles per transaction: 6 traits each, so 30k log rows; ingestion waits for one chunk at a time.
WRITE_CHUNK_PROFILES = 5_000


def score_trait(key: str, task: str) -> str:
    return f"{key}_value" if task == "value" else f"{key}_probability"


def trait_names(key: str, task: str) -> list[str]:
    """The traits one scoring writes, the score first."""
    return [score_trait(key, task), *(f"{key}_{part}" for part in ("percentile", "decile", "reasons",
                                                                    "model_version", "scored_at"))]


@dataclass(frozen=True)
class ScoredProfiles:
    """Column-wise scores of one prediction (aligned sequences, one entry per profile)."""

    profile_ids: Sequence[int]
    scores: Sequence[float]
    percentiles: Sequence[float]
    deciles: Sequence[int]
    reasons: Sequence[Sequence[str]]

    def __len__(self) -> int:
        return len(self.profile_ids)


def score_changes(
    key: str, task: str, scored: ScoredProfiles, *, model_version: str, as_of: datetime, now: datetime,
    rows: range | None = None,
) -> list[dict[str, Any]]:
    """Trait changes of the profiles in ``rows`` (all by default), timed at ``as_of``: a backtest
    scored later never overrides a newer score."""
    stamp = as_of.isoformat()
    changes = []
    for i in rows if rows is not None else range(len(scored)):
        values = (float(scored.scores[i]), round(float(scored.percentiles[i]), 4), int(scored.deciles[i]),
                  list(scored.reasons[i]), model_version, stamp)
        changes += _changes(key, task, int(scored.profile_ids[i]), values, as_of=as_of, now=now)
    return changes


def write_back(
    engine: Engine, key: str, task: str, scored: ScoredProfiles, *, model_version: str, as_of: datetime, now: datetime,
) -> int:
    """Append the scores to the trait log (their history) and fold them into the current traits, one
    transaction per ``WRITE_CHUNK_PROFILES`` profiles; returns how many trait changes were written.

    Profiles scored before but not eligible any more get null values: a stale score would look current.
    """
    written = 0
    for start in range(0, len(scored), WRITE_CHUNK_PROFILES):
        rows = range(start, min(start + WRITE_CHUNK_PROFILES, len(scored)))
        written += _write(engine, score_changes(key, task, scored, model_version=model_version, as_of=as_of, now=now,
                                                rows=rows))
    with engine.connect() as conn:
        stale = sorted(_holders(conn, score_trait(key, task)) - {int(p) for p in scored.profile_ids})
    nulls = (None,) * len(trait_names(key, task))
    for start in range(0, len(stale), WRITE_CHUNK_PROFILES):
        written += _write(engine, [change for profile_id in stale[start : start + WRITE_CHUNK_PROFILES]
                                   for change in _changes(key, task, profile_id, nulls, as_of=as_of, now=now)])
    return written


def _changes(key: str, task: str, profile_id: int, values: Sequence[Any], *, as_of: datetime,
             now: datetime) -> list[dict[str, Any]]:
    return [{"profile_id": profile_id, "name": name, "value": value, "class": PREDICTED, "source_id": None,
             "message_id": None, "event_time": as_of, "received_at": now}
            for name, value in zip(trait_names(key, task), values, strict=True)]


def _write(engine: Engine, changes: list[dict[str, Any]]) -> int:
    write_transaction(engine, lambda conn: record_trait_changes(conn, changes))
    return len(changes)


def _holders(conn: Connection, name: str) -> set[int]:
    """Profiles whose current ``name`` trait holds a score (not a null)."""
    rows = conn.execute(select(profile_traits.c.profile_id, profile_traits.c.value).where(
        profile_traits.c.name == name, profile_traits.c["class"] == PREDICTED))
    return {row.profile_id for row in rows if row.value is not None}


def read_scores(conn: Connection, *, key: str, task: str) -> list[dict[str, Any]]:
    """Current scores of a prediction, one dict per profile (``profile_id`` and the trait values), by profile."""
    names = trait_names(key, task)
    rows = conn.execute(
        select(profile_traits.c.profile_id, profile_traits.c.name, profile_traits.c.value)
        .where(profile_traits.c.name.in_(names), profile_traits.c["class"] == PREDICTED)
        .order_by(profile_traits.c.profile_id)
    )
    by_profile: dict[int, dict[str, Any]] = {}
    for row in rows:
        by_profile.setdefault(row.profile_id, {"profile_id": row.profile_id})[row.name] = row.value
    return list(by_profile.values())


def score_sample(conn: Connection, *, key: str, task: str, limit: int = 20_000) -> list[float]:
    """Scores of up to ``limit`` scored profiles (any ones: a bounded read for a distribution chart)."""
    query = select(profile_traits.c.value).where(profile_traits.c.name == score_trait(key, task),
                                                 profile_traits.c["class"] == PREDICTED).limit(limit)
    return [float(value) for value in conn.execute(query).scalars() if isinstance(value, int | float)]


def scoring_times(conn: Connection, *, key: str, task: str) -> list[datetime]:
    """The ``as_of`` of every scoring of a prediction kept in the trait log, oldest first."""
    rows = conn.execute(select(trait_changes.c.event_time).distinct().where(
        trait_changes.c.name == score_trait(key, task), trait_changes.c["class"] == PREDICTED))
    return sorted(row.event_time for row in rows)


def scores_as_of(conn: Connection, *, key: str, task: str, as_of: datetime) -> dict[str, dict[int, Any]]:
    """What the scoring as of ``as_of`` wrote, from the trait log: per trait name, value by profile id.

    Profiles it nulled (no longer eligible) are left out; when the same date was scored twice, the
    later scoring counts.
    """
    rows = conn.execute(
        select(trait_changes.c.profile_id, trait_changes.c.name, trait_changes.c.value)
        .where(trait_changes.c.name.in_(trait_names(key, task)), trait_changes.c["class"] == PREDICTED,
               trait_changes.c.event_time == as_of)
        .order_by(trait_changes.c.received_at, trait_changes.c.id)
    )
    by_name: dict[str, dict[int, Any]] = {name: {} for name in trait_names(key, task)}
    for row in rows:
        by_name[row.name][row.profile_id] = row.value
    return {name: {p: v for p, v in values.items() if v is not None} for name, values in by_name.items()}
