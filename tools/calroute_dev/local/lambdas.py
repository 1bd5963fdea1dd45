"""In-process Lambda dispatch for moto.

moto cannot run Lambda code without Docker. This module patches moto's Lambda backend so that
invoking one of *our* functions (every ``AWS::Serverless::Function`` of template.yaml) runs the real
handler — ``functions/<dir>/app.py`` loaded by path from the template's ``CodeUri`` + ``Handler`` —
in the moto server's process, with that function's template environment applied.

A handler exception becomes what AWS returns for an unhandled error: the ``X-Amz-Function-Error:
Unhandled`` header and a ``{"errorType", "errorMessage", "stackTrace"}`` payload, so that ``Retry``
and ``Catch`` in the state machine behave as they do in AWS.

Environment: every function gets the template's Globals + its own variables. Keys on which all
functions agree are applied to ``os.environ`` once (:meth:`InProcessLambdas.apply_common_env`);
keys that differ between functions are swapped in under a lock for the duration of one invocation.

Nothing here is shipped in a layer.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import restore_environ
from .template import ACCOUNT, ROOT, Resolver, function_environment

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")

# The training functions and their code dirs (the template's logical ids). Used only when the
# template does not (yet) declare them, so the emulator still runs the state machine.
DEFAULT_FUNCTIONS = {
    "PlanFunction": "functions/train_plan",
    "TrainUserFunction": "functions/train_user",
    "ValidateFunction": "functions/validate",
    "PromoteFunction": "functions/promote",
    "SummarizeFunction": "functions/summarize",
    "ModelsFunction": "functions/models",
}


_CURRENT = threading.local()


def current_function() -> Optional[str]:
    """The logical id of the function whose handler this thread is running (None outside one)."""
    return getattr(_CURRENT, "function", None)


@dataclass
class FunctionSpec:
    """One function of the template, as the emulator runs it."""

    logical_id: str
    name: str  # physical FunctionName
    arn: str
    code_dir: Path
    handler: str  # "app.lambda_handler"
    environment: dict[str, str] = field(default_factory=dict)
    timeout: int = 15
    memory: int = 512

    @property
    def module_name(self) -> str:
        # the same name tests' ``load_handler(<dir>)`` uses, so a monkeypatched module is the one run
        return f"calroute_fn_{self.code_dir.name}"


def _globals(resolver: Resolver) -> dict:
    return (resolver.template.get("Globals") or {}).get("Function") or {}


def function_specs(resolver: Resolver, *, include_defaults: bool = True) -> dict[str, FunctionSpec]:
    """Every function of the template, keyed by logical id (plus :data:`DEFAULT_FUNCTIONS` the
    template does not declare, when ``include_defaults``)."""
    glob = _globals(resolver)
    out: dict[str, FunctionSpec] = {}
    funcs = dict(resolver.of_type(*FUNCTION_TYPES))
    for logical, res in funcs.items():
        props = res.get("Properties") or {}
        code = props.get("CodeUri") or glob.get("CodeUri")
        if not isinstance(code, str):
            continue  # inline or S3 code: not ours to run
        handler = props.get("Handler") or glob.get("Handler") or "app.lambda_handler"
        out[logical] = FunctionSpec(
            logical_id=logical,
            name=resolver.physical_name(logical),
            arn=resolver.arn(logical),
            code_dir=(ROOT / code).resolve(),
            handler=str(handler),
            environment=function_environment(resolver, logical),
            timeout=int(props.get("Timeout") or glob.get("Timeout") or 15),
            memory=int(props.get("MemorySize") or glob.get("MemorySize") or 512),
        )
    if include_defaults:
        for logical, code in DEFAULT_FUNCTIONS.items():
            if logical in out:
                continue
            name = f"{resolver.pseudo['AWS::StackName']}-{logical}"
            env = {}
            glob_env = (glob.get("Environment") or {}).get("Variables") or {}
            for k, v in glob_env.items():
                try:
                    env[k] = str(resolver.resolve(v))
                except KeyError:
                    continue
            out[logical] = FunctionSpec(
                logical_id=logical, name=name,
                arn=f"arn:aws:lambda:{resolver.pseudo['AWS::Region']}:123456789012:function:{name}",
                code_dir=(ROOT / code).resolve(), handler="app.lambda_handler", environment=env,
            )
    return out


_LOAD_LOCK = threading.RLock()


def load_module(spec: FunctionSpec):
    """Import ``<code_dir>/<module>.py`` under a unique module name (cached in ``sys.modules``).

    Serialised: two concurrent first invocations (a Distributed Map with MaxConcurrency > 1) must
    not see each other's half-executed module."""
    with _LOAD_LOCK:
        return _load_module(spec)


