"""The ceiling: the least a server on our stack must do to durably store a batch.

Same stack as ``cdp serve`` (FastAPI + orjson under uvicorn with uvloop / httptools, the store
engine from ``cdp.store.db.create_store_engine`` so pragmas, pool, SQLite's checkpoint thread and
write-lock polling match, writes in a worker thread as ours does), but no auth, no validation, no per-message rows beyond (messageId, payload):
read the body, one bulk ``INSERT ... ON CONFLICT DO NOTHING``, commit, 200.

Run (the bench does this; the table must exist, see ``create_ceiling_table``)::

    CDP_DATABASE_URL=sqlite:////tmp/c.sqlite python -m uvicorn bench.ceiling:create_app --factory \
        --workers 2 --loop uvloop --http httptools
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, Request, Response
from sqlalchemy import Column, Engine, MetaData, String, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite

from cdp.config import Settings
from cdp.store.db import create_store_engine
from cdp.store.tables import BigId
from cdp.store.types import JSONDocument

OK = b'{"success":true}'
# At most this many requests write at once (a thread each), as a plain FastAPI server would.
STORE_CONCURRENCY = 8

metadata = MetaData()
ceiling_events = Table(
    "ceiling_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(100), nullable=False),
    Column("payload", JSONDocument, nullable=False),  # JSONB on PostgreSQL, as events.payload
    UniqueConstraint("message_id", name="uq_ceiling_events_message_id"),
)


def create_ceiling_table(engine: Engine) -> None:
    metadata.create_all(engine)


def create_app() -> FastAPI:
    # The product's settings object reads CDP_DATABASE_URL / CDP_HOME / CDP_SQLITE_* as ours does.
    settings = Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_store_engine(settings)
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        app.state.engine = engine
        app.state.insert = dialect.insert(ceiling_events).on_conflict_do_nothing(index_elements=["message_id"])
        app.state.limiter = CapacityLimiter(STORE_CONCURRENCY)
        yield
        engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/batch")
    async def batch(request: Request) -> Response:
        messages = orjson.loads(await request.body())["batch"]
        rows = [{"message_id": message["messageId"], "payload": message} for message in messages]

        def store() -> None:
            with request.app.state.engine.begin() as conn:
                conn.execute(request.app.state.insert, rows)

        await to_thread.run_sync(store, limiter=request.app.state.limiter)
        return Response(OK, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
