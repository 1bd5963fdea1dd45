"""``calroute`` — the command line: run the local stack and talk to a calroute API.

    calroute local [--fresh] [--smoke] ...           the local stack (what ``make local`` runs)
    calroute import-ics --user U [--calendar C] PATH one .ics, or a folder of them (stem = calendar)
    calroute ingest --user U FILE.jsonl              labelled events, one flat JSON event per line
    calroute classify --user U --summary ... --start ...   (or --event JSON)
    calroute add "Lunch with Sam tomorrow 1pm at Luna" --user U   words to an event draft (+ calendar)
    calroute correct --user U --event-id E --calendar C
    calroute review --user U [--limit N] [--confirm E ...]   the review queue; confirm answers
    calroute replay --data DIR [--llm noisy:0.9]     the cascade over time, offline (docs/learning.md)
    calroute train --user U | --all                  start training, wait for the outcome
    calroute status --user U                         the user's model
    calroute stats --user U                          last 7 days of predictions
    calroute evaluate --data DIR                     offline evaluation on .ics/JSONL folders
    calroute evaluate-slots --data FILE [--fit]      slot extraction on nl_events files (docs/slots.md)
    calroute export --user U [--out FILE]            all of the user's data as JSON Lines (reads the stores)
    calroute erase --user U                          DELETE /v1/users/U: erase everything of the user
    calroute invoke FUNCTION -e EVENT.json           one handler on one event (sam local invoke, no Docker)

API commands talk to the local stack (http://127.0.0.1:3000, dev auth: the ``x-calroute-user``
header) unless ``--api URL`` names a deployed API, which is then called with SigV4 (``--auth iam``,
the default for non-local URLs, credentials from boto3's default chain) or a bearer token
(``--auth jwt``, ``$CALROUTE_TOKEN``). ``--json`` prints machine-readable JSON.

Module-level imports are stdlib only: the CLI starts in well under half a second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from .text import table  # noqa: F401 - calroute_dev.cli.table, used by the commands below

LOCAL_API = "http://127.0.0.1:3000"


# ----------------------------------------------------------------------------- output


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _pct(x: Any) -> str:
    return "-" if x is None else f"{float(x):.1%}"


# ----------------------------------------------------------------------------- client


def _client(args: argparse.Namespace):
    from .local.client import Client, default_auth

    api = args.api or os.environ.get("CALROUTE_API") or LOCAL_API
    return Client(api, auth=args.auth or default_auth(api), user=getattr(args, "user", None), region=args.region)


def _api_common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("API")
    g.add_argument("--api", help=f"API base URL (default $CALROUTE_API or the local stack {LOCAL_API})")
    g.add_argument("--auth", choices=("dev", "none", "iam", "jwt"),
                   help="dev: x-calroute-user header (local default); iam: SigV4 (deployed default); "
                        "jwt: Authorization: Bearer $CALROUTE_TOKEN; none: no credentials")
    g.add_argument("--region", help="AWS region for SigV4 (default: from the URL, else $AWS_REGION)")
    g.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


# ----------------------------------------------------------------------------- commands


def cmd_import_ics(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.is_dir():
        if args.calendar:
            print("--calendar is for a single file; a folder imports one calendar per file stem", file=sys.stderr)
            return 2
        files = {p.stem: p for p in sorted(path.glob("*.ics"))}
        if not files:
            print(f"no .ics files in {path}", file=sys.stderr)
            return 2
    elif path.is_file():
        files = {args.calendar or path.stem: path}
    else:
        print(f"{path}: no such file or folder", file=sys.stderr)
        return 2
    client = _client(args)
    from .text import progress

    results = {}
    for cal, f in progress(list(files.items()), len(files), "import"):
        results[cal] = client.import_ics(args.user, cal, f.read_bytes())
    if args.json:
        _print_json(results)
    else:
        keys = sorted({k for r in results.values() for k, v in r.items() if isinstance(v, (int, float, str))})
        print(table([[cal] + [r.get(k, "") for k in keys] for cal, r in results.items()], ["calendar"] + keys))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    events = []
    with open(args.file, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    events.append(json.loads(line))
                except ValueError as exc:
                    print(f"{args.file}:{n}: not JSON ({exc})", file=sys.stderr)
                    return 2
    client = _client(args)
    from .text import progress

    total = 0
    starts = range(0, len(events), args.batch)
    for i in progress(starts, len(starts), "ingest"):
        total += int(client.ingest(args.user, events[i:i + args.batch]).get("upserted", 0))
    if args.json:
        _print_json({"upserted": total, "lines": len(events)})
    else:
        print(f"{total} events upserted for {args.user} ({len(events)} lines)")
    return 0


def _event_from_args(args: argparse.Namespace) -> dict:
    if args.event:
        raw = args.event
        if raw.startswith("@"):
            raw = Path(raw[1:]).read_text(encoding="utf-8")
        ev = json.loads(raw)
        if not isinstance(ev, dict):
            raise ValueError("--event must be a JSON object")
        return ev
    if not (args.summary is not None and args.start):
        raise ValueError("give --event JSON, or --summary and --start")
    ev = {"summary": args.summary, "start": args.start}
    for k in ("end", "location", "description"):
        if getattr(args, k):
            ev[k] = getattr(args, k)
    return ev


def cmd_classify(args: argparse.Namespace) -> int:
    try:
        event = _event_from_args(args)
    except ValueError as exc:
        print(f"classify: {exc}", file=sys.stderr)
        return 2
    res = _client(args).classify(args.user, event, remember=args.remember)
    if args.json:
        _print_json(res)
        return 0
    print(f"calendar    {res.get('calendar_id') or '-'}")
    conf = res.get("confidence")
    print(f"confidence  {'-' if conf is None else f'{conf:.3f}'} (threshold {res.get('threshold', '-')})")
    print(f"method      {res.get('method')}")
    if res.get("defer_reason"):
        print(f"defer       {res['defer_reason']}")
    if res.get("model_version"):
        print(f"model       {res['model_version']}")
    if res.get("reason"):
        print(f"reason      {res['reason']}")
    alts = res.get("alternatives") or []
    if alts:
        print()
        print(table([[a.get("calendar_id"), f"{a.get('probability', 0):.3f}"] for a in alts],
                    ["alternative", "probability"]))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """``POST /v1/users/U/events/parse``: the draft, each slot's value and confidence, what is missing,
    and the calendar the user's model picks (nothing is stored)."""
    res = _client(args).parse(args.user, " ".join(args.text), now=args.now, timezone=args.timezone)
    if args.json:
        _print_json(res)
        return 0
    d = res.get("draft") or {}
    when = d.get("start", "-") + ("" if not d.get("all_day") else " (all day)")
    print(f"summary     {d.get('summary') or '-'}")
    print(f"when        {when} → {d.get('end', '-')}")
    print(f"location    {d.get('location') or '-'}")
    if d.get("attendee_names"):
        print(f"with        {', '.join(d['attendee_names'])}")
    cal = res.get("calendar") or {}
    print(f"calendar    {cal.get('calendar_id') or '-'} ({cal.get('method', '-')})")
    rows = []
    for name, s in (res.get("slots") or {}).items():
        value = s.get("value")
        rows.append([name, "-" if value is None else (", ".join(value) if isinstance(value, list) else str(value)),
                     f"{s.get('confidence', 0):.2f}", s.get("source", "-"),
                     "yes" if s.get("needs_confirmation") else "no", s.get("note") or ""])
    print()
    print(table(rows, ["slot", "value", "confidence", "source", "confirm?", "note"]))
    if res.get("missing"):
        print(f"\nmissing     {', '.join(res['missing'])}")
    return 0


