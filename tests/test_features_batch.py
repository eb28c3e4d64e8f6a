"""Features per partition of the profiles (the predicate runs in the store), joined back into the
single-query frame; backfilled history; snapshots and the readiness of a training set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, inspect, select

import features
from cdp.auth.service import create_source
from cdp.events.imports import import_messages
from cdp.store.tables import backfills
from features import Partition
from features.batch import combine, snapshot_path, training_readiness, write_snapshot
from features.definitions import resolve
from features.read import history as history_of
from features.read import read_features, snapshot
from tests.features_data import CONFIG, START, profile_of, random_shop, store
from tests.test_features import CUTOFF, assert_same, at, identify, on_time, order, page

CHOSEN = resolve("default", [features.trait_feature("plan")])


@pytest.mark.parametrize("count", [1, 3])
def test_partitions_together_equal_one_query(engine, count: int) -> None:  # type: ignore[no-untyped-def]
    store(engine, random_shop(4, users=40, start=START, days=200))
    for cutoff in (START + timedelta(days=60), START + timedelta(days=200)):
        whole = read_features(engine, as_of=cutoff, features=CHOSEN)
        parts = [read_features(engine, as_of=cutoff, features=CHOSEN, partition=p) for p in Partition.split(count)]
        for part in parts:
            assert len(part) < len(whole) or count == 1
        for index, part in enumerate(parts):
            assert (part.index % count == index).all()
        assert_same(combine(parts, features=CHOSEN), whole)


def test_a_buyer_gets_zero_for_categories_bought_only_in_another_partition(engine) -> None:  # type: ignore[no-untyped-def]
    store(engine, on_time(order("ann", at(-3), 10.0, ("Books", 10.0, 1)), order("bob", at(-2), 5.0, ("Toys", 5.0, 1)),
                          page("cy", at(-1))))
    ann, bob, cy = (profile_of(engine, user) for user in ("ann", "bob", "cy"))
    assert ann % 2 != bob % 2  # consecutive ids: the two buyers land in different partitions
    parts = [read_features(engine, as_of=CUTOFF, features=CHOSEN, partition=p) for p in Partition.split(2)]
    assert not any({"category_share__books", "category_share__toys"} <= set(part.columns) for part in parts)
    combined = combine(parts, features=CHOSEN)
    assert_same(combined, read_features(engine, as_of=CUTOFF, features=CHOSEN))
    assert combined.loc[ann, "category_share__toys"] == 0.0 and combined.loc[bob, "category_share__books"] == 0.0
    assert np.isnan(combined.loc[cy, "category_share__books"])


def test_partition_is_validated() -> None:
    assert Partition.split(3) == [Partition(0, 3), Partition(1, 3), Partition(2, 3)]
    for index, count in ((3, 3), (-1, 3), (0, 0)):
        with pytest.raises(ValueError, match="partition"):
            Partition(index, count)


def test_backfilled_history_counts_from_its_event_time(engine) -> None:  # type: ignore[no-untyped-def]
    imported = at(30)  # the whole history arrived a month after the cutoff, in one import
    later = at(40)
    store(engine, [
        (order("ann", at(-5), 10.0), imported), (identify("ann", at(-4), plan="pro"), imported),
        (order("ann", at(-1), 99.0), later),  # late, and received after the import: still invisible
        (order("ann", at(1), 7.0), imported),  # after the cutoff: never
    ])
    ann = profile_of(engine, "ann")
    assert read_features(engine, as_of=CUTOFF, features=CHOSEN).empty
    seen = read_features(engine, as_of=CUTOFF, features=CHOSEN, backfilled_until=imported).loc[ann]
    assert seen["frequency"] == 1 and seen["monetary"] == 10.0 and seen["trait__plan"] == "pro"


def test_a_history_import_counts_from_its_event_time_without_a_setting(engine) -> None:  # type: ignore[no-untyped-def]
    """`cdp import --backfill` records the import; features then see its events at past cutoffs."""
    with engine.begin() as conn:
        source_id = create_source(conn, name="history", now=datetime.now(UTC))[0].id

    def imported(user: str, live: bool) -> int:
        result = import_messages(engine, source_id=source_id, messages=[order(user, at(-5), 10.0)], chunk_rows=100,
                                 config=CONFIG, live=live)
        assert result.accepted == 1
        return profile_of(engine, user)

    live = imported("ann", live=True)  # an import with live hooks is not history: it counts from today
    assert read_features(engine, as_of=CUTOFF, features=CHOSEN).empty
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(backfills)).scalar() == 0
    history = imported("bob", live=False)
    seen = read_features(engine, as_of=CUTOFF, features=CHOSEN)
    # Everything received by the end of the history import counts from when it happened, as with
    # CDP_BACKFILLED_UNTIL set to that moment (ann's live import came before it).
    assert sorted(seen.index) == sorted([live, history]) and seen.loc[history, "monetary"] == 10.0
    # What arrives after the import counts from its arrival again.
    store(engine, [(order("cy", at(-5), 5.0), datetime.now(UTC) + timedelta(days=1))])
    assert profile_of(engine, "cy") not in read_features(engine, as_of=CUTOFF, features=CHOSEN).index
    with snapshot(engine) as view:
        assert history_of(view.conn, as_of=CUTOFF).event_kinds == 1  # the readiness report's reading agrees


def test_snapshot_file_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    frame = pd.DataFrame({"frequency": [1, 2]}, index=pd.Index([5, 7], name="profile_id"))
    path = write_snapshot(frame, snapshot_path(tmp_path, CUTOFF))
    assert path == tmp_path / "features" / "2025-03-01T120000Z.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
    assert list(path.parent.iterdir()) == [path]


def test_training_readiness_of_backfilled_history(engine) -> None:  # type: ignore[no-untyped-def]
    store(engine, [(message, at(200)) for message, _ in random_shop(5, users=60, start=START, days=200)])
    as_of = START + timedelta(days=200)
    frame, report = training_readiness(engine, as_of=as_of, backfilled_until=at(200))
    assert sorted(frame["cutoff"].unique()) == [pd.Timestamp(as_of - timedelta(days=d)) for d in (90, 60, 30)]
    assert {check.name for check in report.checks} >= {"history", "positives", "negatives"}
    assert report.checks[0].passed  # 200 days of history for a 30-day horizon
    with pytest.raises(features.NotReady, match="no eligible profile"):
        training_readiness(engine, as_of=as_of)  # without the backfill nothing was known back then


def test_the_timeline_index_covers_what_the_feature_queries_read(engine) -> None:  # type: ignore[no-untyped-def]
    covered = ["profile_id", "timestamp", "received_at", "type", "event"]
    found = {ix["name"]: ix for ix in inspect(engine).get_indexes("events")}
    if engine.dialect.name == "postgresql":
        index = found["ix_events_profile_id_timestamp"]
        assert index["column_names"] + index["dialect_options"]["postgresql_include"] == covered
    else:
        assert found["ix_events_profile_id_timestamp_received_at_type_event"]["column_names"] == covered
        assert "ix_events_profile_id_timestamp" not in found
