"""``cdp plans``, run as a user runs it, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from cdp.config import Settings
from tests.test_cli import assert_user_error, cdp, stored
from tests.test_governance import BATCH, RULES


def test_plans_block_an_import_and_a_plan_update_lets_the_replay_through(settings: Settings, tmp_path: Path) -> None:
    assert cdp(settings, "init").returncode == 0
    rules = tmp_path / "rules.json"
    rules.write_bytes(orjson.dumps(RULES))
    created = cdp(settings, "plans", "create", "shop", "--file", str(rules))
    assert created.returncode == 0 and "'shop' v1 with 1 planned events" in created.stdout, created.stderr
    assigned = cdp(settings, "plans", "assign", "shop", "--source", "default", "--mode", "block")
    assert "enforces 'shop' in block mode" in assigned.stdout, assigned.stderr

    lines = tmp_path / "events.jsonl"
    lines.write_bytes(b"\n".join(orjson.dumps(m) for m in BATCH))
    imported = cdp(settings, "import", str(lines))
    assert "2 accepted" in imported.stdout and "4 quarantined" in imported.stdout, imported.stderr
    assert "plan_violation 4" in cdp(settings, "quarantine", "list").stdout
    counted = cdp(settings, "plans", "violations", "--source", "default").stdout
    assert "Required-Missing" in counted and "Unplanned-Event" in counted and "Cart Abandoned" in counted

    loosened = copy.deepcopy(RULES)
    loosened["allow_unplanned"] = True
    rules.write_bytes(orjson.dumps(loosened))
    assert "is at v2" in cdp(settings, "plans", "update", "shop", "--file", str(rules)).stdout
    replayed = cdp(settings, "quarantine", "replay")
    assert "replayed 1; still invalid 3" in replayed.stdout, replayed.stderr
    assert {row.message_id for row in stored(settings)} == {"good", "page", "unplanned"}

    shown = cdp(settings, "plans", "show", "shop")
    assert "v2 of 2" in shown.stdout and "default (block)" in shown.stdout and "Order Completed" in shown.stdout
    assert "v1 of 2" in cdp(settings, "plans", "show", "shop", "--version", "1").stdout

    printed = cdp(settings, "plans", "infer", "--source", "default")
    assert orjson.loads(printed.stdout)["events"].keys() == {"Order Completed", "Cart Abandoned"}
    proposal = tmp_path / "proposal.json"
    written = cdp(settings, "plans", "infer", "--out", str(proposal))
    assert "2 events planned from 2 messages" in written.stdout, written.stderr
    assert cdp(settings, "plans", "create", "proposed", "--file", str(proposal)).returncode == 0
    assert "enforces no tracking plan" in cdp(settings, "plans", "unassign", "--source", "default").stdout


@pytest.mark.parametrize("backend", ["sqlite"])  # the checks are the store's alike; each call costs a second
def test_plans_mistakes_are_one_line_and_exit_2(settings: Settings, tmp_path: Path) -> None:
    assert cdp(settings, "init").returncode == 0
    good, bad_json, bad_schema = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "schema.json"
    good.write_bytes(orjson.dumps(RULES))
    bad_json.write_text('{"events": ')
    bad_schema.write_bytes(orjson.dumps({"events": {"Signed Up": {"type": "strng"}}}))
    assert cdp(settings, "plans", "create", "shop", "--file", str(good)).returncode == 0
    for args, text in [
        (("create", "x", "--file", str(tmp_path / "missing.json")), "no such file"),
        (("create", "x", "--file", str(bad_json)), "is not JSON"),
        (("create", "x", "--file", str(bad_schema)), "rules.events.Signed Up is not a valid JSON Schema at type"),
        (("create", "shop", "--file", str(good)), "already exists"),
        (("update", "nope", "--file", str(good)), "no tracking plan named 'nope'"),
        (("assign", "shop", "--source", "default", "--mode", "drop"), "unknown mode 'drop'"),
        (("assign", "shop", "--source", "ios", "--mode", "flag"), "no source named 'ios'"),
        (("violations", "--source", "ios"), "no source named 'ios'"),
    ]:
        assert_user_error(cdp(settings, "plans", *args), text)