def _load_module(spec: FunctionSpec):
    mod_file, _, _ = spec.handler.rpartition(".")
    mod_name = spec.module_name if mod_file == "app" else f"{spec.module_name}_{mod_file}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    path = spec.code_dir / (mod_file.replace(".", "/") + ".py")
    ispec = importlib.util.spec_from_file_location(mod_name, path)
    if ispec is None or ispec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(ispec)
    sys.modules[mod_name] = mod
    try:
        ispec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return mod


class LambdaContext:
    """What Powertools reads from the Lambda context object: for a function of the template
    (``LambdaContext(spec)``), or a stand-in for tests and benchmarks (``LambdaContext()``)."""

    def __init__(self, spec: Optional[FunctionSpec] = None, clock: Callable[[], float] = time.monotonic,
                 *, name: str = "calroute-test", memory: int = 512, timeout: float = 30.0):
        if spec is not None:
            name, memory, timeout = spec.name, spec.memory, spec.timeout
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn if spec is not None else f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
        self.memory_limit_in_mb = memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._clock = clock
        self._deadline = clock() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock()) * 1000))


def error_payload(exc: BaseException) -> dict:
    """The payload AWS returns for an unhandled exception."""
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc)[:4000],
        "stackTrace": traceback.format_exception(exc)[-5:],
    }


