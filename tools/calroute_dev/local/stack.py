"""``calroute local`` — the whole service on one machine (what ``make local`` runs).

1. the AWS emulation (:func:`calroute_dev.local.moto_server.start_emulator`): moto on 127.0.0.1:4566
   with the tables, bucket, functions and state machine of template.yaml; Step Functions executes the
   real ASL and Lambda invokes run the real handlers in-process;
2. the data of the previous run restored from ``.calroute-local/`` (:mod:`calroute_dev.local.persist`);
3. the local API Gateway (:mod:`calroute_dev.local.gateway`) on 127.0.0.1:3000, plus two local-only
   admin routes: ``POST /local/schedule`` (start the state machine with the schedule's input) and
   ``POST /local/execution`` (``{"execution_arn"}`` → its status and output);
4. the demo (:mod:`calroute_dev.local.demo`): seed ``data/users/d3_developer`` (``--demo-user``) through the API holding back
   the most recent 30% of each calendar, run the training state machine, classify the held-back
   events through the API and print a table;
5. serve until Ctrl-C, then stop the gateway, snapshot the data and stop moto.

``--smoke`` does 1-4 (on a fresh temporary data folder unless ``--data-dir`` is given) plus a few
checks, stops, and exits 0 or 1.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

from . import restore_environ

LLM_OFF = "LLM fallback: off (set OPENAI_API_KEY / OPENAI_BASE_URL) — unsure answers come back ml_low_confidence"
SCHEDULE_INPUT = {"trigger": "schedule"}


class Console:
    """Progress lines on stdout (flushed), quiet in tests."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet

    def __call__(self, line: str = "") -> None:
        if not self.quiet:
            print(line, file=self.stream, flush=True)


def local_overrides(auth: str = "dev", environ: Optional[dict] = None, verbose: bool = False) -> dict[str, str]:
    """Environment the local stack runs the handlers with (on top of the template's)."""
    env = os.environ if environ is None else environ
    out = {
        "AUTH_MODE": auth,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "false" if verbose else "true",
        # the per-answer JSON record line (for a CloudWatch Logs subscription in AWS) is noise in the
        # demo's output: only with --verbose, like the EMF metric documents
        "PREDICTION_LOG_LINES": "true" if verbose else "false",
        "POWERTOOLS_LOG_LEVEL": env.get("POWERTOOLS_LOG_LEVEL") or ("INFO" if verbose else "WARNING"),
        "OPENAI_API_KEY": env.get("OPENAI_API_KEY", ""),
        "OPENAI_BASE_URL": env.get("OPENAI_BASE_URL", ""),
        # the key comes from the environment locally, never from SSM / Secrets Manager
        "LLM_API_KEY_PARAM": "",
        # erasure audit HMAC key: $ERASURE_HMAC_KEY, else the development key (dev/none auth)
        "ERASURE_HMAC_KEY_PARAM": "",
        "ERASURE_HMAC_KEY": env.get("ERASURE_HMAC_KEY", ""),
        "SWAGGER_UI": "true",  # GET /v1/docs
        # every handler runs in this one long-lived process: no cold-start GC pause (calroute.startup)
        "COLD_START_GC": "",
    }
    if env.get("LLM_MODEL"):
        out["LLM_MODEL"] = env["LLM_MODEL"]
    return out


def llm_banner(overrides: dict[str, str]) -> str:
    if overrides.get("OPENAI_API_KEY") or overrides.get("OPENAI_BASE_URL"):
        where = overrides.get("OPENAI_BASE_URL") or "api.openai.com"
        return f"LLM fallback: on ({where}, model {overrides.get('LLM_MODEL') or 'from the template'})"
    return LLM_OFF


def apply_overrides(lambdas: Any, overrides: dict[str, str]) -> None:
    """Set ``overrides`` in this process's environment and make sure the in-process Lambda dispatch
    (which swaps per-function template variables in for each call) does not swap them back."""
    for k, v in overrides.items():
        os.environ[k] = v
    own = getattr(lambdas, "_own_env", None)
    if isinstance(own, dict):
        for env in own.values():
            for k in overrides:
                env.pop(k, None)
    common = getattr(lambdas, "common_env", None)
    if isinstance(common, dict):
        common.update(overrides)
    from calroute.config import settings

    settings.cache_clear()


