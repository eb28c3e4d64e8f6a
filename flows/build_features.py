"""The ``build_features`` flow: features of every profile as of a moment, per partition, as a Parquet snapshot."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

import features
from cdp.config import Settings, get_settings
from features.batch import combine, snapshot_path, training_readiness, write_snapshot
from features.definitions import resolve
from flows.runtime import store_task


@dataclass(frozen=True)
class FeatureSnapshot:
    path: Path
    profiles: int
    columns: int
    readiness: str


@store_task
def features_of(settings: Settings, as_of: datetime, partition: features.Partition, feature_set: str) -> pd.DataFrame:
    started = time.perf_counter()
    frame = features.load(settings, as_of=as_of, feature_set=feature_set, partition=partition,
                          backfilled_until=settings.backfilled_until)
    get_run_logger().info("partition %d of %d: %d profiles x %d columns in %.1f s", partition.index + 1,
                          partition.count, len(frame), frame.shape[1], time.perf_counter() - started)
    return frame


@task(cache_policy=NO_CACHE)
def write(settings: Settings, parts: list[pd.DataFrame], as_of: datetime, feature_set: str) -> tuple[Path, pd.DataFrame]:
    started = time.perf_counter()
    frame = combine(parts, features=resolve(feature_set))
    path = write_snapshot(frame, snapshot_path(settings.home, as_of))
    get_run_logger().info("%d profiles x %d columns -> %s in %.1f s", len(frame), frame.shape[1], path,
                          time.perf_counter() - started)
    return path, frame


@store_task
def readiness(settings: Settings, as_of: datetime, horizon_days: int) -> str:
    started = time.perf_counter()
    try:
        frame, report = training_readiness(settings, as_of=as_of, horizon=timedelta(days=horizon_days),
                                           backfilled_until=settings.backfilled_until)
    except features.NotReady as error:
        return f"data readiness: NOT READY: {error}"
    get_run_logger().info("churn training frame: %d rows, %d profiles in %.1f s; %s", len(frame),
                          frame["profile_id"].nunique(), time.perf_counter() - started, report)
    return str(report)


@flow(name="build_features")
def build_features(
    as_of: datetime | None = None, partitions: int | None = None, feature_set: str = "default", horizon_days: int = 30
) -> FeatureSnapshot:
    """Features of every profile as of a moment (default: now) to CDP_HOME/features/; can a churn model train?"""
    settings, as_of = get_settings(), as_of or datetime.now(UTC)
    slices = features.Partition.split(partitions or settings.flows_partitions)
    parts = features_of.map(unmapped(settings), unmapped(as_of), slices, unmapped(feature_set))
    path, frame = write(settings, parts, as_of, feature_set)
    return FeatureSnapshot(path, len(frame), frame.shape[1], readiness(settings, as_of, horizon_days))
