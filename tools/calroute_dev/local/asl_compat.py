"""What moto 5's ASL interpreter lacks and the training state machine uses, emulated faithfully.

moto's ASL grammar (``moto.stepfunctions.parser``, moto 5.2) knows neither ``ItemBatcher`` nor
``"ExecutionType": "EXPRESS"`` (its lexer has a ``STANDARD`` token only): the definition as written
is a syntax error there. :func:`for_moto` rewrites a definition into one moto parses and records
what it removed; :func:`install_item_batcher` patches moto's Distributed Map so the removed
``ItemBatcher`` still groups the items exactly as Step Functions does:

* **ItemBatcher** ``{"MaxItemsPerBatch": N}``: the items the ``ItemReader`` read (or ``ItemsPath``
  selected) are cut, in order, into consecutive groups of at most N, and each child workflow gets
  ``{"Items": [...]}`` as its input (the documented batch input shape). ``BatchInput``,
  ``MaxInputBytesPerBatch``, the ``...Path`` variants and ``ItemSelector`` next to a batcher are not
  emulated: :func:`for_moto` refuses them (:class:`UnsupportedAsl`) rather than run something else.
* **EXPRESS children** run as moto STANDARD child executions. What the definition relies on is the
  same for both types (states, ``Retry``/``Catch``, ``TimeoutSeconds``, the child's output as the
  Map's result); what differs is not emulated: the 5-minute limit of an Express execution (the bench
  reports the longest batch against it), Express billing, and where the history goes.
* The tolerated-failure threshold of a batched Map counts failed *items* in AWS and failed *child
  executions* in moto; the training machine tolerates 100 %, where both agree.
* **ResultWriter** ``{"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket",
  "Prefix" | "Prefix.$"}}``: moto 5 writes an empty manifest (no result files) and evaluates
  ``Prefix.$`` against the Map's result instead of its input. :func:`for_moto` removes the writer
  (recorded like the batcher) and the patched Map writes what Step Functions documents: one JSON
  array per child status, ``<Prefix>/<map run id>/SUCCEEDED_0.json`` (``FAILED_0.json``,
  ``PENDING_0.json`` when there are such children), one entry per child execution (``ExecutionArn``,
  ``Name``, ``Input`` and, succeeded, ``Output`` as JSON strings, ``InputDetails``/``OutputDetails``,
  ``Status``, ``StartDate``/``StopDate``, ``StateMachineArn``, ``RedriveCount``/``RedriveStatus``,
  ``Error``/``Cause`` when failed), then ``<Prefix>/<map run id>/manifest.json``
  (``DestinationBucket``, ``MapRunArn``, ``ResultFiles: {FAILED, PENDING, SUCCEEDED: [{Key, Size}]}``),
  and the Map's result becomes ``{"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}``.
  ``Prefix.$`` is a ``$.field`` path evaluated against the Map's input. Not emulated (refused):
  ``WriterConfig`` (other than the default ``JSON``/``NONE``), ``Parameters`` paths other than
  ``Prefix.$``, JSONata ``Arguments``. Approximated: moto keeps neither a failed child's error (a
  FAILED entry says ``LocalEmulator.ChildFailed``) nor per-child times (the Map run's are used), and
  the 5 GB split of a result file into ``_1``, ``_2``... (one file per status here).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

#: (state machine ARN, Map state name) -> MaxItemsPerBatch, for the definitions made by for_moto
_BATCHERS: dict[tuple[str, str], int] = {}
#: (state machine ARN, Map state name) -> the ResultWriter's Parameters, for the definitions made by for_moto
_WRITERS: dict[tuple[str, str], dict] = {}
_S3_PUT_OBJECT = "arn:aws:states:::s3:putObject"
_FIELD_PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_DEFAULT_WRITER_CONFIG = {"OutputType": "JSON", "Transformation": "NONE"}
_LOCK = threading.Lock()
_ORIGINAL: dict[str, Any] = {}
_UNSUPPORTED_BATCHER_FIELDS = ("BatchInput", "MaxInputBytesPerBatch", "MaxItemsPerBatchPath",
                               "MaxInputBytesPerBatchPath")


class UnsupportedAsl(ValueError):
    """A construct the local runner would not execute as Step Functions does."""


def batches(items: list, size: int) -> list[dict]:
    """``items`` as Step Functions' ItemBatcher hands them to child workflows: consecutive groups of
    at most ``size`` items, in order, each ``{"Items": [...]}``."""
    if size < 1:
        raise ValueError("MaxItemsPerBatch must be ≥ 1")
    return [{"Items": list(items[i:i + size])} for i in range(0, len(items), size)]


def _maps(states: dict) -> Iterator[tuple[str, dict]]:
    for name, st in states.items():
        if st.get("Type") == "Map":
            yield name, st
            proc = st.get("ItemProcessor") or st.get("Iterator") or {}
            yield from _maps(proc.get("States") or {})
        elif st.get("Type") == "Parallel":
            for branch in st.get("Branches") or []:
                yield from _maps(branch.get("States") or {})


def _writer(name: str, st: dict, distributed: bool) -> Optional[dict]:
    """The ResultWriter of Map state ``name`` removed from ``st``, checked: its Parameters."""
    writer = st.pop("ResultWriter", None)
    if writer is None:
        return None
    if not distributed:
        raise UnsupportedAsl(f"{name}: ResultWriter is only valid in a Distributed Map")
    config = writer.get("WriterConfig")
    if config is not None and {**_DEFAULT_WRITER_CONFIG, **config} != _DEFAULT_WRITER_CONFIG:
        raise UnsupportedAsl(f"{name}: the local runner does not emulate WriterConfig {config}")
    if writer.get("Resource") != _S3_PUT_OBJECT or set(writer) - {"Resource", "Parameters", "WriterConfig"}:
        raise UnsupportedAsl(f"{name}: only a ResultWriter {{Resource: {_S3_PUT_OBJECT}, Parameters}} is emulated")
    params = dict(writer.get("Parameters") or {})
    if not isinstance(params.get("Bucket"), str) or set(params) - {"Bucket", "Prefix", "Prefix.$"} \
            or ("Prefix" in params and "Prefix.$" in params):
        raise UnsupportedAsl(f"{name}: ResultWriter Parameters must be Bucket + Prefix or Prefix.$, got {params}")
    if "Prefix.$" in params and not (isinstance(params["Prefix.$"], str) and _FIELD_PATH.match(params["Prefix.$"])):
        raise UnsupportedAsl(f"{name}: the local runner evaluates only $.field paths in Prefix.$")
    return params


def for_moto(definition: str) -> tuple[str, dict[str, int], dict[str, dict]]:
    """``definition`` rewritten for moto's interpreter: ``ItemBatcher`` removed (returned as
    ``{map state name: MaxItemsPerBatch}``), ``ResultWriter`` removed (returned as ``{map state name:
    its Parameters}``), both for :func:`register` once the machine has its ARN; ``ExecutionType``
    ``EXPRESS`` → ``STANDARD``."""
    doc = json.loads(definition)
    batchers: dict[str, int] = {}
    writers: dict[str, dict] = {}
    for name, st in _maps(doc.get("States") or {}):
        proc = st.get("ItemProcessor") or {}
        cfg = proc.get("ProcessorConfig") or {}
        if cfg.get("ExecutionType") == "EXPRESS":
            cfg["ExecutionType"] = "STANDARD"
        writer = _writer(name, st, cfg.get("Mode") == "DISTRIBUTED")
        if writer is not None:
            if name in writers:
                raise UnsupportedAsl(f"two Map states with a ResultWriter named {name!r}")
            writers[name] = writer
        batcher = st.pop("ItemBatcher", None)
        if batcher is None:
            continue
        if cfg.get("Mode") != "DISTRIBUTED":
            raise UnsupportedAsl(f"{name}: ItemBatcher is only valid in a Distributed Map")
        extra = [k for k in _UNSUPPORTED_BATCHER_FIELDS if k in batcher]
        if extra or "ItemSelector" in st:
            raise UnsupportedAsl(f"{name}: the local runner does not emulate {extra or ['ItemSelector']} "
                                 "with an ItemBatcher")
        size = batcher.get("MaxItemsPerBatch")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise UnsupportedAsl(f"{name}: MaxItemsPerBatch must be a positive integer, got {size!r}")
        if name in batchers:
            raise UnsupportedAsl(f"two batched Map states named {name!r}")
        batchers[name] = size
    return json.dumps(doc), batchers, writers


def register(state_machine_arn: str, batchers: dict[str, int], writers: Optional[dict[str, dict]] = None) -> None:
    """Make the patched Distributed Map batch the items of these Map states of the state machine
    ``state_machine_arn``, and write their results as their ResultWriter would (replaces what was
    registered for it before)."""
    with _LOCK:
        for table in (_BATCHERS, _WRITERS):
            for key in [k for k in table if k[0] == state_machine_arn]:
                del table[key]
        _BATCHERS.update({(state_machine_arn, name): size for name, size in batchers.items()})
        _WRITERS.update({(state_machine_arn, name): dict(p) for name, p in (writers or {}).items()})


def _path(doc: Any, path: str) -> Any:
    for part in path.split(".")[1:]:
        if not isinstance(doc, dict) or part not in doc:
            raise UnsupportedAsl(f"ResultWriter Prefix.$ {path}: no such field in the Map's input")
        doc = doc[part]
    return doc


def result_files(params: dict, map_input: Any, *, map_run_arn: str, state_machine_arn: str,
                 child_inputs: list, child_outputs: list, started: datetime,
                 stopped: datetime) -> tuple[str, dict[str, bytes], dict]:
    """What a ResultWriter writes for one Map run: ``(bucket, {key: body}, the Map's result)``. The
    bodies are the result files (in key order) and, last, the manifest. A child whose output is
    ``None`` (moto's mark of a failed child) is FAILED, every other one SUCCEEDED."""
    bucket = params["Bucket"]
    prefix = params.get("Prefix", "") if "Prefix.$" not in params else _path(map_input, params["Prefix.$"])
    if not isinstance(prefix, str):
        raise UnsupportedAsl(f"ResultWriter Prefix must be a string, got {prefix!r}")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    run_uuid = map_run_arn.rsplit(":", 1)[-1]
    base = f"{prefix}{run_uuid}/"
    machine = state_machine_arn.split(":stateMachine:", 1)[-1]
    arn_head = state_machine_arn.split(":stateMachine:", 1)[0]
    label = map_run_arn.split(":mapRun:", 1)[-1].split(":", 1)[0]  # <machine>/<map state>
    by_status: dict[str, list] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for item, out in zip(child_inputs, child_outputs):
        name = str(uuid.uuid4())
        entry = {"ExecutionArn": f"{arn_head}:execution:{label or machine}:{name}", "Input": json.dumps(item),
                 "InputDetails": {"Included": True}, "Name": name, "RedriveCount": 0,
                 "StartDate": started.isoformat(), "StateMachineArn": state_machine_arn,
                 "StopDate": stopped.isoformat()}
        if out is None:
            entry.update({"Status": "FAILED", "Error": "LocalEmulator.ChildFailed",
                          "Cause": "the child workflow failed (moto keeps no error for it)",
                          "RedriveStatus": "REDRIVABLE"})
        else:
            entry.update({"Status": "SUCCEEDED", "Output": json.dumps(out), "OutputDetails": {"Included": True},
                          "RedriveStatus": "NOT_REDRIVABLE",
                          "RedriveStatusReason": "Execution is SUCCEEDED and cannot be redriven"})
        by_status[entry["Status"]].append(entry)
    bodies: dict[str, bytes] = {}
    manifest_files: dict[str, list] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for status, entries in by_status.items():
        if entries:
            key = f"{base}{status}_0.json"
            bodies[key] = json.dumps(entries).encode()
            manifest_files[status].append({"Key": key, "Size": len(bodies[key])})
    manifest_key = f"{base}manifest.json"
    bodies[manifest_key] = json.dumps({"DestinationBucket": bucket, "MapRunArn": map_run_arn,
                                       "ResultFiles": manifest_files}).encode()
    return bucket, bodies, {"MapRunArn": map_run_arn,
                            "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key}}


def _state_machine_of(eval_input: Any) -> Optional[str]:
    """The ARN of the state machine whose execution runs this Map (moto's MapRunRecord keeps the
    execution's ARN: ``arn:…:execution:<machine>:<execution>``)."""
    arn = getattr(getattr(eval_input, "map_run_record", None), "execution_arn", None)
    if not isinstance(arn, str) or ":execution:" not in arn:
        return None
    return arn.replace(":execution:", ":stateMachine:", 1).rsplit(":", 1)[0]


def install_item_batcher() -> None:
    """Patch moto's ``DistributedIterationComponent._map_run`` (idempotent): before the child
    executions start, the items of a registered Map state are grouped by :func:`batches`."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (  # noqa: E501
        DistributedIterationComponent,
    )

    with _LOCK:
        if "_map_run" in _ORIGINAL:
            return
        original = DistributedIterationComponent._map_run
        _ORIGINAL["_map_run"] = original

    def _map_run(self, env, eval_input):  # noqa: ANN001 - moto's signature
        key = (_state_machine_of(eval_input), getattr(eval_input, "state_name", None))
        size = _BATCHERS.get(key)
        if size is not None:
            items = env.stack.pop()
            env.stack.append(batches(list(items), size))
        writer = _WRITERS.get(key)
        if writer is None:
            return original(self, env=env, eval_input=eval_input)
        child_inputs = list(env.stack[-1])
        map_input = env.states.get_input()
        started = datetime.now(timezone.utc)
        original(self, env=env, eval_input=eval_input)
        outputs = env.stack.pop()
        arn = eval_input.map_run_record.map_run_arn
        bucket, bodies, result = result_files(
            writer, map_input, map_run_arn=arn, state_machine_arn=key[0], child_inputs=child_inputs,
            child_outputs=list(outputs), started=started, stopped=datetime.now(timezone.utc))
        from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

        s3 = boto_client_for(region=arn.split(":")[3], service="s3")
        for k, body in bodies.items():  # the manifest last, as Step Functions writes it
            s3.put_object(Bucket=bucket, Key=k, Body=body, ContentType="application/json")
        env.stack.append(result)

    DistributedIterationComponent._map_run = _map_run


def uninstall_item_batcher() -> None:
    """Undo :func:`install_item_batcher` and forget the registered batchers."""
    with _LOCK:
        original = _ORIGINAL.pop("_map_run", None)
        _BATCHERS.clear()
        _WRITERS.clear()
    if original is not None:
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (  # noqa: E501
            DistributedIterationComponent,
        )

        DistributedIterationComponent._map_run = original


__all__ = ["UnsupportedAsl", "batches", "for_moto", "register", "result_files", "install_item_batcher",
           "uninstall_item_batcher"]