def schedule_input(resolver: Any) -> dict:
    """The input the template's EventBridge schedule gives the state machine."""
    for res in resolver.of_type("AWS::Serverless::StateMachine").values():
        for ev in ((res.get("Properties") or {}).get("Events") or {}).values():
            if (ev or {}).get("Type") in ("Schedule", "ScheduleV2"):
                raw = (ev.get("Properties") or {}).get("Input")
                if isinstance(raw, str):
                    try:
                        return json.loads(raw)
                    except ValueError:
                        pass
    return dict(SCHEDULE_INPUT)


def execution_name(kind: str) -> str:
    """A unique execution name (moto names an unnamed execution "None", so a second one collides)."""
    import uuid

    return f"{kind}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


PER_USER_TASKS = {"TrainUserFunction": "TrainUser", "ValidateFunction": "Validate", "PromoteFunction": "Promote"}


def describe_history_event(ev: dict) -> Optional[str]:
    """One progress line for the interesting Step Functions history events, else None."""
    t = ev.get("type", "")
    if t.endswith("StateEntered") and not t.startswith("Succeed"):
        return f"→ {ev['stateEnteredEventDetails']['name']}"
    if t.endswith("StateExited") and not t.startswith("Succeed"):
        d = ev["stateExitedEventDetails"]
        try:
            out = json.loads(d.get("output") or "{}")
        except ValueError:
            out = {}
        name = d["name"]
        if t.startswith("Map"):
            return f"✓ {name}"
        if isinstance(out, dict) and "count" in out and "trained" not in out:
            skipped = out.get("skipped_total", len(out.get("skipped") or []))
            return f"✓ {name}: {out['count']} user(s) to train, {skipped} not needed"
        if isinstance(out, dict) and "trained" in out:
            return "✓ " + name + ": " + ", ".join(
                f"{k} {out[k]}" for k in ("trained", "skipped", "rejected", "failed", "conflict") if k in out)
        return f"✓ {name}"
    if t in ("ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
        d = next((v for k, v in ev.items() if k.endswith("Details")), {})
        return f"✗ {t}: {d.get('error', '')} {str(d.get('cause', ''))[:200]}"
    return None


def run_summary(result: dict) -> str:
    out = result.get("output") or {}
    if not isinstance(out, dict):
        out = {}
    counts = [f"{k} {out[k]}" for k in ("trained", "skipped", "rejected", "failed", "conflict") if k in out]
    line = f"training run {result.get('status')} in {result.get('seconds', 0):.1f}s"
    if counts:
        line += ": " + ", ".join(counts)
    if result.get("error"):
        line += f" ({result['error']}: {str(result.get('cause'))[:200]})"
    return line


class LocalStack:
    """The emulator + persistence + gateway; ``start()`` / ``stop()`` (also a context manager)."""

    def __init__(self, *, data_dir: str | Path, port: int = 3000, aws_port: int = 4566, auth: str = "dev",
                 fresh: bool = False, persist_interval: float = 60.0, verbose: bool = False,
                 console: Optional[Callable[[str], None]] = None, access_log: Optional[Callable[[str], None]] = None):
        self.data_dir = Path(data_dir)
        self.port, self.aws_port, self.auth = port, aws_port, auth
        self.fresh, self.persist_interval, self.verbose = fresh, persist_interval, verbose
        self.say = console or Console()
        self.access_log = access_log
        self.emulator: Any = None
        self.gateway: Any = None
        self.persister: Any = None
        self.overrides: dict[str, str] = {}
        self._saved_env: dict[str, Optional[str]] = {}

    # -- lifecycle
    def start(self) -> "LocalStack":
        if self.fresh and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.overrides = local_overrides(self.auth, verbose=self.verbose)
        for k, v in self.overrides.items():  # before any handler module is imported (log level)
            self._saved_env.setdefault(k, os.environ.get(k))
            os.environ[k] = v
        if not self.verbose:
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            # moto's ASL parser notes that ToleratedFailurePercentage has no effect (docs/local.md says so)
            logging.getLogger("moto.stepfunctions.parser").setLevel(logging.ERROR)
        from . import persist
        from .gateway import Gateway
        from .moto_server import start_emulator

        t0 = time.perf_counter()
        self.emulator = start_emulator(self.aws_port, parameters={"Stage": "local"})
        self.aws_port = self.emulator.port  # the port bound (0 asked the OS for a free one)
        apply_overrides(self.emulator.lambdas, self.overrides)
        self.say(f"AWS emulation   {self.emulator.endpoint}  (moto: DynamoDB, S3, Lambda, Step Functions) "
                 f"started in {time.perf_counter() - t0:.1f}s")
        res = self.emulator.resolver
        tables = [res.physical_name(k) for k in res.of_type("AWS::DynamoDB::Table")]
        buckets = [res.physical_name(k) for k in res.of_type("AWS::S3::Bucket")]
        if persist.has_snapshot(self.data_dir):
            restored = persist.restore(self.data_dir, endpoint_url=self.emulator.endpoint, tables=tables,
                                       buckets=buckets)
            n_items = sum(restored["tables"].values())
            n_objs = sum(restored["buckets"].values())
            self.say(f"restored        {n_items} items, {n_objs} objects from {self.data_dir}/ (--fresh to start over)")
        self.persister = persist.Persister(self.data_dir, tables, buckets, endpoint_url=self.emulator.endpoint,
                                           interval_s=self.persist_interval,
                                           on_error=lambda e: self.say(f"snapshot failed: {e}")).start()
        self.gateway = Gateway(res, port=self.port, dispatcher=self.emulator.lambdas, admin={
            ("POST", "/local/schedule"): self._admin_schedule,
            ("POST", "/local/execution"): self._admin_execution,
            ("GET", "/local/health"): lambda _body: (200, {"ok": True}),
        }, access_log=self.access_log).start()
        self.say(f"API             {self.gateway.url}  ({len(self.gateway.routes)} routes from template.yaml, "
                 f"auth {self.auth}{': send x-calroute-user: <userId>' if self.auth == 'dev' else ''})")
        self.say(llm_banner(self.overrides))
        return self

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.persister is not None:
            snap = self.persister.stop()
            if snap:
                self.say(f"saved           {sum(snap['tables'].values())} items, "
                         f"{sum(snap['buckets'].values())} objects to {self.data_dir}/")
            self.persister = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        restore_environ(self._saved_env)
        self._saved_env.clear()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- helpers
    @property
    def url(self) -> str:
        return self.gateway.url

    def client(self, user: Optional[str] = None):
        from .client import Client

        return Client(self.url, auth="dev" if self.auth == "dev" else "none", user=user)

    def _admin_schedule(self, body: Any) -> tuple[int, Any]:
        payload = schedule_input(self.emulator.resolver)
        if isinstance(body, dict) and isinstance(body.get("user_ids"), list):
            payload = {"trigger": "local", "user_ids": body["user_ids"]}
        sfn = self.emulator.client("stepfunctions")
        arn = sfn.start_execution(stateMachineArn=self.emulator.state_machine_arn, name=execution_name("schedule"),
                                  input=json.dumps(payload))["executionArn"]
        return 202, {"execution_arn": arn, "input": payload}

    def _admin_execution(self, body: Any) -> tuple[int, Any]:
        arn = body.get("execution_arn") if isinstance(body, dict) else None
        if not isinstance(arn, str) or not arn.startswith("arn:aws:states:"):
            return 400, {"error": "invalid_input", "message": "execution_arn is required", "field": "execution_arn"}
        sfn = self.emulator.client("stepfunctions")
        try:
            desc = sfn.describe_execution(executionArn=arn)
        except Exception as exc:  # noqa: BLE001 - unknown execution
            return 404, {"error": "not_found", "message": str(exc)[:300]}
        if desc["status"] != "RUNNING" and self.persister is not None:
            # a finished run changed models: snapshot in the background, answer now
            threading.Thread(target=self.persister.save, name="calroute-persist-run", daemon=True).start()
        out = desc.get("output")
        return 200, {"execution_arn": arn, "status": desc["status"],
                     "output": json.loads(out) if out else None, "error": desc.get("error"),
                     "cause": desc.get("cause")}

    def train(self, payload: dict, timeout: float = 600.0, poll_seconds: float = 0.25) -> dict:
        """Run the training state machine and wait, printing its progress: the states it enters and
        leaves (from the execution history) and each per-user Lambda task as it finishes."""
        sfn = self.emulator.client("stepfunctions")
        lambdas = self.emulator.lambdas
        n_inv = len(lambdas.invocations)
        arn = sfn.start_execution(stateMachineArn=self.emulator.state_machine_arn, name=execution_name("local"),
                                  input=json.dumps(payload))["executionArn"]
        t0 = time.monotonic()
        n_hist = 0
        while True:
            desc = sfn.describe_execution(executionArn=arn)
            events = sfn.get_execution_history(executionArn=arn, maxResults=1000).get("events", [])
            # tasks that finished by now happened before any state the history shows next: print them first
            invs = list(lambdas.invocations)
            for inv in invs[n_inv:]:
                if inv.get("function") in PER_USER_TASKS:
                    self.say(f"  [{time.monotonic() - t0:6.1f}s]     {PER_USER_TASKS[inv['function']]:<9} "
                             f"{inv['seconds']:.1f}s{'  FAILED (caught by the state machine)' if inv.get('error') else ''}")
            n_inv = len(invs)
            for ev in events[n_hist:]:
                line = describe_history_event(ev)
                if line:
                    self.say(f"  [{time.monotonic() - t0:6.1f}s] {line}")
            n_hist = len(events)
            if desc["status"] != "RUNNING":
                break
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"execution {arn} still running after {timeout:.0f}s")
            time.sleep(poll_seconds)  # polling an execution that runs in moto's threads
        out = desc.get("output")
        result = {"status": desc["status"], "execution_arn": arn, "output": json.loads(out) if out else None,
                  "error": desc.get("error"), "cause": desc.get("cause"),
                  "seconds": round(time.monotonic() - t0, 3)}
        if self.persister is not None:
            self.persister.save()
        return result

    def has_events(self, user: str) -> bool:
        from calroute import wiring
        from calroute.config import settings

        return wiring.stores(settings()).events.count_events(user) > 0

    def active_model(self, user: str) -> Optional[dict]:
        from calroute import wiring
        from calroute.config import settings

        return wiring.stores(settings()).registry.active(user)