def cmd_evaluate_slots(args: argparse.Namespace) -> int:
    from . import slot_eval

    paths = args.data or [f"{slot_eval.DEFAULT_DATA}/sgd_calendar_train.jsonl",
                          f"{slot_eval.DEFAULT_DATA}/sgd_calendar_dev.jsonl"]
    if args.fit:
        train = [p for p in paths if p.endswith("_train.jsonl")]
        if len(train) != 1:
            print("evaluate-slots --fit: give exactly one *_train.jsonl file (confidences are fitted on train)",
                  file=sys.stderr)
            return 2
        from calroute.slots import confidence, when

        when.warm()
        table_ = slot_eval.fit(slot_eval.score(slot_eval.load_items(train[0]), slot_eval.rules_parser()),
                               source="nl_events train")
        dev = train[0].replace("_train.jsonl", "_dev.jsonl")
        if os.path.exists(dev):  # tuned on train, confirmed on dev: an unconfirmed slot asks again
            slot_eval.confirm(table_, slot_eval.load_items(dev))
        print(f"fitted: {slot_eval.write_fitted(table_)}", file=sys.stderr)
        import importlib

        from calroute.slots import fitted as fitted_module

        importlib.reload(fitted_module)  # the run below reads the table just written
        confidence.fitted.cache_clear()
    res = slot_eval.evaluate(paths, llm=args.llm)
    if args.json:
        _print_json(res)
    else:
        print(slot_eval.render(res))
    if args.docs:
        print(f"wrote {slot_eval.write_report(res, args.docs)}", file=sys.stderr)
    return 0


