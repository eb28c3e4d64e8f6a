"""What a server process sets up for itself, beside its routes."""

from __future__ import annotations

import asyncio

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from cdp.config import Settings
from serving.app import create_app


def blas_threads() -> set[int]:
    return {library["num_threads"] for library in threadpool_info() if library["user_api"] == "blas"}


async def blas_threads_while_serving(settings: Settings) -> set[int]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):  # in this thread, as uvicorn starts an app in its main thread
        return blas_threads()


@pytest.mark.parametrize("backend", ["sqlite"])  # the process, not the store
def test_a_server_keeps_blas_to_one_thread_while_it_serves(settings: Settings) -> None:
    """Its workers and their concurrent requests are the parallelism: BLAS threads of their own spun
    against them (a session recommendation took a millisecond of CPU more, bench.recs)."""
    with threadpool_limits(limits=2, user_api="blas"):  # as OpenBLAS starts on two cores, whatever runs the test
        assert blas_threads() == {2}
        assert asyncio.run(blas_threads_while_serving(settings)) == {1}
        assert blas_threads() == {2}
