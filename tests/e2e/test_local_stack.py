"""End to end through the local stack: moto (tables, bucket, functions and the training state
machine from template.yaml; real ASL execution; Lambda invokes run the real handlers) + the local
API Gateway, driven by real HTTP requests to 127.0.0.1 — the same code path as ``make local``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "users" / "d1_student"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The local stack on free ports, dev auth, no LLM; the environment is restored afterwards."""
    from support.local_stack import running_stack

    with running_stack(tmp_path_factory.mktemp("calroute-local")) as st:
        yield st


@pytest.fixture(scope="module")
def demo(stack):
    """d1_student seeded through the API: of each calendar, the most recent 30% held back, and of the
    rest only the 60 most recent events uploaded (so training takes seconds, not half a minute)."""
    from calroute_dev.local import demo as demo_mod

    data = demo_mod.load_demo(DEMO, max_seen_per_calendar=60)
    n = demo_mod.seed(stack.client(data.user), data, progress=lambda line: None)
    assert n == data.n_seen
    return data


@pytest.fixture(scope="module")
def trained(stack, demo):
    """POST /train → 202; the state machine runs (moto's ASL interpreter) until the model is active."""
    client = stack.client(demo.user)
    started = client.train(demo.user)
    arn = started["execution_arn"]
    deadline = time.monotonic() + 300
    while True:
        info = client.local_run(arn)
        if info["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # polling a real state machine execution; not timing anything
    assert info["status"] == "SUCCEEDED", info
    return info


def test_unknown_route_is_a_404_json(stack):
    r = stack.client("someone").request("GET", "/v1/definitely/not/a/route")
    assert r.status == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "not_found"


def test_dev_auth_header_must_match_the_path_user(stack):
    c = stack.client("alice")
    wrong = c.request("GET", c.user_path("alice", "model"), user="mallory")
    assert wrong.status == 403 and wrong.json()["error"] == "forbidden"
    right = c.request("GET", c.user_path("alice", "model"))  # the client sends x-calroute-user: alice
    assert right.status == 200, right.text
    from calroute_dev.local.client import Client

    anonymous = Client(stack.url, auth="none").request("GET", c.user_path("alice", "model"))
    assert anonymous.status == 403


def test_openapi_document_is_served(stack):
    doc = stack.client().call("GET", "/v1/openapi.json")
    assert doc["openapi"].startswith("3.")
    assert any("classify" in p for p in doc["paths"])


def test_import_ics_over_the_api_is_idempotent(stack):
    c = stack.client("e2e_importer")
    data = (DEMO / "swiss_hockey_men_2025_26.ics").read_bytes()
    first = c.import_ics("e2e_importer", "hockey", data)
    again = c.import_ics("e2e_importer", "hockey", data)
    assert first["events"] == again["events"] == 32
    assert first["new"] == 32 and again["new"] == 0  # the same ids: upserted, not duplicated
    from calroute.adapters.dynamo.events import DynamoEventStore
    from calroute.config import settings

    assert DynamoEventStore(settings().events_table).count_events("e2e_importer") == 32
    bad = c.request("POST", c.user_path("e2e_importer", "calendars", "hockey", "import"), body=b"not a calendar",
                    content_type="text/calendar")
    assert 400 <= bad.status < 500 and {"error", "message"} <= set(bad.json())


def test_train_then_classify_unseen_events(stack, demo, trained):
    from calroute_dev.local.demo import classify_unseen, summarize

    c = stack.client(demo.user)
    model = c.model(demo.user)
    assert model  # GET /model answers with the active model
    assert stack.active_model(demo.user) is not None
    rows = classify_unseen(c, demo)
    assert len(rows) == demo.n_unseen
    s = summarize(rows)
    assert s["methods"].get("ml", 0) >= 0.5 * len(rows), s
    assert s["accuracy_ml"] >= 0.9, s
    # no LLM is configured: the unsure ones come back ml_low_confidence, never llm
    assert set(s["methods"]) <= {"ml", "ml_low_confidence"}, s
    one = c.classify(demo.user, {"summary": rows[0]["summary"], "start": "2025-11-10T09:00:00"})
    assert one["method"] in ("ml", "ml_low_confidence") and one["calendar_id"]


def test_parse_route_and_calroute_add_through_the_local_stack(stack, demo, trained, capsys):
    """Issue 13: the local gateway picks ParseFunction's route up from template.yaml; `calroute add`
    parses a sentence and the draft is routed by the user's trained model (dev auth enforced)."""
    from calroute_dev import cli

    c = stack.client(demo.user)
    summary = next(iter(demo.seen.values()))[0].summary
    res = c.parse(demo.user, f"Call it {summary} tomorrow at 4:30 in the afternoon", now="2025-11-10T09:00:00",
                  timezone="Europe/Zurich")
    assert res["draft"]["start"] == "2025-11-11T16:30:00+01:00", res
    assert res["calendar"]["model_version"] and res["calendar"]["calendar_id"] in demo.seen
    assert res["llm"]["status"] in ("not_configured", "not_needed")  # no LLM in the local stack
    wrong = c.request("POST", c.user_path(demo.user, "events", "parse"), json_body={"text": "x"}, user="mallory")
    assert wrong.status == 403
    assert cli.main(["add", "--api", stack.url, "--user", demo.user, "--now", "2025-11-10T09:00:00", "--json",
                     "Lunch with Sam tomorrow 1pm at Luna"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["draft"]["summary"] == "Lunch with Sam" and out["slots"]["time"]["value"] == "13:00"
    assert out["calendar"]["model_version"] == res["calendar"]["model_version"]
    assert cli.main(["add", "--api", stack.url, "--user", demo.user, "Lunch with Sam tomorrow 1pm at Luna"]) == 0
    text = capsys.readouterr().out
    assert "Lunch with Sam" in text and "13:00" in text and "calendar" in text


def test_correction_and_stats(stack, demo, trained):
    c = stack.client(demo.user)
    cal = next(iter(demo.seen))
    ev = demo.seen[cal][0]
    other = next(k for k in demo.seen if k != cal)
    res = c.classify(demo.user, {k: v for k, v in ev.to_flat().items() if k != "calendar_id"})
    assert res["calendar_id"]
    corr = c.correct(demo.user, ev.event_id, other)
    assert corr
    from calroute.adapters.dynamo.events import DynamoEventStore
    from calroute.config import settings

    assert DynamoEventStore(settings().events_table).get_event(demo.user, ev.event_id).calendar_id == other
    missing = c.request("POST", c.user_path(demo.user, "events", "no-such-event", "correction"),
                        json_body={"calendar_id": other})
    assert missing.status == 404 and missing.json()["error"]
    stats = c.stats(demo.user)
    assert isinstance(stats, dict) and stats


def test_remember_setting_through_the_local_stack_and_the_cli(stack, demo, trained, capsys):
    """``calroute settings --remember on``: the ingest route stores it, predict (another function of the
    local gateway) applies it to a classify that does not say remember; a wrong user is refused."""
    from calroute_dev import cli

    user = "e2e_settings"
    c = stack.client(user)
    assert c.settings(user) == {"remember": False, "updated_at": None}
    assert cli.main(["settings", "--api", stack.url, "--user", user, "--remember", "on"]) == 0
    assert "remember   on" in capsys.readouterr().out
    assert c.settings(user)["remember"] is True
    wrong = c.request("PUT", c.user_path(user, "settings"), json_body={"remember": False}, user="mallory")
    assert wrong.status == 403 and c.settings(user)["remember"] is True
    for cal in ("work", "home"):  # two calendars, no model: the answer comes from the LLM path or none
        c.call("PUT", c.user_path(user, "calendars", cal), json_body={"name": cal}, user=user)
    res = c.classify(user, {"event_id": "s-1", "summary": "Standup", "start": "2026-03-03T10:00:00Z"})
    assert "remembered" in res  # the setting made this request a remembering one
    assert cli.main(["settings", "--api", stack.url, "--user", user, "--remember", "off", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["remember"] is False


def test_fire_schedule_runs_the_state_machine(stack, demo, trained):
    c = stack.client()
    started = c.fire_schedule()
    assert started["input"]["trigger"] == "schedule"
    deadline = time.monotonic() + 300
    while (info := c.local_run(started["execution_arn"]))["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert info["status"] == "SUCCEEDED", info


@pytest.mark.slow
def test_cli_smoke_exits_0(tmp_path):
    """`calroute local --smoke` (what CI runs) in a separate process on free ports."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
    exe = Path(sys.executable).with_name("calroute")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "calroute_dev.cli"]
    proc = subprocess.run(cmd + ["local", "--smoke", "--port", "0", "--aws-port", "0",
                                 "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "smoke: OK" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    # clean output: no raw EMF metric documents, no emulator notes, a demo that shows a deferral
    assert '"_aws"' not in proc.stdout + proc.stderr
    assert "ToleratedFailurePercentage" not in proc.stdout + proc.stderr
    assert "No application metrics" not in proc.stdout + proc.stderr
    assert "novel_event" in proc.stdout and "what the LLM would be asked" in proc.stdout
    # nothing but the stack's own lines: no JSON document (EMF or log record) from any path, the
    # batch one included (TrainUser/Validate/Promote through Step Functions), and no Python warning
    stray = [line for line in (proc.stdout + proc.stderr).splitlines() if line.lstrip().startswith('{"')]
    assert not stray, stray[:5]
    warned = [line for line in proc.stderr.splitlines() if "Warning" in line or "warn(" in line]
    assert not warned, warned[:5]
    assert (tmp_path / "data" / "snapshot" / "manifest.json").is_file()  # data saved on the way out


# ----------------------------------------------------------------------------- the data lifecycle (issue 17)
# Last in this module: they delete a calendar of the demo user, export it, and erase it.


def _wait_for(client, arn: str) -> dict:
    deadline = time.monotonic() + 300
    while True:
        info = client.local_run(arn)
        if info["status"] != "RUNNING" or time.monotonic() > deadline:
            return info
        time.sleep(0.2)  # polling a real state machine execution; not timing anything


def _everything_of(stack, user: str) -> list:
    import json as _json

    ddb, s3 = stack.emulator.client("dynamodb"), stack.emulator.client("s3")
    res = stack.emulator.resolver
    found = []
    for logical in res.of_type("AWS::DynamoDB::Table"):
        for page in ddb.get_paginator("scan").paginate(TableName=res.physical_name(logical)):
            found += [(logical, i) for i in page["Items"] if user in _json.dumps(i)]
    bucket = res.physical_name("ModelBucket")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or []):
            body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read() if "Size" in v else b""
            if user in v["Key"] or user.encode() in body:
                found.append(("bucket", v["Key"]))
    return found


def test_data_lifecycle_over_http(stack, demo, trained, tmp_path):
    import json as _json

    from calroute_dev import cli
    from calroute.services.lifecycle import replay

    c = stack.client(demo.user)
    user = demo.user
    cals = c.call("GET", c.user_path(user, "calendars"))["calendars"]
    assert {x["calendar_id"] for x in cals} == set(demo.seen) and all(x["events"] > 0 for x in cals)
    page = c.call("GET", c.user_path(user, "events") + "?limit=5")
    assert page["count"] == 5 and page["next_cursor"]

    # delete the calendar the model answers most with: no classify answer names it afterwards
    victim = max(demo.unseen, key=lambda k: len(demo.unseen[k]))
    batch = [{k: v for k, v in e.to_flat().items() if k != "calendar_id"} for e in demo.unseen[victim]][:100]
    before = c.classify_batch(user, batch)["results"]
    assert sum(r["calendar_id"] == victim for r in before) > 0
    out = c.call("DELETE", c.user_path(user, "calendars", victim))
    assert out["deleted"] and out["retrain_requested"]
    for r in c.classify_batch(user, batch)["results"]:
        assert r["calendar_id"] != victim and victim not in {a["calendar_id"] for a in r["alternatives"]}
    import re as _re

    # an id that needs no percent-encoding in a path (ICS UIDs often carry '@')
    stored = c.call("GET", c.user_path(user, "events") + "?limit=200")["events"]  # after the calendar went
    plain = next(e["event_id"] for e in stored if _re.fullmatch(r"[A-Za-z0-9_.-]+", e["event_id"]))
    assert c.call("DELETE", c.user_path(user, "events", plain))["deleted"] is True
    r = c.request("DELETE", c.user_path(user, "events", plain))
    assert r.status == 404 and r.json()["error"] == "event_not_found"

    # export (CLI) -> ingest into a new user -> it trains the same calendars
    dump = tmp_path / "export.jsonl"
    assert cli.main(["export", "--user", user, "--out", str(dump), "--aws-port", str(stack.aws_port)]) == 0
    lines = [_json.loads(x) for x in dump.read_text(encoding="utf-8").splitlines()]
    assert {"event", "calendar", "model", "prediction"} <= {x["type"] for x in lines}
    calendars, events = replay(lines)
    clone = "e2e_clone"
    cc = stack.client(clone)
    for cal in calendars:
        cc.put_calendar(clone, cal.calendar_id, cal.name, cal.description)
    for i in range(0, len(events), 500):
        cc.ingest(clone, events[i:i + 500])
    assert _wait_for(cc, cc.train(clone)["execution_arn"])["status"] == "SUCCEEDED"
    assert sorted(cc.model(clone)["labels"]) == sorted(set(demo.seen) - {victim})

    # erase: nothing of the user in any table or object version; again is fine; the clone is untouched
    clone_before = _everything_of(stack, clone)
    out = c.call("DELETE", c.user_path(user))
    assert out["erased"] and out["removed"]["events"] > 0 and out["removed"]["model_objects"] > 0
    assert _everything_of(stack, user) == []
    assert c.call("DELETE", c.user_path(user))["total"] == 0
    assert _everything_of(stack, clone) == clone_before
    assert c.model(user)["status"] == "no_model"