# ----------------------------------------------------------------------------- the demo


def run_demo(stack: LocalStack, user_dir: Path, *, smoke: bool = False,
             max_seen_per_calendar: Optional[int] = None) -> dict:
    """Seed (if the user has no data yet), train (if no active model), classify the unseen events
    (``max_seen_per_calendar``: learn from only the most recent N events of each calendar, for tests)."""
    from . import demo

    say = stack.say
    data = demo.load_demo(user_dir, user_dir.name, max_seen_per_calendar=max_seen_per_calendar)
    client = stack.client(data.user)
    say("")
    say(f"demo user {data.user}: {len(data.seen)} calendars from {user_dir} — "
        f"{data.n_seen} events to learn from, {data.n_unseen} most recent held back as unseen")
    if stack.has_events(data.user) and not smoke:
        say("  already seeded (data restored from the last run)")
    else:
        t0 = time.perf_counter()
        n = demo.seed(client, data, progress=say)
        say(f"  {n} events uploaded through the API in {time.perf_counter() - t0:.1f}s")
    result: dict = {}
    if stack.active_model(data.user) is None or smoke:
        payload = schedule_input(stack.emulator.resolver)
        say("")
        say(f"training: the state machine runs Plan → Distributed Map (TrainUser → Validate → Promote) → "
            f"Summarize, input {json.dumps(payload)}")
        result = stack.train(payload)
        say("  " + run_summary(result))
    active = stack.active_model(data.user)
    model_line = (f"model {active.get('version')} (threshold {float(active.get('threshold', 0)):.2f})"
                  if active else "no active model (the LLM fallback or nothing answers)")
    say("")
    say(f"classifying the {data.n_unseen} unseen events through POST /v1/users/{data.user}/classify/batch — {model_line}")
    t0 = time.perf_counter()
    rows = demo.classify_unseen(client, data)
    secs = time.perf_counter() - t0
    say(demo.render(rows))
    summary = demo.summarize(rows)
    say(f"({len(rows)} events classified in {secs:.2f}s over HTTP, {1000 * secs / max(1, len(rows)):.2f} ms/event)")
    new_rows = demo.classify_new(client, data, demo.load_new_events(user_dir))
    if new_rows:
        llm_on = bool(stack.overrides.get("OPENAI_API_KEY") or stack.overrides.get("OPENAI_BASE_URL"))
        say("")
        say(f"{len(new_rows)} new events (demo_events.json): the model answers the familiar ones; the others are "
            f"deferred to the LLM{'' if llm_on else ' (off here: they come back ml_low_confidence)'}")
        say(demo.render_new(new_rows))
        first = next((r for r in new_rows if r["method"] != "ml"), None)
        if first is not None:
            say("")
            say(f"what the LLM {'is' if llm_on else 'would be'} asked for \"{first['summary']}\" "
                f"(defer_reason {first['defer_reason']}; the system prompt asks for JSON naming one calendar id):")
            say("  " + demo.llm_question(data, first).strip().replace("\n", "\n  "))
    return {"user": data.user, "training": result, "summary": summary, "active": active, "rows": rows,
            "new": new_rows}


