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
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterator, Optional

#: (state machine ARN, Map state name) -> MaxItemsPerBatch, for the definitions made by for_moto
_BATCHERS: dict[tuple[str, str], int] = {}
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


def for_moto(definition: str) -> tuple[str, dict[str, int]]:
    """``definition`` rewritten for moto's interpreter: ``ItemBatcher`` removed (returned as
    ``{map state name: MaxItemsPerBatch}``, for :func:`register` once the machine has its ARN), ``ExecutionType`` ``EXPRESS`` → ``STANDARD``."""
    doc = json.loads(definition)
    batchers: dict[str, int] = {}
    for name, st in _maps(doc.get("States") or {}):
        proc = st.get("ItemProcessor") or {}
        cfg = proc.get("ProcessorConfig") or {}
        if cfg.get("ExecutionType") == "EXPRESS":
            cfg["ExecutionType"] = "STANDARD"
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
    return json.dumps(doc), batchers


def register(state_machine_arn: str, batchers: dict[str, int]) -> None:
    """Make the patched Distributed Map batch the items of these Map states of the state machine
    ``state_machine_arn`` (replaces what was registered for it before)."""
    with _LOCK:
        for key in [k for k in _BATCHERS if k[0] == state_machine_arn]:
            del _BATCHERS[key]
        _BATCHERS.update({(state_machine_arn, name): size for name, size in batchers.items()})


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
        size = _BATCHERS.get((_state_machine_of(eval_input), getattr(eval_input, "state_name", None)))
        if size is not None:
            items = env.stack.pop()
            env.stack.append(batches(list(items), size))
        return original(self, env=env, eval_input=eval_input)

    DistributedIterationComponent._map_run = _map_run


def uninstall_item_batcher() -> None:
    """Undo :func:`install_item_batcher` and forget the registered batchers."""
    with _LOCK:
        original = _ORIGINAL.pop("_map_run", None)
        _BATCHERS.clear()
    if original is not None:
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (  # noqa: E501
            DistributedIterationComponent,
        )

        DistributedIterationComponent._map_run = original


__all__ = ["UnsupportedAsl", "batches", "for_moto", "register", "install_item_batcher", "uninstall_item_batcher"]