class InProcessLambdas:
    """Runs our functions' real handlers when moto's Lambda backend is invoked."""

    def __init__(self, resolver: Resolver, specs: Optional[dict[str, FunctionSpec]] = None):
        self.resolver = resolver
        self.specs = specs if specs is not None else function_specs(resolver)
        self._by_name = {s.name: s for s in self.specs.values()}
        self._by_name.update({s.arn: s for s in self.specs.values()})
        self._env_lock = threading.Lock()
        self.common_env, self._own_env = self._split_env()
        self.invocations: list[dict] = []  # (function, duration, error) of every dispatched call
        self._inv_lock = threading.Lock()
        self._patched: list[tuple[type, Callable]] = []
        self._saved_env: dict[str, Optional[str]] = {}

    # --- environment ---
    def _split_env(self) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        values: dict[str, set] = {}
        for s in self.specs.values():
            for k, v in s.environment.items():
                values.setdefault(k, set()).add(v)
        # a key is common if every function that sets it sets the same value
        common = {k: next(iter(vs)) for k, vs in values.items() if len(vs) == 1}
        own = {s.logical_id: {k: v for k, v in s.environment.items() if k not in common}
               for s in self.specs.values()}
        return common, own

    def apply_common_env(self) -> None:
        for k, v in self.common_env.items():
            self._saved_env.setdefault(k, os.environ.get(k))
            os.environ[k] = v
        _clear_settings()

    def restore_env(self) -> None:
        restore_environ(self._saved_env)
        self._saved_env.clear()
        _clear_settings()

    # --- dispatch ---
    def spec_for(self, function_name: str) -> Optional[FunctionSpec]:
        name = function_name.split(":function:")[-1].split(":")[0] if ":function:" in function_name else function_name
        return self._by_name.get(function_name) or self._by_name.get(name)

    def call(self, spec: FunctionSpec, event: Any) -> tuple[bytes, Optional[str]]:
        """Run the handler; returns (payload bytes, function error or None). Records the call's wall
        and thread CPU seconds; :func:`current_function` names the function while it runs."""
        t0 = time.perf_counter()
        c0 = time.thread_time()
        outer = current_function()  # a handler may invoke another one in-process (predict → LLM)
        _CURRENT.function = spec.logical_id
        err: Optional[str] = None
        own = self._own_env.get(spec.logical_id) or {}
        try:
            handler = getattr(load_module(spec), spec.handler.rpartition(".")[2])
            if own:
                with self._env_lock:  # keys that differ between functions: swap for this call
                    saved = {k: os.environ.get(k) for k in own}
                    os.environ.update(own)
                    _clear_settings()
                    try:
                        result = handler(event, LambdaContext(spec))
                    finally:
                        restore_environ(saved)
                        _clear_settings()
            else:
                result = handler(event, LambdaContext(spec))
            payload = json.dumps(result, default=str).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - becomes an Unhandled function error, like AWS
            err = "Unhandled"
            payload = json.dumps(error_payload(exc)).encode("utf-8")
        cpu = time.thread_time() - c0
        _CURRENT.function = outer
        with self._inv_lock:
            self.invocations.append({"function": spec.logical_id, "seconds": time.perf_counter() - t0,
                                     "cpu_seconds": cpu, "error": err})
        return payload, err

    def invoke(self, function_name: str, event: Any) -> Any:
        """Convenience for tests: call a function by name/ARN and decode its JSON result."""
        spec = self.spec_for(function_name)
        if spec is None:
            raise KeyError(function_name)
        payload, err = self.call(spec, event)
        body = json.loads(payload)
        if err:
            raise RuntimeError(f"{body['errorType']}: {body['errorMessage']}")
        return body

    # --- moto patching ---
    def install(self) -> "InProcessLambdas":
        from moto.awslambda.models import LambdaBackend

        classes: list[type] = [LambdaBackend]
        try:
            from moto.awslambda_simple.models import LambdaSimpleBackend

            classes.append(LambdaSimpleBackend)
        except ImportError:  # pragma: no cover
            pass
        dispatcher = self
        for cls in classes:
            original = cls.__dict__["invoke"]

            def patched(backend, function_name, qualifier, body, headers, response_headers,
                        _original=original):
                fn = None
                try:
                    fn = backend.get_function(function_name, qualifier)
                except Exception:  # noqa: BLE001 - unknown function: let moto answer
                    pass
                spec = dispatcher.spec_for(fn.function_name if fn is not None else function_name)
                if spec is None:
                    return _original(backend, function_name, qualifier, body, headers, response_headers)
                event = json.loads(body) if body else {}
                inv_type = (headers or {}).get("X-Amz-Invocation-Type") or (headers or {}).get(
                    "x-amz-invocation-type", "RequestResponse")
                if inv_type == "Event":
                    threading.Thread(target=dispatcher.call, args=(spec, event), daemon=True).start()
                    response_headers["Content-Length"] = "0"
                    return b""
                payload, err = dispatcher.call(spec, event)
                if err:
                    response_headers["x-amz-function-error"] = err
                response_headers["x-amz-executed-version"] = "$LATEST"
                response_headers["x-amz-log-result"] = base64.b64encode(b"in-process").decode()
                response_headers["Content-Length"] = str(len(payload))
                return payload

            cls.invoke = patched  # type: ignore[method-assign]
            self._patched.append((cls, original))
        return self

    def uninstall(self) -> None:
        for cls, original in self._patched:
            cls.invoke = original  # type: ignore[method-assign]
        self._patched.clear()


_installed: Optional[InProcessLambdas] = None


def install_inprocess_lambdas(resolver: Resolver, *, apply_env: bool = True) -> InProcessLambdas:
    """Patch moto so invoking any function of the template runs its real handler in-process.

    Replaces a previous installation. Returns the dispatcher (``.invocations`` records every call,
    ``.uninstall()`` removes the patch, ``.restore_env()`` undoes the environment).
    """
    global _installed
    if _installed is not None:
        _installed.uninstall()
    lambdas = InProcessLambdas(resolver)
    if apply_env:
        lambdas.apply_common_env()
    _installed = lambdas.install()
    return lambdas


def _clear_settings() -> None:
    try:
        from calroute.config import settings

        settings.cache_clear()
    except ImportError:  # pragma: no cover
        pass
