"""``calroute invoke FUNCTION -e EVENT.json`` — ``sam local invoke`` without Docker.

The function is looked up in template.yaml (logical id such as ``PlanFunction``, its physical name,
or its code folder such as ``train_plan``); its handler (``CodeUri`` + ``Handler``) runs in this
process with the function's template environment (Globals + its own variables, ``Stage=local``),
the local stack's overrides (dev auth, no X-Ray, no EMF lines) and, last, ``--env-vars`` (SAM's
format: ``{"Parameters": {...every function...}, "<LogicalId>": {...}}``).

AWS calls go to the running ``make local`` emulator (``--aws-endpoint``, default
``http://127.0.0.1:4566``) when it answers, else to an emulator started for this call (empty tables
and bucket, the functions and state machine of the template; stopped afterwards).

The function's logs (what it writes to stdout/stderr) go to stderr, the response (JSON) to stdout.
Exit status: 0, or 1 when the handler raised (the response is then AWS's ``errorType`` /
``errorMessage`` payload) or an HTTP handler answered 5xx; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

DEFAULT_AWS_ENDPOINT = "http://127.0.0.1:4566"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("function", help="logical id (PlanFunction), physical name or code folder (train_plan)")
    p.add_argument("-e", "--event", help="the event, a JSON file ('-' = stdin; default: {})")
    p.add_argument("-n", "--env-vars", help="SAM-style env.json: {\"Parameters\": {...}, \"<LogicalId>\": {...}}")
    p.add_argument("--aws-endpoint", default=os.environ.get("CALROUTE_AWS_ENDPOINT") or DEFAULT_AWS_ENDPOINT,
                   help="a running emulator to use (default %(default)s, the one of `make local`); "
                        "when it does not answer, one is started for the call")
    p.add_argument("--new-emulator", action="store_true", help="always start an emulator for the call")
    p.add_argument("--auth", choices=("dev", "none"), default="dev", help="AUTH_MODE of the call (default %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the function's logs")


def find_function(specs: dict, name: str):
    """The :class:`~calroute_dev.local.lambdas.FunctionSpec` called ``name`` (logical id, physical
    name or code folder), or None."""
    for spec in specs.values():
        if name in (spec.logical_id, spec.name, spec.code_dir.name):
            return spec
    return None


def load_env_vars(path: Optional[str], logical_id: str) -> dict[str, str]:
    """SAM's ``--env-vars`` file: ``Parameters`` apply to every function, ``<LogicalId>`` to one."""
    if not path:
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a JSON object")
    out: dict[str, str] = {}
    for section in ("Parameters", logical_id):
        values = data.get(section) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: {section} must be an object")
        out.update({str(k): str(v) for k, v in values.items()})
    return out


def emulator_answers(endpoint: str, timeout: float = 1.0) -> bool:
    """Is a moto server listening at ``endpoint``?"""
    try:
        with urllib.request.urlopen(f"{endpoint.rstrip('/')}/moto-api/", timeout=timeout) as resp:  # noqa: S310
            return resp.status < 500
    except Exception:  # noqa: BLE001 - anything but an answer: no emulator there
        return False


@contextmanager
def captured_output(enabled: bool = True) -> Iterator[list[str]]:
    """Capture what is written to file descriptors 1 and 2 (the handler's logs, whichever stream
    its loggers hold) into the one-item list yielded, filled when the block ends."""
    out: list[str] = []
    if not enabled:
        yield out
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def invoke(spec: Any, event: Any, env: dict[str, str]) -> tuple[Any, bool]:
    """Run ``spec``'s handler on ``event`` with ``env`` set in this process; returns (the response or
    AWS's error payload, whether it is an error). The environment is restored afterwards."""
    from calroute.config import settings

    from .local import restore_environ
    from .local.lambdas import LambdaContext, error_payload, load_module

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings.cache_clear()
    try:
        handler = getattr(load_module(spec), spec.handler.rpartition(".")[2])
        result = handler(event, LambdaContext(spec))
        return json.loads(json.dumps(result, default=str)), False
    except Exception as exc:  # noqa: BLE001 - becomes the Unhandled payload, like AWS
        return error_payload(exc), True
    finally:
        restore_environ(saved)
        settings.cache_clear()


def is_failure(response: Any, error: bool) -> bool:
    """An unhandled error, or an HTTP handler's 5xx."""
    if error:
        return True
    return isinstance(response, dict) and isinstance(response.get("statusCode"), int) and response["statusCode"] >= 500


def call_environment(spec: Any, env_vars: dict[str, str], auth: str = "dev") -> dict[str, str]:
    """The environment of one call: the template's, the local stack's overrides, then ``env_vars``."""
    from .local.stack import local_overrides

    env = dict(spec.environment)
    env.update(local_overrides(auth))
    env.update(env_vars)
    return env


def run(args: argparse.Namespace) -> int:
    from .local.lambdas import function_specs
    from .local.template import Resolver, load_template

    resolver = Resolver(load_template(), parameters={"Stage": "local"})
    specs = function_specs(resolver, include_defaults=False)
    spec = find_function(specs, args.function)
    if spec is None:
        print(f"calroute invoke: no function {args.function!r} in template.yaml; one of: "
              + ", ".join(sorted(specs)), file=sys.stderr)
        return 2
    try:
        if not args.event:
            event: Any = {}
        elif args.event == "-":
            event = json.load(sys.stdin)
        else:
            event = json.loads(Path(args.event).read_text(encoding="utf-8"))
        env_vars = load_env_vars(args.env_vars, spec.logical_id)
    except (OSError, ValueError) as exc:
        print(f"calroute invoke: {exc}", file=sys.stderr)
        return 2

    import logging
    import warnings

    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.ERROR)  # "... have no effect" notes
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    emulator = None
    saved_endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not args.new_emulator and emulator_answers(args.aws_endpoint):
        endpoint = args.aws_endpoint
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(k, "testing")
        where = f"the running emulator {endpoint}"
    else:
        from .local.moto_server import start_emulator

        with captured_output():  # moto's start-up chatter is not the function's log
            emulator = start_emulator(0, parameters={"Stage": "local"})
        where = f"an emulator started for this call ({emulator.endpoint}, empty tables)"
    try:
        if not args.quiet:
            print(f"invoking {spec.logical_id} ({spec.code_dir.relative_to(spec.code_dir.parents[1])}/"
                  f"{spec.handler}) against {where}", file=sys.stderr)
        with captured_output() as logs:
            response, error = invoke(spec, event, call_environment(spec, env_vars, args.auth))
        if logs and logs[0].strip() and not args.quiet:
            sys.stderr.write(logs[0] if logs[0].endswith("\n") else logs[0] + "\n")
            sys.stderr.flush()
        print(json.dumps(response, indent=2, ensure_ascii=False, default=str))
        return 1 if is_failure(response, error) else 0
    finally:
        if emulator is not None:
            emulator.stop()
        elif saved_endpoint is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = saved_endpoint