def cmd_correct(args: argparse.Namespace) -> int:
    res = _client(args).correct(args.user, args.event_id, args.calendar)
    if args.json:
        _print_json(res)
    else:
        print(f"{args.event_id} → {args.calendar} (recorded)")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    client = _client(args)
    confirmed = [client.confirm(args.user, e) for e in args.confirm or []]
    res = client.review(args.user, args.limit)
    if args.json:
        _print_json({**res, "confirmed": confirmed} if confirmed else res)
        return 0
    for c in confirmed:
        print(f"{c['event_id']} → {c['calendar_id']} ({c['provenance']})")
    print(f"{res.get('pending', 0)} LLM answers not confirmed yet; a representative few first:")
    rows = [[e["event_id"], e["calendar_id"], (e.get("summary") or "")[:40], e["start"][:16],
             "-" if e.get("margin") is None else f"{e['margin']:.2f}",
             "-" if e.get("novelty") is None else f"{e['novelty']:.2f}",
             "-" if e.get("represents") is None else str(e["represents"])] for e in res.get("events") or []]
    if rows:
        print(table(rows, ["event", "answered", "summary", "start", "margin", "novelty", "stands for"]))
        print(f"confirm: calroute review --user {args.user} --confirm EVENT_ID; "
              f"or correct: calroute correct --user {args.user} --event-id EVENT_ID --calendar C")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    values = {} if args.remember is None else {"remember": args.remember == "on"}
    res = _client(args).settings(args.user, **values)
    if args.json:
        _print_json(res)
    else:
        print(f"remember   {'on' if res.get('remember') else 'off'} (classify requests that do not say remember)")
        print(f"updated    {res.get('updated_at') or 'never'}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from . import replay

    return replay.main(args)


def _print_model(res: dict) -> None:
    active = res.get("active") or {}
    print(f"{'user':<15}{res.get('user_id', '')}")
    for key, label in (("status", "status"), ("can_train", "can train"), ("needs_training", "needs training")):
        if key in res:
            val = res[key]
            if isinstance(val, dict):  # {"ok"/"needed": bool, "reason": str}
                flag = next((v for k, v in val.items() if isinstance(v, bool)), None)
                val = ("yes" if flag else "no") + (f" — {val['reason']}" if val.get("reason") else "")
            print(f"{label:<15}{val}")
    version = res.get("active_version") or active.get("version")
    print(f"{'active':<15}{version or '(no model yet)'}")
    thr = res.get("threshold", active.get("threshold"))
    if thr is not None:
        print(f"{'threshold':<15}{thr:.3f}" if isinstance(thr, (int, float)) else f"{'threshold':<15}{thr}")
    metrics = res.get("metrics") or active.get("metrics") or {}
    if metrics:
        keep = ("n_events", "n_calendars", "cv_accuracy", "holdout_accuracy", "coverage_at_threshold",
                "accuracy_at_threshold", "macro_f1", "train_seconds", "family")
        print()
        print(table([[k, f"{metrics[k]:.4g}" if isinstance(metrics[k], float) else metrics[k]]
                     for k in keep if k in metrics], ["metric", "value"]))
    for key in ("can_train_reason", "needs_training_reason", "reason"):
        if res.get(key):
            print(f"{key.replace('_', ' ')}: {res[key]}")


def cmd_status(args: argparse.Namespace) -> int:
    res = _client(args).model(args.user)
    if args.json:
        _print_json(res)
    else:
        _print_model(res)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    res = _client(args).stats(args.user)
    if args.json or not isinstance(res, dict):
        _print_json(res)
        return 0
    methods = res.get("methods") or res.get("by_method") or {}
    if isinstance(methods, dict) and methods:
        rows = []
        for m, v in methods.items():
            v = v if isinstance(v, dict) else {"count": v}
            rows.append([m, v.get("count", v.get("predictions", "")), _pct(v.get("accuracy"))])
        print(table(rows, ["method", "predictions", "accuracy"]))
        rest = {k: v for k, v in res.items() if k not in ("methods", "by_method")}
        if rest:
            print()
            _print_json(rest)
    else:
        _print_json(res)
    return 0


def _wait_local(client, execution_arn: str, timeout: float, quiet: bool) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        info = client.local_run(execution_arn)
        status = info.get("status")
        if status != last and not quiet:
            print(f"  execution {status}")
            last = status
        if status not in ("RUNNING", None) or time.monotonic() > deadline:
            return info
        time.sleep(0.5)


def cmd_train(args: argparse.Namespace) -> int:
    from .local.client import is_local

    client = _client(args)
    if args.all:
        if not is_local(client.api):
            print("--all fires the local schedule; in AWS the EventBridge schedule starts the state machine "
                  "(or: aws stepfunctions start-execution)", file=sys.stderr)
            return 2
        started = client.fire_schedule()
    else:
        before = (client.model(args.user) or {}).get("active_version")
        started = client.train(args.user)
    arn = started.get("execution_arn", "")
    if not args.json:
        print(f"training started: {arn or started}")
    if args.no_wait:
        if args.json:
            _print_json(started)
        return 0
    if is_local(client.api) and arn:
        info = _wait_local(client, arn, args.timeout, args.json)
        out = info.get("output") or {}
        if args.json:
            _print_json({"started": started, "execution": info})
        else:
            counts = {k: out.get(k) for k in ("trained", "skipped", "rejected", "failed", "conflict") if k in out}
            if counts:
                print(table([list(counts.values())], list(counts.keys())))
            if not args.all:
                print()
                _print_model(client.model(args.user))
        return 0 if info.get("status") == "SUCCEEDED" else 1
    # a deployed API: there is no execution endpoint; poll the model until its version changes
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        time.sleep(5)
        res = client.model(args.user)
        if res.get("active_version") != before:
            if args.json:
                _print_json(res)
            else:
                _print_model(res)
            return 0
    print(f"no new active model after {args.timeout:.0f}s (training may have been skipped or rejected: "
          f"see `calroute status --user {args.user}` and GET /v1/users/{args.user}/models)")
    return 1


def cmd_local(args: argparse.Namespace) -> int:
    from .local.stack import run

    return run(args)


def cmd_invoke(args: argparse.Namespace) -> int:
    from . import invoke

    return invoke.run(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import evaluate

    return int(evaluate.run(args) or 0)


def cmd_export(args: argparse.Namespace) -> int:
    """Reads the stores directly (operators: AWS credentials; the local stack: its emulator), not the
    API: an export may exceed a Lambda response. Table names come from the environment (the
    template's), else from the local stack's template."""
    if not os.environ.get("EVENTS_TABLE"):
        from .local.template import Resolver, load_template

        res = Resolver(load_template(), parameters={"Stage": "local"})  # what `calroute local` deploys
        os.environ.setdefault("AWS_ENDPOINT_URL", f"http://127.0.0.1:{args.aws_port}")
        for logical in ("EventsTable", "UsersTable", "RegistryTable", "PredictionsTable", "UsageTable"):
            env = logical[:-len("Table")].upper() + "_TABLE"
            os.environ[env] = res.physical_name(logical)
        os.environ["MODEL_BUCKET"] = res.physical_name("ModelBucket")
    from calroute import ids, wiring
    from calroute.config import Settings

    user = ids.user_id(args.user, field="--user")
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    n = 0
    try:
        for line in wiring.lifecycle_service(Settings.from_env()).export(user):
            out.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            n += 1
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"{n} lines written to {args.out}", file=sys.stderr)
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    client = _client(args)
    result = client.call("DELETE", client.user_path(args.user))
    if args.json:
        _print_json(result)
    else:
        print(table([[k, v] for k, v in result.get("removed", {}).items()], ["store", "removed"]))
        print(f"erased {args.user}: {result.get('total', 0)} items/object versions (audit {result.get('user_hash', '')[:12]})")
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calroute", description="Per-user calendar routing: local stack and API client.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _api_common()

    p = sub.add_parser("local", help="run the whole service locally (what `make local` runs)")
    p.add_argument("--fresh", action="store_true", help="wipe the local data folder first")
    p.add_argument("--data-dir", default=".calroute-local", help="where the local data persists (default %(default)s)")
    p.add_argument("--port", type=int, default=3000, help="API port (default %(default)s; 0: a free one)")
    p.add_argument("--aws-port", type=int, default=4566, help="AWS emulator (moto) port (default %(default)s; 0: a free one)")
    p.add_argument("--no-demo", action="store_true", help="do not seed/train/classify the demo user")
    p.add_argument("--smoke", action="store_true", help="start, ingest, train, classify, stop; exit 0/1")
    p.add_argument("--auth", choices=("dev", "none"), default="dev",
                   help="dev: x-calroute-user must equal the path's user id (default); none: no check")
    p.add_argument("--demo-user", default="d3_developer", help="folder under data/users to seed (default %(default)s)")
    p.add_argument("--verbose", "-v", action="store_true", help="handler logs and metrics on stdout")
    p.set_defaults(func=cmd_local)

    p = sub.add_parser("import-ics", parents=[common], help="import an .ics file (or a folder of them)")
    p.add_argument("--user", required=True)
    p.add_argument("--calendar", help="calendar id (default: the file stem)")
    p.add_argument("path", help="an .ics file, or a folder with one .ics per calendar")
    p.set_defaults(func=cmd_import_ics)

    p = sub.add_parser("ingest", parents=[common], help="upload labelled events from a JSONL file")
    p.add_argument("--user", required=True)
    p.add_argument("--batch", type=int, default=500, help="events per request (default %(default)s)")
    p.add_argument("file", help="JSONL: one flat labelled event per line (with calendar_id and event_id)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("classify", parents=[common], help="which calendar does an event belong to?")
    p.add_argument("--user", required=True)
    p.add_argument("--event", help="the event as JSON (flat or Google Calendar form), or @file.json")
    p.add_argument("--summary")
    p.add_argument("--start", help="ISO 8601 date or date-time")
    p.add_argument("--end")
    p.add_argument("--location")
    p.add_argument("--description")
    p.add_argument("--remember", action="store_true", help="keep the event with the answer as its label")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("add", parents=[common], help="words to an event draft: slots, confidence, calendar")
    p.add_argument("--user", required=True)
    p.add_argument("--now", help="ISO date-time relative dates are resolved against (default: now)")
    p.add_argument("--timezone", help="IANA zone (default: the user's setting, else UTC)")
    p.add_argument("text", nargs="+", help='what the user says, e.g. "Lunch with Sam tomorrow 1pm at Luna"')
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("evaluate-slots", help="slot extraction on nl_events files: accuracy, confident coverage")
    p.add_argument("--data", action="append", help="a sgd_calendar_<split>.jsonl file (repeatable; "
                   "default: the shared train and dev files)")
    p.add_argument("--llm", choices=("none", "oracle"), default="oracle",
                   help="also run with the stand-in LLM (oracle: answers the gold; an upper bound, not an LLM)")
    p.add_argument("--fit", action="store_true", help="refit calroute/slots/fitted.py on the train file first "
                   "(and confirm it on the *_dev.jsonl beside it: a slot dev does not confirm asks again)")
    p.add_argument("--docs", help="write the tables into this Markdown file (e.g. docs/slots.md)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate_slots)

    p = sub.add_parser("correct", parents=[common], help="record the right calendar of a stored event")
    p.add_argument("--user", required=True)
    p.add_argument("--event-id", required=True)
    p.add_argument("--calendar", required=True)
    p.set_defaults(func=cmd_correct)

    p = sub.add_parser("review", parents=[common], help="the review queue: LLM answers worth confirming")
    p.add_argument("--user", required=True)
    p.add_argument("--limit", type=int, default=10, help="events to show (default %(default)s)")
    p.add_argument("--confirm", nargs="+", metavar="EVENT_ID", help="confirm these events' answers first")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("settings", parents=[common], help="the user's settings (remember by default)")
    p.add_argument("--user", required=True)
    p.add_argument("--remember", choices=("on", "off"),
                   help="classify requests that do not say remember keep their answered events (on) or not")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("replay", help="replay users' events through the services offline: the cascade over time")
    _add_replay_arguments(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("train", parents=[common], help="train a user's model (or fire the schedule: --all)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user")
    who.add_argument("--all", action="store_true", help="local stack: start the state machine with the schedule's input")
    p.add_argument("--no-wait", action="store_true", help="return once started")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait (default %(default)s)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("status", parents=[common], help="the user's model: version, metrics, threshold, gates")
    p.add_argument("--user", required=True)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("stats", parents=[common], help="the user's predictions of the last 7 days")
    p.add_argument("--user", required=True)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("export", help="write all of a user's data as JSON Lines (reads the stores)")
    p.add_argument("--user", required=True)
    p.add_argument("--out", help="file to write (default stdout)")
    p.add_argument("--aws-port", type=int, default=4566, help="local stack emulator port when no table env is set")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("erase", parents=[common], help="erase everything of a user (DELETE /v1/users/U)")
    p.add_argument("--user", required=True)
    p.set_defaults(func=cmd_erase)

    p = sub.add_parser("invoke", help="run one function's handler on an event, like `sam local invoke` (no Docker)")
    _add_invoke_arguments(p)
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser("evaluate", help="offline evaluation on folders of .ics or JSONL (trains locally)")
    if not _SKIP_EVALUATE:  # imported only when the command is `evaluate` (it needs the training extra)
        try:
            from . import evaluate

            evaluate.add_arguments(p)
        except ImportError as exc:  # pragma: no cover - the training extra is not installed
            p.set_defaults(_evaluate_missing=str(exc))
    p.set_defaults(func=cmd_evaluate)
    return parser


def _add_replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder of users: one folder of .ics (or one JSONL) per user")
    p.add_argument("--llm", default="noisy:0.9",
                   help="oracle | noisy:P (right with probability P) | FILE.jsonl of recorded answers "
                        "(default %(default)s)")
    p.add_argument("--correct-rate", type=float, default=0.5,
                   help="probability the simulated user corrects a wrong answer (default %(default)s)")
    p.add_argument("--labelled", type=int, default=20, metavar="K",
                   help="the first K events of each calendar arrive labelled (an import; default %(default)s)")
    p.add_argument("--arms", default="corrections_only,llm_answers,all_answers",
                   help="comma-separated arms (default %(default)s)")
    p.add_argument("--gates", default="10,2,5", metavar="MIN_EVENTS,MIN_CALENDARS,MIN_PER_CALENDAR",
                   help="training gates (default %(default)s; today's were 50,2,10)")
    p.add_argument("--confirm-per-week", type=int, default=0, metavar="N",
                   help="the simulated user answers the review queue's top N once a week, in the arms that "
                        "remember (confirm if right, correct if wrong; default %(default)s)")
    p.add_argument("--users", help="comma-separated user folders to replay (default all)")
    p.add_argument("--quick", action="store_true", help="at most 300 events per user (smoke runs)")
    p.add_argument("--max-events", type=int, help="at most this many events per user")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--plot", metavar="FILE.png", help="also plot LLM share and accuracy per week")


def _add_invoke_arguments(p: argparse.ArgumentParser) -> None:
    from . import invoke  # stdlib-only at module level, like this module

    invoke.add_arguments(p)


def _wants_evaluate(argv: Sequence[str]) -> bool:
    return any(a == "evaluate" for a in argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser() if _wants_evaluate(argv) else _parser_without_evaluate()
    args = parser.parse_args(argv)
    if getattr(args, "_evaluate_missing", None):
        print(f"calroute evaluate needs the training extra: pip install 'calroute[train]' ({args._evaluate_missing})",
              file=sys.stderr)
        return 2
    import urllib.error

    from .local.client import ApiError

    try:
        return int(args.func(args) or 0)
    except ApiError as exc:
        if getattr(args, "json", False):
            _print_json({"status": exc.status, **(exc.body if isinstance(exc.body, dict) else {"body": exc.body})})
        else:
            print(f"calroute: {exc}", file=sys.stderr)
        return 1
    except (ConnectionError, urllib.error.URLError, TimeoutError) as exc:
        api = getattr(args, "api", None) or LOCAL_API
        print(f"calroute: cannot reach {api}: {exc}"
              + (" — is the local stack running? (`make local`)" if api == LOCAL_API else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser_without_evaluate() -> argparse.ArgumentParser:
    """The parser, with `evaluate`'s own arguments left out (importing them costs start-up time)."""
    global _SKIP_EVALUATE
    _SKIP_EVALUATE = True
    try:
        return build_parser()
    finally:
        _SKIP_EVALUATE = False


_SKIP_EVALUATE = False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
