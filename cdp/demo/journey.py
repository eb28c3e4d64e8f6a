"""The end of the demo: a predicted-churn audience and a journey that sends its members a win-back
offer by webhook when they view a product, through a live server, with a holdout."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from cdp.demo.receiver import Received, WebhookReceiver
from cdp.errors import CdpError

DESTINATION = "demo-winback"
AUDIENCE = {"key": "churn_risk", "name": "Likely to churn (top 20%)",
            "condition": {"type": "prediction", "prediction": "churn", "top_percent": 20}}
TRIGGER = "Product Viewed"


def journey(destination_id: int) -> dict[str, Any]:
    return {
        "key": "churn_winback", "name": "Win back likely churners",
        "entry": {"event": TRIGGER, "audience": AUDIENCE["key"]}, "reentry_key": "product_id",
        "holdout": 0.2, "goal": {"event": "Order Completed", "within": {"days": 7}},
        "steps": [{"id": "pause", "type": "delay", "duration": {"seconds": 1}},
                  {"id": "offer", "type": "send", "destination": destination_id, "event": "Win-back Offer",
                   "traits": ["churn_percentile"]}],
    }


@dataclass(frozen=True)
class JourneyDemo:
    audience_size: int
    triggered: int
    report: dict[str, Any]
    deliveries: list[Received]


def run_journey_demo(url: str, *, admin_token: str, write_key: str, receiver: WebhookReceiver,
                     pick_members: Any, timeout_s: float = 15) -> JourneyDemo:
    """Define destination, audience and journey over the API; have a few members view a product;
    wait until their journeys are done and the receiver has every send."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60) as api:
        for existing in _ok(api.get("/v1/destinations"))["data"]:
            if existing["name"] == DESTINATION:  # an earlier demo's, pointing at its receiver
                _ok(api.delete(f"/v1/destinations/{existing['id']}"))
        destination = _ok(api.post("/v1/destinations", json={"type": "webhook", "name": DESTINATION,
                                                              "url": receiver.url}))["data"]
        size = _ok(api.post("/v1/audiences", json=AUDIENCE))["data"]["size"]
        if api.get("/v1/journeys/churn_winback").is_success:  # an earlier demo's, with its instances
            _ok(api.delete("/v1/journeys/churn_winback"))
        _ok(api.post("/v1/journeys", json=journey(destination["id"])))
        users: Sequence[str] = pick_members(AUDIENCE["key"])
        batch = [{"type": "track", "userId": user, "event": TRIGGER, "messageId": f"demo-{uuid.uuid4().hex}",
                  "properties": {"product_id": f"demo-{n}"}} for n, user in enumerate(users)]
        if batch:
            _ok(httpx.post(f"{url}/v1/batch", json={"batch": batch}, auth=(write_key, ""), timeout=60))
        deadline = time.monotonic() + timeout_s
        while True:
            report = _ok(api.get("/v1/journeys/churn_winback/report"))["data"]
            active = _ok(api.get("/v1/journeys/churn_winback"))["data"]["active"]
            entered = report["treated"]["entries"] + report["holdout"]["entries"]
            if (entered == len(batch) and active == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        receiver.wait_for(report["treated"]["sends"], timeout_s=max(deadline - time.monotonic(), 1))
    return JourneyDemo(size, len(batch), report, list(receiver.received))


def _ok(response: httpx.Response) -> Any:
    if not response.is_success:
        raise CdpError(f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:200]}")
    return response.json()
