"""Work after the response (calroute.ports.AfterResponse): the Lambda internal extension
(calroute.adapters.lambda_extension) against a local stand-in of the Extensions API
(calroute_dev.local.extensions_api, which drives Lambda's invoke cycle), its wiring, and the
predict service deferring the prediction log's write."""

from __future__ import annotations

import threading

import pytest

from calroute import wiring
from calroute.adapters.lambda_extension import NAME, AfterResponseExtension, ExtensionError
from calroute.config import Settings
from calroute.ports import Immediately
from calroute_dev.local.extensions_api import ExtensionsApi
from support.fakes import Recorder, fake_stores

U = "alice"


@pytest.fixture
def api():
    with ExtensionsApi(wait_s=10) as a:
        yield a


def test_registers_for_invoke_only_during_init_and_completes_init_by_asking_for_the_next_event(api):
    ext = AfterResponseExtension(api.address)
    (reg,) = api.extensions.values()
    assert (reg.name, reg.events, reg.id) == (NAME, ["INVOKE"], ext.extension_id)
    api.begin_invoke()  # returns only once the extension waits in event/next (its init is done)
    assert reg.nexts == 1
    ext.invocation_done()
    api.end_invoke()
    assert reg.nexts == 2


def test_deferred_work_runs_after_the_handler_returned_and_before_the_invoke_phase_ends(api):
    ext = AfterResponseExtension(api.address)
    release, seen = threading.Event(), {}

    def write():
        seen["thread"] = threading.current_thread().name
        seen["released"] = release.wait(5)

    rid = api.begin_invoke()
    ext.defer(write)
    ext.invocation_done(rid)
    # the handler has returned (its response is on the way) while the write is still pending or
    # blocked: the invoke phase is not over, Lambda may not freeze the environment yet
    assert not api.idle()
    release.set()
    api.end_invoke()
    assert seen == {"thread": NAME, "released": True}
    assert (ext.ran, ext.failures) == (1, 0)


def test_each_invoke_runs_its_own_work_in_order(api):
    ext = AfterResponseExtension(api.address)
    order = []
    for n in range(3):
        rid = api.begin_invoke()
        for k in range(2):
            ext.defer(lambda n=n, k=k: order.append((n, k)))
        ext.invocation_done(rid)
        api.end_invoke()
        assert order[-2:] == [(n, 0), (n, 1)]  # done before the invoke phase ended
    assert ext.ran == 6


def test_a_failing_deferred_call_is_counted_and_the_loop_goes_on(api):
    errors = []
    ext = AfterResponseExtension(api.address, on_error=errors.append)
    done = []
    rid = api.begin_invoke()
    ext.defer(lambda: 1 / 0)
    ext.defer(lambda: done.append("after"))
    ext.invocation_done(rid)
    api.end_invoke()
    assert done == ["after"] and [type(e) for e in errors] == [ZeroDivisionError]
    assert ext.take_failures() == 1 and ext.take_failures() == 0
    rid = api.begin_invoke()  # the next invoke is served as usual
    ext.defer(lambda: done.append("next"))
    ext.invocation_done(rid)
    api.end_invoke()
    assert done == ["after", "next"]


def test_a_late_end_mark_of_another_request_does_not_end_this_invoke(api):
    ext = AfterResponseExtension(api.address)
    done = []
    rid = api.begin_invoke("req-2")
    ext.invocation_done("req-1")  # an earlier invoke's mark, arriving after its deadline
    ext.defer(lambda: done.append("req-2's write"))
    ext.invocation_done(rid)
    api.end_invoke()
    assert done == ["req-2's write"]


def test_a_handler_that_never_ends_cannot_hold_the_environment_past_the_deadline(api):
    AfterResponseExtension(api.address)
    api.begin_invoke(timeout_ms=-1)  # the deadline has passed and no end mark will come
    api.end_invoke()  # the extension asked for its next event anyway (else: TimeoutError)


@pytest.mark.parametrize("address", ["nohost", "127.0.0.1:port", ":9001"])
def test_a_runtime_api_that_is_not_host_port_is_refused(address):
    with pytest.raises(ExtensionError, match="host:port"):
        AfterResponseExtension(address)


def test_a_refused_registration_raises(api):
    with pytest.raises(ExtensionError, match="HTTP 400"):
        AfterResponseExtension(api.address, name="")


