"""The AWS emulation harness: a moto server on 127.0.0.1 with calroute's resources and the REAL
Step Functions interpreter, whose Lambda tasks run our real handlers in-process.

``start_emulator(port)``:

1. starts moto's ``ThreadedMotoServer`` on ``127.0.0.1:<port>`` (``port=0``: the server binds a port
   the OS picks and the emulator reads it back, so two emulators started at once never collide) and
   points this process at it (``AWS_ENDPOINT_URL``; ``MOTO_PORT``, which moto's ASL interpreter uses
   for its own boto3 clients);
2. enables real ASL execution (``POST /moto-api/config {"stepfunctions": {"execute_state_machine": true}}``);
3. creates the DynamoDB tables and the S3 bucket of template.yaml
   (:func:`calroute_dev.local.template.create_data_resources`), optionally restoring a snapshot from
   ``persist_dir``;
4. creates every function of the template in moto's Lambda (a dummy zip and an IAM role) and
   patches the Lambda backend so an invoke runs the real handler (:mod:`calroute_dev.local.lambdas`);
5. creates the state machine from ``infra/statemachine/training.asl.json`` with its
   ``DefinitionSubstitutions`` resolved, rewritten for moto by :mod:`calroute_dev.local.asl_compat`
   (moto 5 parses neither ``ItemBatcher`` nor ``"ExecutionType": "EXPRESS"``: the batcher is
   emulated by a patch of moto's Distributed Map, the Express children run as moto child executions).

Before the server starts, :mod:`calroute_dev.local.moto_speed` removes two costs of moto's DynamoDB that
DynamoDB does not have (a table query walking every item of the table, a slow response serializer),
with the same answers: they were most of the training handlers' wall time here.

moto keeps everything in memory; with ``persist_dir`` the tables and bucket are written there by
:meth:`Emulator.snapshot` / :meth:`Emulator.stop` and restored on the next start.

Nothing here is shipped in a layer.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import asl_compat, moto_speed, restore_environ
from .lambdas import InProcessLambdas, function_specs, install_inprocess_lambdas
from .template import ACCOUNT, ROOT, Resolver, create_data_resources, load_template

ASL_PATH = ROOT / "infra" / "statemachine" / "training.asl.json"
STATE_MACHINE_LOGICAL = "TrainingStateMachine"
ROLE_NAME = "calroute-local-role"
DEFAULT_MAX_CONCURRENCY = "4"
DEFAULT_USERS_PER_BATCH = "10"
_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}

_ASSUME = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "sts:AssumeRole",
    "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]}}]})


def _dummy_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def lambda_handler(event, context):\n    return event\n")
    return buf.getvalue()


@dataclass
class Emulator:
    """A running emulator. ``stop()`` shuts it down and restores the environment."""

    endpoint: str
    port: int
    resolver: Resolver
    state_machine_arn: str
    lambdas: InProcessLambdas
    region: str = "us-east-1"
    persist_dir: Optional[str] = None
    server: Any = None
    #: the definition as deployed (substitutions resolved; before the asl_compat rewrite for moto)
    definition: str = ""
    _saved_env: dict = field(default_factory=dict)
    _sfn_config: Optional[bool] = None
    # variables set after the in-process Lambdas applied the template's common environment: restored
    # first (last in, first out), or the common value they replaced would outlive the emulator
    _late_env: dict = field(default_factory=dict)

    def client(self, service: str):
        import boto3

        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint)

    @property
    def resources(self) -> dict[str, str]:
        """Physical names of the data resources."""
        r = self.resolver
        return {k: r.physical_name(k) for k in r.of_type("AWS::DynamoDB::Table", "AWS::S3::Bucket")}

    def snapshot(self) -> None:
        if self.persist_dir:
            save_snapshot(self, Path(self.persist_dir))

    def stop(self) -> None:
        try:
            self.snapshot()
        finally:
            self.lambdas.uninstall()
            asl_compat.uninstall_item_batcher()
            moto_speed.uninstall()
            if self.server is not None:
                self.server.stop()
                self.server = None
            _restore_sfn_config(self._sfn_config)
            restore_environ(self._late_env)
            self.lambdas.restore_env()
            restore_environ(self._saved_env)
            _reset_clients()

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class MotoServer:
    """moto's WSGI app served by werkzeug on a thread, like ``moto.server.ThreadedMotoServer``, but the
    socket is bound in the constructor, in the caller's thread: ``port=0`` binds a port the OS picks and
    :attr:`port` is the one bound (no probe-then-release race), and a port in use raises ``OSError``
    here (``ThreadedMotoServer.start()`` waits for ever when its thread fails to bind: werkzeug exits
    that thread). ``stop()`` also closes the listening socket."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                                   create_backend_app)
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        try:
            self._server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        except SystemExit as exc:  # werkzeug prints "Port N is in use ..." and exits
            raise OSError(f"cannot bind the AWS emulator to {host}:{port} (in use?)") from exc
        self.host, self.port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"moto-{self.port}", daemon=True)

    def start(self) -> "MotoServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def _sfn_execute_flag() -> Optional[bool]:
    from moto.core.config import default_user_config

    return (default_user_config.get("stepfunctions") or {}).get("execute_state_machine")


