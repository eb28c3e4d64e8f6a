"""The ``cdp`` command line, run as a user runs it, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
import pytest
from sqlalchemy import select

from cdp.auth.users import sign_in
from cdp.config import Settings
from cdp.setup import prepare_store
from cdp.store.tables import events


def cdp(settings: Settings, *args: str, input: str | None = None, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDP_HOME": str(settings.home), "COLUMNS": str(columns)}
    env.pop("CDP_DATABASE_URL", None)
    if settings.database_url:
        env["CDP_DATABASE_URL"] = settings.database_url
    return subprocess.run([sys.executable, "-m", "cdp", *args], env=env, capture_output=True, text=True, timeout=120,
                          input=input)


def stored(settings: Settings):  # type: ignore[no-untyped-def]
    engine = prepare_store(settings, pool=False)
    with engine.connect() as conn:
        rows = conn.execute(select(events).order_by(events.c.id)).all()
    engine.dispose()
    return rows


def assert_user_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_init_prints_credentials_once(settings: Settings) -> None:
    first = cdp(settings, "init")
    assert first.returncode == 0, first.stderr
    assert "write key" in first.stdout and "admin token" in first.stdout
    again = cdp(settings, "init")
    assert again.returncode == 0 and "already initialised" in again.stdout


def test_sources_and_tokens(settings: Settings) -> None:
    created = cdp(settings, "sources", "create", "ios-app")
    assert created.returncode == 0 and len(created.stdout.strip().splitlines()[-1]) >= 24
    assert "ios-app" in cdp(settings, "sources", "list").stdout
    assert_user_error(cdp(settings, "sources", "create", "ios-app"), "already exists")
    token = cdp(settings, "tokens", "create", "--scope", "recommendations:read", "--scope", "profiles:read")
    assert token.returncode == 0 and token.stdout.strip().splitlines()[-1].startswith("cdp_")
    assert_user_error(cdp(settings, "tokens", "create", "--scope", "superuser"), "unknown scope superuser")


def test_import_json_lines_validates_dedups_and_quarantines(settings: Settings, tmp_path: Path) -> None:
    assert cdp(settings, "init").returncode == 0
    lines = [orjson.dumps({"type": "track", "userId": f"u{i}", "event": "Order Completed", "messageId": f"m{i}",
                           "properties": {"revenue": i}, "timestamp": "2025-06-01T10:00:00Z"}) for i in range(120)]
    lines += [b'{"type": "track", "userId": "u1", "messageId": "no-event"}', b"{oops", b""]
    lines.append(lines[0])  # a duplicate delivery
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = cdp(settings, "import", str(path), "--backfill")
    assert result.returncode == 0, result.stderr
    assert "121 accepted" in result.stdout and "2 quarantined" in result.stdout
    assert len(stored(settings)) == 120
    assert cdp(settings, "import", str(path)).returncode == 0  # re-running an import is harmless
    assert len(stored(settings)) == 120

    listing = cdp(settings, "quarantine", "list")
    assert "missing_event" in listing.stdout and "invalid_message" in listing.stdout
    replayed = cdp(settings, "quarantine", "replay")
    assert "replayed 0" in replayed.stdout and "still invalid 4" in replayed.stdout


def test_import_csv_with_a_column_mapping(settings: Settings, tmp_path: Path) -> None:
    assert cdp(settings, "init").returncode == 0
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,customer,created,amount,sku,note\n"
        "o1,c1,2025-01-02T03:04:05Z,19.90,A-1,\n"
        "o2,c2,2025-01-03T00:00:00+01:00,5,B-2,gift\n"
    )
    result = cdp(settings, "import", str(path), "--event", "Order Completed", "--map", "messageId=order_id",
                 "--map", "userId=customer", "--map", "timestamp=created", "--map", "properties.revenue=amount")
    assert result.returncode == 0, result.stderr
    first, second = stored(settings)
    assert (first.message_id, first.user_id, first.event) == ("o1", "c1", "Order Completed")
    assert first.payload["properties"] == {"revenue": 19.9, "sku": "A-1"}
    assert second.payload["properties"] == {"revenue": 5, "sku": "B-2", "note": "gift"}
    assert second.timestamp.isoformat() == "2025-01-02T23:00:00+00:00"


def test_import_csv_keeps_ids_as_text_and_identical_rows_apart(settings: Settings, tmp_path: Path) -> None:
    """A transaction log without order ids (CDNOW's): customer "00017" stays "00017", two identical
    orders stay two, and importing the file again, even re-sorted, adds nothing."""
    assert cdp(settings, "init").returncode == 0
    rows = ["00017,2025-01-02,12.00,02134,nan", "00017,2025-01-02,12.00,02134,nan", "42,2025-01-03, 1e2 ,10001,1e400"]
    path = tmp_path / "log.csv"
    path.write_text("customer,day,amount,zip,note\n" + "\n".join(rows) + "\n")
    args = ("import", str(path), "--backfill", "--event", "Order Completed", "--map", "userId=customer",
            "--map", "timestamp=day", "--map", "properties.revenue=amount")
    assert cdp(settings, *args).returncode == 0
    first, second, third = stored(settings)
    assert first.user_id == second.user_id == "00017" and third.user_id == "42"
    assert first.message_id != second.message_id
    assert first.payload["properties"] == {"revenue": 12.0, "zip": "02134", "note": "nan"}
    assert third.payload["properties"] == {"revenue": 100.0, "zip": 10001, "note": "1e400"}
    assert cdp(settings, *args).returncode == 0
    path.write_text("customer,day,amount,zip,note\n" + "\n".join(reversed(rows)) + "\n")  # a re-export
    assert cdp(settings, *args).returncode == 0
    assert len(stored(settings)) == 3


def test_import_parquet_identify_rows(settings: Settings, tmp_path: Path) -> None:
    assert cdp(settings, "init").returncode == 0
    path = tmp_path / "people.parquet"
    pd.DataFrame({
        "userId": ["u1", "u2", None], "email": ["a@x.io", "b@x.io", "c@x.io"], "age": [31, 45, 50],
        # Integer ids with a gap: pandas writes them as floats.
        "anonymousId": [None, None, 12345.0],
        "timestamp": pd.to_datetime(["2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"]),
    }).to_parquet(path)
    result = cdp(settings, "import", str(path), "--type", "identify")
    assert result.returncode == 0, result.stderr
    first, _, third = stored(settings)
    assert first.type == "identify" and first.payload["traits"] == {"email": "a@x.io", "age": 31}
    assert "anonymousId" not in first.payload and third.anonymous_id == "12345" and third.user_id is None


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("import", "missing.jsonl"), "no such file"),
        (("import", "{data}", "--source", "nope"), "no source named 'nope'"),
        (("import", "{data}", "--map", "userId"), "FIELD=COLUMN"),
        (("import", "{data}", "--format", "xml"), "unknown format"),
    ],
)
def test_import_mistakes_are_one_line_and_exit_2(settings: Settings, tmp_path: Path, args, text) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data.jsonl"
    data.write_text('{"type": "track", "userId": "u", "event": "E"}\n')
    assert cdp(settings, "init").returncode == 0
    assert_user_error(cdp(settings, *[a.replace("{data}", str(data)) for a in args]), text)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_unreachable_or_bad_store_url_is_a_clear_error(settings: Settings) -> None:
    bad = settings.model_copy(update={"database_url": "mysql://nowhere/x"})
    assert_user_error(cdp(bad, "init"), "unsupported store")
    down = settings.model_copy(update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/x"})
    assert_user_error(cdp(down, "init"), "cannot use the store")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_demo_sends_simulated_events_through_the_http_api(settings: Settings) -> None:
    result = cdp(settings, "demo", "--profiles", "60", "--days", "14")
    assert result.returncode == 0, result.stderr
    rows = stored(settings)
    assert len(rows) > 500
    assert {"identify", "track", "page"} <= {r.type for r in rows}
    assert f"{len(rows):,}" in result.stdout  # what it reports is what landed
    assert "audience churn_risk:" in result.stdout, "it ends with the churn audience and its journey"
    assert all(r.received_at >= r.timestamp for r in rows if r.type == "track")
    # A marketer for the console, whose printed password signs in.
    password = result.stdout.split("with password ", 1)[1].split()[0]
    engine = prepare_store(settings, pool=False)
    with engine.begin() as conn:
        session, _ = sign_in(conn, email="marketer@demo.example", password=password, now=datetime.now(UTC),
                             lifetime=timedelta(hours=1))
    engine.dispose()
    assert session.user.role == "marketer" and "http://127.0.0.1:8080/ui" in result.stdout


@pytest.mark.parametrize("backend", ["sqlite"])
def test_users_create_and_list(settings: Settings) -> None:
    made = cdp(settings, "users", "create", "Ann@Shop.Example", "--role", "analyst", "--password-stdin",
               input="a long password\n")
    assert made.returncode == 0, made.stderr
    assert "ann@shop.example (analyst)" in made.stdout
    for email, role, password, text in (("b@x.io", "boss", "a long password", "unknown role 'boss'"),
                                        ("b@x.io", "admin", "short", "at least 10 characters"),
                                        ("ann@shop.example", "admin", "a long password", "already exists")):
        assert_user_error(cdp(settings, "users", "create", email, "--role", role, "--password-stdin",
                              input=password + "\n"), text)
    assert "ann@shop.example" in cdp(settings, "users", "list").stdout


def test_profiles_show_and_split(settings: Settings, tmp_path: Path) -> None:
    assert cdp(settings, "init").returncode == 0
    lines = [
        {"type": "identify", "userId": "ann", "anonymousId": "app", "traits": {"plan": "pro"}, "messageId": "1",
         "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "track", "anonymousId": "web", "event": "Browsed", "messageId": "2", "timestamp": "2026-01-01T01:00:00Z"},
        {"type": "identify", "userId": "ann", "anonymousId": "web", "messageId": "3", "timestamp": "2026-01-01T02:00:00Z"},
    ]
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines))
    assert cdp(settings, "import", str(path)).returncode == 0
    shown = cdp(settings, "profiles", "show", "user_id:ann")
    assert shown.returncode == 0, shown.stderr
    assert "plan" in shown.stdout and "web" in shown.stdout and "merged" in shown.stdout
    merge_id = next(line.split("│")[1].strip() for line in shown.stdout.splitlines() if "│ merged" in line)
    split = cdp(settings, "profiles", "split", merge_id)
    assert split.returncode == 0, split.stderr
    assert "Browsed" not in {r.event for r in stored(settings) if r.user_id == "ann"}
    assert_user_error(cdp(settings, "profiles", "split", merge_id), "already split")
    assert_user_error(cdp(settings, "profiles", "show", "user_id:nobody"), "Profile was not found")