def _banner(stack: LocalStack, user: str) -> str:
    u = stack.url
    hdr = f" -H 'x-calroute-user: {user}'" if stack.auth == "dev" else ""
    return "\n".join([
        "",
        f"calroute is running: API {u}   AWS {stack.emulator.endpoint}   data {stack.data_dir}/",
        f"  {u}/v1/docs                 Swagger UI (in a browser)",
        f"  curl -s{hdr} {u}/v1/users/{user}/model",
        f"  curl -s{hdr} -H 'content-type: application/json' {u}/v1/users/{user}/classify \\",
        "       -d '{\"event\": {\"summary\": \"Pražské Pyvo\", \"start\": \"2026-03-18T19:00:00\"}}'",
        f"  calroute classify --user {user} --summary 'Dentist appointment' --start 2026-03-03T15:00:00",
        "  calroute train --all        # fire the nightly schedule now",
        "  calroute invoke StatsFunction -e infra/events/stats_user.json   # one handler, one event",
        "Ctrl-C stops (data is saved).",
    ])


def _smoke_checks(stack: LocalStack, report: dict) -> list[str]:
    """What --smoke requires; returns the failures."""
    fails = []
    tr = report.get("training") or {}
    if tr.get("status") != "SUCCEEDED":
        fails.append(f"training run {tr.get('status')}: {tr.get('error')} {str(tr.get('cause'))[:200]}")
    if not report.get("active"):
        fails.append("no active model after training")
    s = report.get("summary") or {}
    if not s.get("events"):
        fails.append("nothing classified")
    elif not s.get("methods", {}).get("ml"):
        fails.append(f"no confident (ml) predictions: {s.get('methods')}")
    elif (s.get("accuracy_ml") or 0) < 0.8:
        fails.append(f"accuracy of confident predictions {s.get('accuracy_ml'):.2f} < 0.80")
    new = report.get("new") or []
    if new and not any(r.get("defer_reason") for r in new):
        fails.append("no new event was deferred (demo_events.json should show the hybrid)")
    c = stack.client(report.get("user"))
    r = c.request("GET", "/v1/no-such-route")
    if r.status != 404:
        fails.append(f"unknown route answered {r.status}")
    if stack.auth == "dev":
        r = c.request("GET", c.user_path(report["user"], "model"), user="someone_else")
        if r.status != 403:
            fails.append(f"wrong x-calroute-user answered {r.status}, not 403")
    return fails