# ----------------------------------------------------------------------------- wiring


def test_after_response_is_the_extension_only_in_a_lambda_on_demand_init(api):
    on = Settings(prediction_log_after_response=True)
    assert Settings().prediction_log_after_response is False  # opt-in
    lam = {"AWS_LAMBDA_RUNTIME_API": api.address, "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}
    assert isinstance(wiring.after_response(on, environ={}), Immediately)  # outside Lambda
    assert isinstance(wiring.after_response(on, environ={**lam, "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}),
                      Immediately)
    assert isinstance(wiring.after_response(Settings(prediction_log_after_response=False), environ=lam),
                      Immediately)
    assert isinstance(wiring.after_response(on, environ=lam), AfterResponseExtension)
    assert isinstance(wiring.after_response(on, environ={**lam, "AWS_LAMBDA_INITIALIZATION_TYPE":
                                                          "provisioned-concurrency"}), AfterResponseExtension)


def test_a_failed_registration_falls_back_to_writing_in_the_request():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    warnings = []

    class Log:
        def warning(self, msg, extra=None):
            warnings.append((msg, extra))

    got = wiring.after_response(Settings(prediction_log_after_response=True), logger=Log(), environ={"AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"})
    assert isinstance(got, Immediately)
    assert warnings and warnings[0][1]["error"] == "ConnectionRefusedError"


def test_immediately_runs_at_once():
    ran = []
    Immediately().defer(lambda: ran.append(1))
    Immediately().invocation_done("r")
    assert ran == [1]


# ----------------------------------------------------------------------------- the predict service


class Deferred:
    """An AfterResponse that holds the work until the test runs it (after the request)."""

    def __init__(self):
        self.work = []

    def defer(self, fn):
        self.work.append(fn)

    def invocation_done(self, request_id=None):
        pass

    def run(self):
        work, self.work = self.work, []
        for fn in work:
            fn()


def _service(stores, after, sink):
    from test_services import install

    install(stores)
    return wiring.predict_service(Settings(prediction_log_confident_sample_rate=1.0), stores=stores, sink=sink,
                                  invoker=None, after=after)


def test_the_prediction_log_write_is_deferred_not_done_in_the_request():
    stores, after = fake_stores(), Deferred()
    svc = _service(stores, after, Recorder())
    out = svc.classify(U, {"event_id": "e-1", "summary": "sprint standup review", "start": "2026-03-03T10:00:00Z"})
    assert out["event_id"] == "e-1" and stores.predictions.get(U, "e-1") is None  # answered, not yet written
    after.run()
    item = stores.predictions.get(U, "e-1")
    assert item["method"] == out["method"] and item["calendar_id"] == out["calendar_id"]


def test_a_deferred_write_that_fails_is_reported_with_the_next_request(monkeypatch):
    stores, after, sink = fake_stores(), Deferred(), Recorder()
    svc = _service(stores, after, sink)

    def broken(*a, **k):
        raise RuntimeError("throttled")

    monkeypatch.setattr(stores.predictions, "put_many", broken)
    svc.classify(U, {"event_id": "e-1", "summary": "sprint standup review", "start": "2026-03-03T10:00:00Z"})
    after.run()  # fails after the response: this request's metrics are gone already
    assert not [m for m in sink.metrics if m[0] == "PredictionLogFailures"]
    svc.classify(U, {"event_id": "e-2", "summary": "sprint standup review", "start": "2026-03-03T11:00:00Z"})
    assert [m[2] for m in sink.metrics if m[0] == "PredictionLogFailures"] == [1]
    svc.classify(U, {"event_id": "e-3", "summary": "sprint standup review", "start": "2026-03-03T12:00:00Z"})
    assert [m[2] for m in sink.metrics if m[0] == "PredictionLogFailures"] == [1]  # reported once


@pytest.mark.parametrize("after", [None, Immediately()])
def test_in_the_request_a_failed_write_is_reported_in_its_own_request(monkeypatch, after):
    stores, sink = fake_stores(), Recorder()
    svc = _service(stores, after, sink)
    monkeypatch.setattr(stores.predictions, "put_many", lambda *a, **k: 1 / 0)
    svc.classify(U, {"event_id": "e-1", "summary": "sprint standup review", "start": "2026-03-03T10:00:00Z"})
    assert [m[2] for m in sink.metrics if m[0] == "PredictionLogFailures"] == [1]


# ----------------------------------------------------------------------------- the bare HTTP client


@pytest.mark.parametrize("body, want", [
    (b'{"eventType":"INVOKE","deadlineMs":1796151218991,"requestId":"r"}', 1796151218991.0),
    (b'{"eventType": "INVOKE", "deadlineMs": 17, "requestId": "r"}', 17.0),
    (b'{"eventType":"INVOKE","requestId":"r"}', None),
    (b'{"deadlineMs":"x"}', None),
])
def test_the_deadline_is_read_without_parsing_the_event(body, want):
    from calroute.adapters.lambda_extension import _deadline_ms

    assert _deadline_ms(body) == want


class _Chunked:
    """An Extensions API that answers ``event/next`` chunked, then once more and closes the
    connection, then with an error status."""

    def __init__(self, statuses):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.events = SimpleQueue()
        self.posts = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append((self.path, self.headers.get("Lambda-Extension-Function-Error-Type")))
                self.send_response(200)
                self.send_header("Lambda-Extension-Identifier", "ext-1")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_GET(self):
                status, body, mode = outer.events.get()
                self.send_response(status)
                if mode == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = len(body) // 2
                    for part in (body[:half], body[half:]):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    if mode == "close":
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = "%s:%d" % self.server.server_address[:2]


from queue import SimpleQueue  # noqa: E402


def test_chunked_and_closed_responses_are_read_and_an_error_status_ends_the_loop():
    api = _Chunked(None)
    ext = AfterResponseExtension(api.address)
    done = []
    invoke = b'{"eventType":"INVOKE","requestId":"r1","deadlineMs":4102444800000}'
    ext.defer(lambda: done.append("chunked"))
    ext.invocation_done("r1")
    api.events.put((200, invoke, "chunked"))
    ext.defer(lambda: done.append("closed"))
    ext.invocation_done("r2")
    api.events.put((200, invoke.replace(b"r1", b"r2"), "close"))
    api.events.put((500, b"{}", "length"))
    ext._thread.join(10)
    assert done == ["chunked", "closed"] and not ext._thread.is_alive()
    api.server.shutdown()


def test_a_deadline_past_any_clock_still_waits_for_the_end_mark(api):
    ext = AfterResponseExtension(api.address)
    done = []
    rid = api.begin_invoke(timeout_ms=10 ** 15)  # a deadline no platform clock can wait for
    ext.defer(lambda: done.append(1))
    ext.invocation_done(rid)
    api.end_invoke()
    assert done == [1] and ext._thread.is_alive()


def test_the_stand_in_also_runs_in_its_own_process_as_lambdas_api_does():
    from calroute_dev.local.extensions_api import RemoteExtensionsApi

    with RemoteExtensionsApi() as api:
        ext = AfterResponseExtension(api.address)
        done = []

        def handler(rid):
            ext.defer(lambda: done.append(rid))
            ext.invocation_done(rid)
            return "answer"

        inv = api.invoke(handler, request_id="req-9")
        assert (inv.result, done, ext.ran) == ("answer", ["req-9"], 1)
        assert inv.done_ms >= inv.response_ms > 0


def test_an_api_failure_is_reported_with_exit_error_and_the_work_then_runs_in_the_request():
    api = _Chunked(None)
    ext = AfterResponseExtension(api.address)
    api.events.put((500, b"{}", "length"))  # event/next fails: Lambda would wait for this extension for ever
    ext._thread.join(10)
    assert not ext._thread.is_alive()
    assert api.posts == [("/2020-01-01/extension/register", None),
                         ("/2020-01-01/extension/exit/error", "Extension.ExtensionError")]
    ran = []
    ext.defer(lambda: ran.append(threading.current_thread().name))
    assert ran == [threading.current_thread().name]  # done at once, in the request
    api.server.shutdown()


def test_the_stand_in_records_exit_error_and_forgets_the_extension(api):
    ext = AfterResponseExtension(api.address)
    api.begin_invoke()
    ext._exit_error("ExtensionError")
    assert api.exit_errors == [(NAME, "Extension.ExtensionError")] and api.extensions == {}
