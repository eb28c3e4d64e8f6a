"""Two processes racing on the same new people create one profile each, not two (PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from cdp.auth.service import create_source
from cdp.config import Settings
from cdp.events.ingest import IngestConfig, ingest
from cdp.events.schemas import Envelope
from cdp.identity.extract import identifiers_of
from cdp.identity.resolve import Context, IdentityBatch
from cdp.identity.schemas import USERS
from cdp.setup import prepare_store
from cdp.store.db import write_transaction
from cdp.store.tables import events, identities, profiles

PEOPLE = 200


def _worker(database_url: str, home: str, worker: int, start_at: float) -> None:
    settings = Settings(home=home, database_url=database_url)
    engine = prepare_store(settings)
    config = IngestConfig.from_settings(settings)
    with engine.connect() as conn:
        source_id = conn.execute(select(func.min(events.c.source_id))).scalar() or 1
    time.sleep(max(0.0, start_at - time.time()))
    for person in range(PEOPLE):
        # Both workers see the same person's first messages at the same moment, from two devices.
        batch = [
            {"type": "track", "anonymousId": f"dev-{person}-{worker}", "event": "Viewed", "messageId": f"{person}-{worker}-a"},
            {"type": "identify", "anonymousId": f"dev-{person}-{worker}", "userId": f"user-{person}",
             "traits": {"email": f"p{person}@x.io"}, "messageId": f"{person}-{worker}-b"},
        ]
        envelope = Envelope(received_at=datetime.now(UTC))
        write_transaction(engine, lambda conn: ingest(conn, source_id=source_id, messages=batch, envelope=envelope,
                                                      config=config))
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_workers_create_one_profile_per_person(settings: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        source_id = create_source(conn, name="app", now=datetime.now(UTC))[0].id
        ingest(conn, source_id=source_id, messages=[{"type": "track", "userId": "seed", "event": "E", "messageId": "seed"}],
               envelope=Envelope(received_at=datetime.now(UTC)), config=IngestConfig.from_settings(settings))
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 4
    workers = [context.Process(target=_worker, args=(settings.database_url, str(settings.home), w, start_at))
               for w in (1, 2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    with engine.connect() as conn:
        live_people = conn.execute(
            select(func.count(identities.c.profile_id.distinct()))
            .join(profiles, profiles.c.id == identities.c.profile_id)
            .where(identities.c.type == "user_id", identities.c.value.like("user-%"), profiles.c.merged_into.is_(None))
        ).scalar()
        per_person = conn.execute(
            select(func.count(events.c.profile_id.distinct())).where(events.c.message_id != "seed")
        ).scalar()
        stored = conn.execute(select(func.count()).select_from(events)).scalar()
    assert stored == 1 + PEOPLE * 4
    assert live_people == PEOPLE
    assert per_person == PEOPLE, "each person's four events, from two workers and two devices, share one profile"


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_worker_that_waited_for_a_new_identifier_sees_it_stored(engine) -> None:  # type: ignore[no-untyped-def]
    """The second of two workers on the same new person waits for the first (an advisory lock on the
    identifier), then reads the graph again: it joins the profile the first stored, not a copy of it."""
    rules = IngestConfig.from_settings(Settings()).identity
    person = identifiers_of({"type": "identify", "userId": "racer"}, rules)
    at = datetime.now(UTC)
    context = Context(at=at, received_at=at, message_id="m1", source_id=None, call="identify")  # type: ignore[arg-type]
    seen: list[int | None] = []
    with engine.begin() as first:
        graph = IdentityBatch(first, rules)
        graph.load([person])
        created = graph.resolve_person(person, context)
        graph.flush(at)

        def second() -> None:
            with engine.begin() as conn:
                waiting = IdentityBatch(conn, rules)
                waiting.load([person])  # blocks on the first's advisory lock until it commits
                owner = waiting.owners.get((USERS, person.person[0]))
                seen.append(owner.id if owner is not None else None)

        racer = threading.Thread(target=second)
        racer.start()
        time.sleep(0.5)
        assert not seen, "the second worker waits for the first"
    racer.join(10)
    assert created is not None and seen == [created.id]