def run(args: Any) -> int:
    """Entry point of ``calroute local`` (argparse namespace from :mod:`calroute_dev.cli`)."""
    from .demo import DEMO_DIR

    say = Console()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    tmp = None
    data_dir = Path(args.data_dir)
    if args.smoke and args.data_dir == ".calroute-local":
        tmp = tempfile.mkdtemp(prefix="calroute-smoke-")
        data_dir = Path(tmp)
    user_dir = DEMO_DIR.parent / args.demo_user
    if not args.no_demo and not user_dir.is_dir():
        say(f"no demo calendars at {user_dir}")
        return 2
    access = (lambda line: print(f"  {line}", flush=True)) if not args.smoke else (lambda line: None)
    stack = LocalStack(data_dir=data_dir, port=args.port, aws_port=args.aws_port, auth=args.auth,
                       fresh=args.fresh, verbose=args.verbose, console=say, access_log=None)
    stop = threading.Event()
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def _stop(signum, frame):  # noqa: ARG001
        stop.set()

    code = 0
    try:
        try:
            stack.start()
        except OSError as exc:
            say(f"cannot start: {exc} (is another `calroute local` running? use --port / --aws-port)")
            return 1
        report = None
        if not args.no_demo:
            report = run_demo(stack, user_dir, smoke=args.smoke)
        if args.smoke:
            fails = _smoke_checks(stack, report or {}) if report else []
            for f in fails:
                say(f"SMOKE FAIL: {f}")
            say("smoke: OK" if not fails else f"smoke: {len(fails)} failure(s)")
            return 1 if fails else 0
        stack.gateway.access_log = access
        say(_banner(stack, args.demo_user))
        for s in old:
            signal.signal(s, _stop)
        while not stop.wait(0.5):
            pass
        say("")
        say("stopping…")
    except KeyboardInterrupt:
        say("")
        say("stopping…")
    except Exception as exc:  # noqa: BLE001 - a clear message, not a traceback, then a clean stop
        say(f"calroute local failed: {type(exc).__name__}: {exc}")
        if args.verbose:
            import traceback

            traceback.print_exc()
        code = 1
    finally:
        # a second Ctrl-C while saving must not leave a half-stopped stack: ignore it until done
        for s in old:
            signal.signal(s, lambda signum, frame: say("still stopping (saving data)…"))
        try:
            stack.stop()
        except Exception as exc:  # noqa: BLE001
            say(f"while stopping: {exc}")
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return code