def _restore_sfn_config(value: Optional[bool]) -> None:
    """moto's config is process-global: later in-process ``mock_aws`` users get the old behaviour back."""
    from moto.core.config import default_user_config

    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = bool(value)


def _reset_clients() -> None:
    """Adapters cache boto3 clients and handler modules keep their services (and so their clients)
    for the container's life: a new emulator (a new endpoint) gets new ones of both, or a handler
    loaded against an earlier emulator would keep calling its closed port."""
    import sys

    from calroute.adapters.dynamo.base import reset_shared_tables
    from calroute.config import settings

    reset_shared_tables()
    settings.cache_clear()
    for name in [m for m in sys.modules if m.startswith("calroute_fn_")]:
        del sys.modules[name]


def _set_env(saved: dict, key: str, value: str) -> None:
    saved.setdefault(key, os.environ.get(key))
    os.environ[key] = value


def state_machine_definition(resolver: Resolver, specs: dict, *, max_concurrency: Optional[str] = None,
                             users_per_batch: Optional[str] = None) -> str:
    """The ASL file with the template's ``DefinitionSubstitutions`` resolved (as deployed; the
    emulator runs :func:`calroute_dev.local.asl_compat.for_moto` of it)."""
    text = ASL_PATH.read_text(encoding="utf-8")
    subs: dict[str, str] = {}
    sm = (resolver.resources.get(STATE_MACHINE_LOGICAL) or {}).get("Properties") or {}
    for k, v in (sm.get("DefinitionSubstitutions") or {}).items():
        try:
            subs[k] = str(resolver.resolve(v))
        except KeyError:
            continue
    # defaults when the template does not declare them (the emulator still runs the machine)
    for logical, spec in specs.items():
        subs.setdefault(f"{logical}Arn", spec.arn)
    if "ModelBucket" in resolver.resources:
        subs.setdefault("ModelBucketName", resolver.physical_name("ModelBucket"))
    subs.setdefault("MaxConcurrency", DEFAULT_MAX_CONCURRENCY)
    subs.setdefault("UsersPerBatch", DEFAULT_USERS_PER_BATCH)
    if max_concurrency is not None:
        subs["MaxConcurrency"] = str(max_concurrency)
    if users_per_batch is not None:
        subs["UsersPerBatch"] = str(users_per_batch)
    for k, v in subs.items():
        text = text.replace("${" + k + "}", v)
    json.loads(text)  # fail early on an unresolved placeholder
    return text


