"""The FastAPI application factory."""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from threadpoolctl import threadpool_limits

import cdp
from cdp.config import Settings, get_settings
from cdp.destinations.deliver import DeliveryConfig, DeliveryWorker
from cdp.events.attribution import AttributionFollower
from cdp.events.ingest import IngestConfig
from cdp.jobs import JobRunner
from cdp.journeys.worker import JourneyWorker
from cdp.privacy.regulations import run_pending
from cdp.setup import prepare_store
from cdp.store.group_commit import GroupCommitter
from serving.deps import token_cache, write_key_cache
from serving.errors import install_error_handlers
from serving.champion import ChampionHolder
from serving.console import pages as console_pages
from serving.console import session as console_session
from serving.kept import Kept
from serving.routes import (
    audiences, computed_traits, destinations, health, jobs, journeys, overview, plans, predictions, profiles,
    quarantine, recommendations, regulations, tracking,
)
from serving.tracked import Tracked


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A server's parallelism is its worker processes and their concurrent requests: BLAS threads
        # of their own (OpenBLAS starts one per core) only spin against them. A recommendation scored
        # for a visitor's session took about a millisecond of CPU more, and at 1,000 requests/s on two
        # cores the p99 went from 37 ms to 14 s (bench.recs).
        blas = threadpool_limits(limits=1, user_api="blas")
        engine = prepare_store(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.write_keys = write_key_cache(engine)
        app.state.tokens = token_cache(engine)
        app.state.ingest_config = IngestConfig.from_settings(settings)
        # Regulations a previous server accepted but did not finish are taken up again.
        resume = threading.Thread(target=run_pending, args=(engine,), daemon=True, name="regulations")
        resume.start()
        app.state.committer = GroupCommitter.for_store(engine)
        app.state.attribution = AttributionFollower(
            app.state.committer, app.state.ingest_config, batch=settings.attribution_batch,
            lag_s=settings.attribution_lag_ms / 1000, idle_s=settings.attribution_idle_ms / 1000,
            share=settings.attribution_share).start()
        app.state.recommender = ChampionHolder(
            engine, settings.resolved_mlflow_tracking_uri, poll_seconds=settings.recs_poll_seconds).start()
        app.state.delivery = DeliveryWorker(engine, DeliveryConfig.from_settings(settings), app.state.committer).start()
        app.state.journeys = JourneyWorker(engine, poll_s=settings.journeys_poll_s, committer=app.state.committer).start()
        app.state.profile_counts = overview.profile_counts_for(engine)
        app.state.audience_counts = Kept()
        app.state.tracked = Tracked(settings.resolved_mlflow_tracking_uri, poll_seconds=settings.tracking_poll_seconds)
        app.state.jobs = JobRunner(engine).start()
        # What the start loaded (pandas, scikit-learn, ... hundreds of thousands of objects) lives as
        # long as the app: out of the collector's full passes, which would otherwise scan all of it
        # every few hundred requests, about a quarter of the Tracking API's CPU per event.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()
        app.state.jobs.stop()
        app.state.journeys.stop()
        app.state.delivery.stop()
        app.state.recommender.stop()
        app.state.attribution.stop()
        app.state.committer.close()
        resume.join(timeout=30)
        engine.dispose()
        blas.restore_original_limits()

    app = FastAPI(
        title="CDP",
        version=cdp.__version__,
        summary="Open, warehouse-native customer data platform: Segment-compatible APIs.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Starlette tries routes in order: the two served at thousands of requests a second come first.
    app.include_router(tracking.router)
    app.include_router(recommendations.router)
    app.include_router(health.router)
    app.include_router(profiles.router)
    app.include_router(regulations.router)
    app.include_router(plans.router)
    app.include_router(computed_traits.router)
    app.include_router(predictions.router)
    app.include_router(audiences.router)
    app.include_router(destinations.router)
    app.include_router(journeys.router)
    app.include_router(journeys.policy_router)
    app.include_router(overview.router)
    app.include_router(quarantine.router)
    app.include_router(jobs.router)
    console_session.install(app)
    app.include_router(console_session.router)
    app.include_router(console_pages.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema plus what it can't infer: the hand-parsed tracking bodies and Basic auth."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(tracking.schema_components())
        components.setdefault("securitySchemes", {})["writeKeyBasic"] = {
            "type": "http",
            "scheme": "basic",
            "description": "The source's write key as user name, empty password (or `writeKey` in the body).",
        }
        app.openapi_schema = schema
    return app.openapi_schema
