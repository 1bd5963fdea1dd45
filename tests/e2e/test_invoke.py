"""``calroute invoke`` (sam local invoke without Docker): every sample event of infra/events/ runs
through the real handler of its function against the emulator, and answers with the status and
shape its README row promises. The state machine's inputs run through the state machine."""

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
EVENTS = ROOT / "infra" / "events"
ENV_VARS = EVENTS / "env.json"

# (file, function, check) in the order a newcomer would try them: the ingest events first, so the
# correction finds its event and the models/stats answers have data to describe.
HTTP = [
    ("ingest_calendar_put.json", "IngestFunction", 200, {"calendar_id": "work"}),
    ("ingest_events.json", "IngestFunction", 200, {"upserted": 3}),
    ("ingest_correction.json", "IngestFunction", 200, {"event_id": "evt-2"}),
    ("ingest_import.json", "IngestFunction", 200, {"calendar_id": "gym", "events": 9}),
    ("ingest_import_base64.json", "IngestFunction", 200, {"calendar_id": "meetups", "events": 21}),
    ("predict_classify.json", "PredictFunction", 200, {"method": "none", "defer_reason": "no_model"}),
    ("predict_classify_google.json", "PredictFunction", 200, {"method": "none", "defer_reason": "no_model"}),
    ("predict_batch.json", "PredictFunction", 200, {"results": list}),
    ("models_active.json", "ModelsFunction", 200, {"user_id": "demo", "status": "no_model"}),
    ("models_list.json", "ModelsFunction", 200, {"user_id": "demo", "versions": []}),
    ("models_openapi.json", "ModelsFunction", 200, {"openapi": str, "paths": dict}),
    # operator-only (x-calroute-user: ops, OPERATOR_IDS=ops from env.json): no such version / no model yet
    ("models_promote.json", "ModelsFunction", 404, {"error": "not_found", "field": "version"}),
    ("models_rollback.json", "ModelsFunction", 404, {"error": "not_found"}),
    ("stats_user.json", "StatsFunction", 200, {"user_id": "demo", "by_method": dict}),
    ("stats_global.json", "StatsFunction", 200, {"requests": int, "by_method": dict}),
    ("stats_experiment.json", "StatsFunction", 200, {"name": "hybrid-vs-llm"}),
    ("models_train.json", "ModelsFunction", 202, {"execution_arn": str, "run_id": str}),
    # words to a draft: every required slot found by the rules; no model yet, so no calendar
    ("parse_event.json", "ParseFunction", 200, {"missing": [], "draft": dict, "calendar": dict}),
]
# state-machine task payloads: (file, function, check of the handler's answer)
TASKS = [
    ("plan.json", "PlanFunction", {"count": int, "run_id": "r20260302030000-a1b2c3"}),
    ("plan_requested.json", "PlanFunction", {"count": int}),
    ("train_user.json", "TrainUserFunction", {"user_id": "demo", "status": str}),
    # no such candidate in this emulator: the handler raises, the state machine's Catch records the failure
    ("validate.json", "ValidateFunction", {"errorType": "ModelIntegrityError"}),
    ("promote.json", "PromoteFunction", {"errorType": "ModelIntegrityError"}),
    ("summarize.json", "SummarizeFunction", {"run_id": "r20260302030000-a1b2c3"}),
    ("llm_fallback.json", "LlmFallbackFunction", {"error": "not_configured"}),
    ("llm_fallback_slots.json", "LlmFallbackFunction", {"error": "not_configured"}),
]
STATE_MACHINE = ["statemachine_schedule_input.json", "statemachine_train_users.json"]
NOT_INVOKED = {"schedule.json": "the EventBridge rule's event: the rule sends statemachine_schedule_input.json",
               "env.json": "the --env-vars file"}


def _matches(obj, shape: dict) -> None:
    for k, want in shape.items():
        assert k in obj, f"{k} missing from {obj}"
        if isinstance(want, type):
            assert isinstance(obj[k], want), f"{k}: {obj[k]!r} is not a {want.__name__}"
        else:
            assert obj[k] == want, f"{k}: {obj[k]!r} != {want!r}"


def test_every_sample_event_is_covered():
    listed = {f for f, *_ in HTTP} | {f for f, *_ in TASKS} | set(STATE_MACHINE) | set(NOT_INVOKED)
    assert listed == {p.name for p in EVENTS.glob("*.json")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from support.local_stack import running_stack

    with running_stack(tmp_path_factory.mktemp("calroute-invoke")) as st:
        yield st


@pytest.fixture(scope="module")
def runner(stack):
    """What `calroute invoke NAME -e FILE --env-vars infra/events/env.json` does, in-process."""
    from calroute_dev import invoke
    from calroute_dev.local.lambdas import function_specs

    specs = function_specs(stack.emulator.resolver, include_defaults=False)

    def run(name: str, file: str):
        spec = invoke.find_function(specs, name)
        assert spec is not None, name
        env = invoke.call_environment(spec, invoke.load_env_vars(str(ENV_VARS), spec.logical_id))
        event = json.loads((EVENTS / file).read_text(encoding="utf-8"))
        return invoke.invoke(spec, event, env)

    return run


def test_http_sample_events(runner):
    for file, function, status, shape in HTTP:
        response, error = runner(function, file)
        assert not error, (file, response)
        assert response["statusCode"] == status, (file, response)
        _matches(json.loads(response["body"]), shape)


def test_state_machine_task_events(runner):
    failures = []
    for file, function, shape in TASKS:
        response, error = runner(function, file)
        try:
            assert error == ("errorType" in shape), "an unexpected error" if error else "no error"
            _matches(response, shape)
        except AssertionError as exc:
            failures.append(f"{file}: {exc}: {str(response)[:400]}")
    assert not failures, "\n".join(failures)


def test_state_machine_inputs(stack):
    sfn = stack.emulator.client("stepfunctions")
    for file in STATE_MACHINE:
        arn = sfn.start_execution(stateMachineArn=stack.emulator.state_machine_arn, name=f"invoke-{Path(file).stem}",
                                  input=(EVENTS / file).read_text(encoding="utf-8"))["executionArn"]
        deadline = time.monotonic() + 120
        while (desc := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)  # polling a state machine execution; not timing anything
        assert desc["status"] == "SUCCEEDED", (file, desc)


def test_the_cli_prints_the_response_and_logs_and_fails_on_errors(stack, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "core"), str(ROOT / "tools")])}
    cmd = [sys.executable, "-m", "calroute_dev.cli", "invoke", "--aws-endpoint", stack.emulator.endpoint]
    ok = subprocess.run(cmd + ["StatsFunction", "-e", str(EVENTS / "stats_global.json"), "--env-vars", str(ENV_VARS)],
                        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["statusCode"] == 200
    assert "invoking StatsFunction" in ok.stderr
    # without the env-vars file the operator route refuses "ops" (a 4xx is an answer, exit 0)
    refused = subprocess.run(cmd + ["stats", "-e", str(EVENTS / "stats_global.json")],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert refused.returncode == 0 and json.loads(refused.stdout)["statusCode"] == 403
    bad = tmp_path / "bad.json"
    bad.write_text('"not an object"')
    failed = subprocess.run(cmd + ["ValidateFunction", "-e", str(bad)], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=300)
    assert failed.returncode == 1, failed.stdout
    assert "errorType" in json.loads(failed.stdout)
    unknown = subprocess.run(cmd + ["NoSuchFunction"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert unknown.returncode == 2 and "PlanFunction" in unknown.stderr
