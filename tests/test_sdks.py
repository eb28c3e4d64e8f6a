"""The official SDKs, unchanged but for the host, land their events in a live ``cdp serve``."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from cdp.store.tables import events
from tests.conftest import LiveServer


def landed(server: LiveServer, user_id: str):  # type: ignore[no-untyped-def]
    engine = server.engine()
    with engine.connect() as conn:
        rows = conn.execute(select(events).where(events.c.user_id == user_id).order_by(events.c.id)).all()
    engine.dispose()
    return rows


def drive(client, user_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The calls an app makes; returns the errors the SDK reported."""
    errors: list[str] = []
    client.on_error = lambda error, _batch: errors.append(repr(error))
    client.identify(user_id, {"email": f"{user_id}@example.com", "plan": "pro"}, anonymous_id="anon-1")
    for n in range(250):  # three requests of at most 100
        client.track(user_id, "Product Viewed", {"product_id": f"p{n}", "price": 9.5})
    client.page(user_id, "Docs", "Install", {"path": "/docs"})
    client.screen(user_id, "App", "Cart")
    client.group(user_id, "acme", {"name": "Acme"})
    client.alias("anon-1", user_id)
    client.flush()
    client.join()
    return errors


@pytest.mark.parametrize("gzip", [False, True])
def test_segment_analytics_python(live_server: LiveServer, gzip: bool) -> None:
    from segment.analytics import Client

    user_id = f"seg-{gzip}-{live_server.url[-5:]}"
    client = Client(write_key=live_server.write_key, host=live_server.url, gzip=gzip, max_retries=1)
    assert drive(client, user_id) == []
    rows = landed(live_server, user_id)
    assert Counter(r.type for r in rows) == {"track": 250, "identify": 1, "page": 1, "screen": 1, "group": 1, "alias": 1}
    assert len({r.message_id for r in rows}) == 255
    identify = next(r for r in rows if r.type == "identify")
    assert identify.payload["traits"]["plan"] == "pro"
    assert identify.payload["context"]["library"]["name"] == "analytics-python"
    assert identify.anonymous_id == "anon-1"
    assert all(r.sent_at is not None and r.timestamp <= r.received_at for r in rows)


def test_rudder_sdk_python_gzip_and_context_traits(live_server: LiveServer) -> None:
    from rudderstack.analytics import Client

    user_id = f"rudder-{live_server.url[-5:]}"
    client = Client(write_key=live_server.write_key, host=live_server.url, max_retries=1)  # gzip by default
    assert drive(client, user_id) == []
    rows = landed(live_server, user_id)
    assert len(rows) == 255
    identify = next(r for r in rows if r.type == "identify")
    # This SDK sends identify traits only under context.traits; they are kept for the profile.
    assert identify.payload["context"]["traits"]["plan"] == "pro"