def start_emulator(port: int = 4566, *, persist_dir: Optional[str] = None, stack_name: str = "calroute-local",
                   parameters: Optional[dict] = None, region: str = "us-east-1",
                   max_concurrency: Optional[int] = None, users_per_batch: Optional[int] = None,
                   verbose: bool = False, reset: bool = True) -> Emulator:
    """Start moto on 127.0.0.1:``port`` with calroute's resources and in-process Lambda dispatch.

    ``port=0`` lets the server bind a free port itself (no probe-then-release race); the bound port is
    ``Emulator.port`` (and in ``Emulator.endpoint``).

    Sets ``AWS_ENDPOINT_URL`` (all boto3 clients of this process go to the emulator), ``MOTO_PORT``,
    region and dummy credentials if none are set, and the template's function environment (table
    and bucket names, ...); ``stop()`` restores them. moto's state is process-global: with ``reset``
    (the default) a new emulator starts empty (then restores ``persist_dir``), whatever an earlier
    one in this process left behind.
    """
    import boto3
    import requests

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    saved: dict = {}
    late: dict = {}
    lambdas = None
    sfn_flag = _sfn_execute_flag()
    if reset:
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
    moto_speed.install()
    server = MotoServer("127.0.0.1", port).start()
    port = server.port  # the port the server bound (port=0: the one the OS picked)
    if verbose:
        print(f"moto server on 127.0.0.1:{port}")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _set_env(saved, "AWS_ENDPOINT_URL", endpoint)
        _set_env(saved, "MOTO_PORT", str(port))
        _set_env(saved, "AWS_DEFAULT_REGION", region)
        _set_env(saved, "AWS_REGION", region)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if not os.environ.get(k):
                _set_env(saved, k, "testing")
        _set_env(saved, "POWERTOOLS_TRACE_DISABLED", os.environ.get("POWERTOOLS_TRACE_DISABLED") or "true")
        resp = requests.post(f"{endpoint}/moto-api/config",
                             json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
        resp.raise_for_status()

        resolver = Resolver(load_template(), parameters=parameters, region=region, stack_name=stack_name)
        sess = boto3.session.Session(region_name=region)
        create_data_resources(resolver, session=sess, endpoint_url=endpoint)
        if persist_dir:
            load_snapshot(resolver, Path(persist_dir), endpoint, region)

        specs = function_specs(resolver)
        iam = sess.client("iam", endpoint_url=endpoint)
        try:
            role_arn = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=_ASSUME)["Role"]["Arn"]
        except iam.exceptions.EntityAlreadyExistsException:
            role_arn = iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
        lam = sess.client("lambda", endpoint_url=endpoint)
        code = _dummy_zip()
        for spec in specs.values():
            try:
                lam.create_function(FunctionName=spec.name, Runtime="python3.12", Role=role_arn,
                                    Handler=spec.handler, Code={"ZipFile": code}, Timeout=spec.timeout,
                                    MemorySize=spec.memory,
                                    Environment={"Variables": spec.environment})
            except lam.exceptions.ResourceConflictException:
                pass
        lambdas = install_inprocess_lambdas(resolver)

        sfn = sess.client("stepfunctions", endpoint_url=endpoint)
        sm_name = (resolver.physical_name(STATE_MACHINE_LOGICAL) if STATE_MACHINE_LOGICAL in resolver.resources
                   else f"{stack_name}-{STATE_MACHINE_LOGICAL}")
        definition = state_machine_definition(
            resolver, specs, max_concurrency=None if max_concurrency is None else str(max_concurrency),
            users_per_batch=None if users_per_batch is None else str(users_per_batch))
        moto_definition, batchers, writers = asl_compat.for_moto(definition)
        asl_compat.install_item_batcher()
        existing = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
        if sm_name in existing:
            sm_arn = existing[sm_name]
            sfn.update_state_machine(stateMachineArn=sm_arn, definition=moto_definition)
        else:
            sm_arn = sfn.create_state_machine(name=sm_name, definition=moto_definition, roleArn=role_arn,
                                              type="STANDARD")["stateMachineArn"]
        asl_compat.register(sm_arn, batchers, writers)
        _set_env(late, "STATE_MACHINE_ARN", sm_arn)
        # the functions' env (from the template) may name the machine by its resolved ARN already
        _reset_clients()
    except BaseException:
        server.stop()
        asl_compat.uninstall_item_batcher()
        moto_speed.uninstall()
        _restore_sfn_config(sfn_flag)
        restore_environ(late)
        if lambdas is not None:
            lambdas.uninstall()
            lambdas.restore_env()
        restore_environ(saved)
        raise
    return Emulator(endpoint=endpoint, port=port, resolver=resolver, state_machine_arn=sm_arn,
                    lambdas=lambdas, region=region, persist_dir=persist_dir, server=server,
                    definition=definition, _saved_env=saved, _sfn_config=sfn_flag, _late_env=late)


