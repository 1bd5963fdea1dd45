"""Fast tests of the local stack's parts: the API Gateway v2 event builder and router, the gateway
server around a tiny handler, snapshot persistence, the HTTP client's auth, the CLI."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from calroute_dev.local import gateway as gw
from calroute_dev.local.client import Client, default_auth, region_from_url
from calroute_dev.local.template import Resolver

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- routes & events


def _template(code_dir: str) -> dict:
    return {"Resources": {"EchoFunction": {"Type": "AWS::Serverless::Function", "Properties": {
        "CodeUri": code_dir, "Handler": "app.lambda_handler", "Events": {
            "A": {"Type": "HttpApi", "Properties": {"Path": "/v1/users/{userId}/echo", "Method": "POST"}},
            "B": {"Type": "HttpApi", "Properties": {"Path": "/v1/users/{userId}/events/{eventId}/x", "Method": "GET"}},
            "C": {"Type": "HttpApi", "Properties": {"Path": "/v1/users/special/echo", "Method": "POST"}},
            "D": {"Type": "HttpApi", "Properties": {"Path": "/v1/crash", "Method": "GET"}},
            "S": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)"}},
        }}}}}


def test_routes_come_from_template_http_events_most_specific_first():
    routes = gw.discover_routes(Resolver(_template("/nonexistent")))
    # literal routes are tried before parameterised ones
    assert {r.route_key for r in routes[:2]} == {"GET /v1/crash", "POST /v1/users/special/echo"}
    assert len(routes) == 4  # the Schedule event is not a route
    r, params = next((r, r.match("GET", "/v1/users/al%20ice/events/e-1/x")) for r in routes
                     if r.path.endswith("/x"))
    assert params == {"userId": "al ice", "eventId": "e-1"}
    assert r.match("POST", "/v1/users/a/events/e/x") is None
    assert r.match("GET", "/v1/users/a/b/events/e/x") is None  # a parameter never spans a slash


def test_build_event_is_an_http_api_v2_event():
    route = gw.compile_route("POST", "/v1/users/{userId}/calendars/{calendarId}/import", "IngestFunction")
    params = route.match("POST", "/v1/users/u1/calendars/work/import")
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    ev = gw.build_event("POST", "/v1/users/u1/calendars/work/import?a=1&a=2&b=",
                        [("Content-Type", "text/calendar"), ("X-Calroute-User", "u1"), ("Cookie", "s=1; t=2")],
                        b"BEGIN:VCALENDAR\r\n", route=route, path_params=params, now=now)
    assert ev["version"] == "2.0"
    assert ev["routeKey"] == ev["requestContext"]["routeKey"] == "POST /v1/users/{userId}/calendars/{calendarId}/import"
    assert ev["rawPath"] == "/v1/users/u1/calendars/work/import"
    assert ev["rawQueryString"] == "a=1&a=2&b="
    assert ev["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert ev["pathParameters"] == {"userId": "u1", "calendarId": "work"}
    assert ev["headers"]["x-calroute-user"] == "u1" and "cookie" not in ev["headers"]
    assert ev["cookies"] == ["s=1", "t=2"]
    assert ev["isBase64Encoded"] is True
    assert base64.b64decode(ev["body"]) == b"BEGIN:VCALENDAR\r\n"
    rc = ev["requestContext"]
    assert rc["http"]["method"] == "POST" and rc["http"]["sourceIp"] == "127.0.0.1"
    assert rc["stage"] == "$default" and rc["timeEpoch"] == int(now.timestamp() * 1000)
    assert rc["time"] == "02/Jan/2026:03:04:05 +0000"
    assert "authorizer" not in rc  # dev auth: the handler checks the x-calroute-user header

    js = gw.build_event("POST", "/x", [("content-type", "application/json")], b'{"a": 1}', route=None,
                        path_params=None)
    assert js["body"] == '{"a": 1}' and js["isBase64Encoded"] is False
    assert "queryStringParameters" not in js and "pathParameters" not in js


# ----------------------------------------------------------------------------- the server


@pytest.fixture
def echo_gateway(tmp_path, monkeypatch, fresh_settings):
    fn = tmp_path / "gw_echo_fn"
    fn.mkdir()
    (fn / "app.py").write_text(textwrap.dedent("""
        from calroute.http.auth import authorize_user
        from calroute.http.resolver import UserIdPath, make_handler, make_resolver
        app = make_resolver()

        @app.post("/v1/users/<userId>/echo")
        def echo(userId: UserIdPath) -> dict:
            authorize_user(app, userId)
            ev = app.current_event
            return {"user": userId, "body": ev.decoded_body, "b64": ev.is_base64_encoded,
                    "query": ev.query_string_parameters, "route": ev.raw_event["routeKey"]}

        @app.get("/v1/crash")
        def crash() -> dict:
            raise RuntimeError("boom")

        lambda_handler = make_handler(app)
    """))
    monkeypatch.setenv("AUTH_MODE", "dev")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    fresh_settings.cache_clear()
    lines: list[str] = []
    g = gw.Gateway(Resolver(_template(str(fn))), port=0, access_log=lines.append,
                   admin={("POST", "/local/ping"): lambda body: (202, {"got": body})}).start()
    yield g, lines
    g.stop()
    sys.modules.pop("calroute_fn_gw_echo_fn", None)


def test_gateway_dispatches_to_the_handler_and_back(echo_gateway):
    g, lines = echo_gateway
    c = Client(g.url, auth="dev", user="alice")
    r = c.request("POST", "/v1/users/alice/echo?x=1", json_body={"a": 1})
    assert r.status == 200, r.text
    assert r.json() == {"user": "alice", "body": '{"a": 1}', "b64": False, "query": {"x": "1"},
                        "route": "POST /v1/users/{userId}/echo"}
    r = c.request("POST", "/v1/users/alice/echo", body=b"BEGIN:VCALENDAR", content_type="text/calendar")
    assert r.json()["body"] == "BEGIN:VCALENDAR" and r.json()["b64"] is True
    assert lines and lines[0].startswith("POST /v1/users/alice/echo 200 ") and lines[0].endswith("ms")


def test_gateway_dev_auth_404_500_413_and_admin(echo_gateway, monkeypatch):
    g, _ = echo_gateway
    c = Client(g.url, auth="dev", user="alice")
    r = c.request("POST", "/v1/users/bob/echo", json_body={})
    assert r.status == 403 and r.json()["error"] == "forbidden"
    r = c.request("GET", "/v1/users/alice/nothing")
    assert r.status == 404 and r.json() == {"error": "not_found", "message": "no route for GET /v1/users/alice/nothing"}
    r = c.request("GET", "/v1/crash")
    assert r.status == 500 and r.json()["error"] == "internal_error"
    monkeypatch.setattr(gw, "MAX_BODY_BYTES", 10)
    r = c.request("POST", "/v1/users/alice/echo", body=b"x" * 11, content_type="text/plain")
    assert r.status == 413 and r.json()["error"] == "payload_too_large"
    assert c.call("POST", "/local/ping", json_body={"k": 1}) == {"got": {"k": 1}}


# ----------------------------------------------------------------------------- persistence


def test_snapshot_round_trip_and_replace(aws, tmp_path):
    import boto3

    from calroute_dev.local import persist

    tables = [aws.physical_name("EventsTable"), aws.physical_name("UsersTable")]
    bucket = aws.physical_name("ModelBucket")
    ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    item = {"user_id": {"S": "u"}, "event_id": {"S": "e1"}, "blob": {"B": b"\x00\xff"}, "n": {"N": "1.5"}}
    ddb.put_item(TableName=tables[0], Item=item)
    s3.put_object(Bucket=bucket, Key="models/u/v1.onnx", Body=b"onnx", Metadata={"sha256": "abc"})
    m = persist.dump(tmp_path, tables, [bucket])
    assert m["tables"] == {tables[0]: 1, tables[1]: 0} and m["buckets"] == {bucket: 1}

    ddb.delete_item(TableName=tables[0], Key={"user_id": {"S": "u"}, "event_id": {"S": "e1"}})
    s3.delete_object(Bucket=bucket, Key="models/u/v1.onnx")
    out = persist.restore(tmp_path, tables=tables, buckets=[bucket])
    assert out["tables"][tables[0]] == 1
    assert ddb.get_item(TableName=tables[0], Key={"user_id": {"S": "u"}, "event_id": {"S": "e1"}})["Item"] == item
    got = s3.get_object(Bucket=bucket, Key="models/u/v1.onnx")
    assert got["Body"].read() == b"onnx" and got["Metadata"] == {"sha256": "abc"}

    # a later snapshot replaces the earlier one (a deleted object does not come back)
    s3.delete_object(Bucket=bucket, Key="models/u/v1.onnx")
    persist.dump(tmp_path, tables, [bucket])
    assert persist.restore(tmp_path, buckets=[bucket], tables=[])["buckets"] == {bucket: 0}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".snapshot")]  # no temp folders left


# ----------------------------------------------------------------------------- client


def test_client_signs_sigv4_for_deployed_apis_and_sends_bearer_for_jwt():
    from botocore.credentials import Credentials

    url = "https://abc123.execute-api.eu-west-1.amazonaws.com"
    assert region_from_url(url) == "eu-west-1" and default_auth(url) == "iam"
    assert default_auth("http://127.0.0.1:3000") == "dev"
    c = Client(url, credentials=Credentials("AKIDEXAMPLE", "secret"))
    h = c.headers_for("POST", url + "/v1/users/u/classify", {"content-type": "application/json"}, b"{}")
    assert h["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in h["Authorization"]
    assert "X-Amz-Date" in h
    j = Client(url, auth="jwt", token="tok")
    assert j.headers_for("GET", url, {}, b"")["Authorization"] == "Bearer tok"
    d = Client("http://127.0.0.1:3000", user="u1")
    assert d.headers_for("GET", "http://127.0.0.1:3000/x", {}, b"") == {"x-calroute-user": "u1"}


# ----------------------------------------------------------------------------- CLI


def test_cli_starts_without_heavy_imports():
    code = ("import sys, time; t = time.perf_counter(); from calroute_dev import cli; "
            "p = cli._parser_without_evaluate(); p.parse_args(['status', '--user', 'u']); "
            "print(time.perf_counter() - t); "
            "print(','.join(m for m in ('boto3', 'sklearn', 'onnxruntime', 'numpy', 'aws_lambda_powertools') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    float(out[0])  # how long it takes is bench/coldstart.py's business (no wall-clock limits in tests)
    assert out[1] == ""


def test_cli_table_and_usage_errors(capsys):
    from calroute_dev import cli

    text = cli.table([["a", 1, "50%"], ["bbb", 22, "7%"]], ["name", "n", "share"])
    assert text.splitlines() == ["name   n  share", "----  --  -----", "a      1    50%", "bbb   22     7%"]
    assert cli.main(["classify", "--user", "u", "--summary", "x"]) == 2  # --start missing
    assert "give --event JSON, or --summary and --start" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train"])  # --user or --all is required


def test_holdout_split_keeps_the_most_recent_30_percent():
    from calroute_dev.local.demo import split_holdout
    from calroute.schema import parse_event

    base = datetime(2026, 1, 1, 9, tzinfo=timezone.utc)
    events = [parse_event({"event_id": f"e{i}", "summary": "s", "start": (base + timedelta(days=i)).isoformat(),
                           "calendar_id": "c"}) for i in (5, 1, 9, 3, 7, 0, 2, 4, 6, 8)]
    seen, unseen = split_holdout(events)
    assert [e.event_id for e in unseen] == ["e7", "e8", "e9"]
    assert len(seen) == 7 and max(e.start for e in seen) < min(e.start for e in unseen)


def test_stack_helpers_llm_banner_schedule_input_and_progress_lines():
    from calroute_dev.local import stack
    from calroute_dev.local.template import load_template

    off = stack.local_overrides("dev", environ={})
    assert off["AUTH_MODE"] == "dev" and off["LLM_API_KEY_PARAM"] == ""
    # a clean demo: no EMF documents, no per-answer JSON record lines, unless --verbose
    assert (off["POWERTOOLS_METRICS_DISABLED"], off["PREDICTION_LOG_LINES"]) == ("true", "false")
    loud = stack.local_overrides("dev", environ={}, verbose=True)
    assert (loud["POWERTOOLS_METRICS_DISABLED"], loud["PREDICTION_LOG_LINES"]) == ("false", "true")
    assert stack.llm_banner(off) == stack.LLM_OFF
    on = stack.local_overrides("none", environ={"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"})
    assert stack.llm_banner(on).startswith("LLM fallback: on (http://127.0.0.1:8000/v1")
    assert stack.schedule_input(Resolver(load_template())) == {"trigger": "schedule"}
    plan_exit = {"type": "TaskStateExited", "stateExitedEventDetails": {
        "name": "Plan", "output": json.dumps({"count": 2, "skipped_total": 3})}}
    assert stack.describe_history_event(plan_exit) == "✓ Plan: 2 user(s) to train, 3 not needed"
    summ = {"type": "TaskStateExited", "stateExitedEventDetails": {
        "name": "Summarize", "output": json.dumps({"trained": 1, "skipped": 1, "failed": 1})}}
    assert stack.describe_history_event(summ) == "✓ Summarize: trained 1, skipped 1, failed 1"
    assert stack.describe_history_event({"type": "TaskScheduled"}) is None
    a, b = stack.execution_name("local"), stack.execution_name("local")
    assert a != b and a.startswith("local-")


def test_admin_route_failure_is_a_500_json_not_a_dropped_connection(echo_gateway):
    g, _ = echo_gateway

    def broken(body):
        raise RuntimeError("moto said no")

    g.admin[("POST", "/local/broken")] = broken
    r = Client(g.url, auth="none").request("POST", "/local/broken", json_body={})
    assert r.status == 500 and "moto said no" in r.json()["message"]


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_gateway_rejects_a_bad_content_length_with_400(echo_gateway, length):
    import socket
    from urllib.parse import urlparse

    g, _ = echo_gateway
    u = urlparse(g.url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(f"POST /v1/users/alice/echo HTTP/1.1\r\nHost: x\r\nx-calroute-user: alice\r\n"
                  f"content-length: {length}\r\n\r\n".encode())
        chunks = []
        while True:  # the gateway closes the connection after a bad request
            chunk = s.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
        reply = b"".join(chunks).decode()
    assert reply.startswith("HTTP/1.") and " 400 " in reply.split("\r\n", 1)[0]
    assert '"invalid_request"' in reply


def test_http_handlers_never_run_concurrently_across_functions():
    """Powertools keeps the current event on the BaseRouter class (process-global): two functions'
    HTTP handlers running at once in one process would read each other's event (a dev-auth 403 under
    load was the symptom). The gateway must run one HTTP handler at a time."""
    import threading

    inside = threading.Event()
    overlaps: list[str] = []
    started = threading.Barrier(2, timeout=10)

    class Dispatcher:
        specs = {"IngestFunction": object(), "PredictFunction": object()}

        def call(self, spec, event):
            if inside.is_set():
                overlaps.append(event["who"])
            inside.set()
            try:
                threading.Event().wait(0.2)  # a window for the other thread to enter (it must not)
            finally:
                inside.clear()
            return b"{}", None

    host = gw.FunctionHost(resolver=None, dispatcher=Dispatcher())

    def run(logical):
        started.wait()
        for _ in range(3):
            host.invoke(logical, {"who": logical})

    threads = [threading.Thread(target=run, args=(f,)) for f in ("IngestFunction", "PredictFunction")]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    assert overlaps == []


def test_loopback_server_queues_a_burst_of_connections_before_accepting_any():
    """54 clients connect at once in the load test while the accept thread may be starved of the GIL.
    With socketserver's default backlog (5) the kernel drops the handshakes beyond it (connect hangs,
    later a reset: the CI failure); the local servers keep a real backlog. The server here never
    accepts, so every connection must complete from the kernel's queue alone."""
    import socket
    from http.server import BaseHTTPRequestHandler

    server = gw.LoopbackHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    socks, failed = [], 0
    try:
        for _ in range(100):
            s = socket.socket()
            s.settimeout(0.5)
            try:
                s.connect(server.server_address)
            except OSError:
                failed += 1
            socks.append(s)
    finally:
        for s in socks:
            s.close()
        server.server_close()
    assert failed == 0, f"{failed} of 100 connections were not queued"


# ----------------------------------------------------------------------------- the emulator's port


def _moto_answers(port: int) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json") as r:
        return r.status == 200


def test_moto_server_binds_port_0_itself_and_reports_the_port_it_bound():
    """The emulator used to be given a port probed by binding and releasing it (`free_port()`),
    which another process could take before moto bound it. The server binds port 0 itself: the
    port it reports is the one it holds, two servers started at once never collide, a port in use
    is an OSError at once (moto's ThreadedMotoServer waits for ever), and stop() frees the port."""
    from calroute_dev.local.moto_server import MotoServer

    a, b = MotoServer(port=0).start(), MotoServer(port=0).start()
    try:
        assert a.port != 0 and b.port != 0 and a.port != b.port
        assert _moto_answers(a.port) and _moto_answers(b.port)
        with pytest.raises(OSError):
            MotoServer(port=a.port)
    finally:
        a.stop()
        b.stop()
    again = MotoServer(port=a.port).start()  # the listening socket was closed
    try:
        assert again.port == a.port and _moto_answers(again.port)
    finally:
        again.stop()