def run_training(emulator: Emulator, input: dict, *, name: Optional[str] = None, timeout: float = 300.0,
                 state_machine_arn: Optional[str] = None,
                 poll_seconds: float = 0.1, progress: Optional[Callable[[str], None]] = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> dict:
    """Start an execution of the training state machine and wait for it to finish.

    Returns ``{"status", "output" (decoded), "execution_arn", "seconds", "error", "cause"}``.
    ``state_machine_arn``: another machine of the emulator (:func:`create_variant`); default the template's.
    ``progress`` receives a line whenever the execution's status or its number of history events
    changes.
    """
    sfn = emulator.client("stepfunctions")
    # always name the execution (moto leaves an unnamed one as "None"); the name becomes the run id
    name = name or (input.get("run_id") if isinstance(input.get("run_id"), str) else None) or (
        f"run-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{os.urandom(3).hex()}")
    kwargs: dict = {"stateMachineArn": state_machine_arn or emulator.state_machine_arn, "input": json.dumps(input),
                    "name": name}
    arn = sfn.start_execution(**kwargs)["executionArn"]
    t0 = clock()
    last = None
    while True:
        desc = sfn.describe_execution(executionArn=arn)
        status = desc["status"]
        if progress is not None:
            n_calls = len(emulator.lambdas.invocations)
            line = f"[{clock() - t0:6.1f}s] {status} ({n_calls} lambda invocations)"
            if (status, n_calls) != last:
                progress(line)
                last = (status, n_calls)
        if status in _TERMINAL:
            break
        if clock() - t0 > timeout:
            raise TimeoutError(f"execution {arn} still {status} after {timeout:.0f}s")
        sleep(poll_seconds)
    output = desc.get("output")
    return {
        "status": status,
        "execution_arn": arn,
        "output": json.loads(output) if output else None,
        "error": desc.get("error"),
        "cause": desc.get("cause"),
        "seconds": round(clock() - t0, 3),
    }


def create_variant(emulator: Emulator, name: str, definition: str) -> str:
    """Create (or update) another state machine ``name`` in the emulator from ``definition`` (deployed
    ASL, substitutions resolved; rewritten by :mod:`asl_compat` like the template's machine), e.g. the
    one-user-per-child definition the bench compares with. Returns its ARN."""
    sfn = emulator.client("stepfunctions")
    moto_definition, batchers, writers = asl_compat.for_moto(definition)
    existing = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    if name in existing:
        arn = existing[name]
        sfn.update_state_machine(stateMachineArn=arn, definition=moto_definition)
    else:
        role = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
        arn = sfn.create_state_machine(name=name, definition=moto_definition, roleArn=role,
                                       type="STANDARD")["stateMachineArn"]
    asl_compat.register(arn, batchers, writers)
    return arn


# ----------------------------------------------------------------------------- persistence


def _data_names(resolver: Resolver) -> tuple[list[str], list[str]]:
    tables = [resolver.physical_name(k) for k in resolver.of_type("AWS::DynamoDB::Table")]
    buckets = [resolver.physical_name(k) for k in resolver.of_type("AWS::S3::Bucket")]
    return tables, buckets


def save_snapshot(emulator: Emulator, directory: Path) -> None:
    """Write the template's tables and bucket to ``directory`` (:func:`calroute_dev.local.persist.dump`)."""
    from . import persist

    tables, buckets = _data_names(emulator.resolver)
    persist.dump(directory, tables, buckets, endpoint_url=emulator.endpoint)


def load_snapshot(resolver: Resolver, directory: Path, endpoint: str, region: str) -> None:
    """Restore what :func:`save_snapshot` wrote (no snapshot: nothing to do)."""
    from . import persist

    tables, buckets = _data_names(resolver)
    persist.restore(directory, endpoint_url=endpoint, tables=tables, buckets=buckets)


__all__ = ["Emulator", "MotoServer", "start_emulator", "run_training", "create_variant", "install_inprocess_lambdas",
           "state_machine_definition", "save_snapshot", "load_snapshot", "ACCOUNT"]
