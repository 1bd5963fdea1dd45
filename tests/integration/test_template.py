"""template.yaml, read as data (no AWS): least-privilege IAM per function, data-resource hardening,
API auth, routes -> handlers, the training schedule + state machine wiring, alarms, outputs.

Pure parsing through calroute_dev.local.template.load_template; every check names what it found so a
failure says what to fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from calroute.config import LIBRARY_ENVIRONMENT, Settings
from calroute_dev.local.template import ROOT, _Tag, load_template

T = load_template()
RES = T["Resources"]

# logical id -> (code dir, layers) -- fixed by the design (docs/architecture.md, docs/deployment.md)
FUNCTIONS = {
    "IngestFunction": ("functions/ingest", ["CoreLayer", "IcalLayer"]),
    "PredictFunction": ("functions/predict", ["CoreLayer", "InferenceLayer"]),
    "LlmFallbackFunction": ("functions/llm_fallback", ["CoreLayer", "LlmLayer"]),
    "StatsFunction": ("functions/stats", ["CoreLayer"]),
    "ModelsFunction": ("functions/models", ["CoreLayer"]),
    "PlanFunction": ("functions/train_plan", ["CoreLayer"]),
    "TrainUserFunction": ("functions/train_user", ["CoreLayer", "TrainingLayer"]),
    "ValidateFunction": ("functions/validate", ["CoreLayer", "InferenceLayer"]),
    "PromoteFunction": ("functions/promote", ["CoreLayer", "InferenceLayer"]),
    "SummarizeFunction": ("functions/summarize", ["CoreLayer"]),
    "DataFunction": ("functions/data", ["CoreLayer"]),
    "ParseFunction": ("functions/parse", ["CoreLayer", "InferenceLayer", "ParseLayer"]),
}

ROUTES = {
    ("POST", "/v1/users/{userId}/events"): "IngestFunction",
    ("POST", "/v1/users/{userId}/events/{eventId}/correction"): "IngestFunction",
    ("GET", "/v1/users/{userId}/review"): "IngestFunction",
    ("POST", "/v1/users/{userId}/events/{eventId}/confirm"): "IngestFunction",
    ("PUT", "/v1/users/{userId}/calendars/{calendarId}"): "IngestFunction",
    ("GET", "/v1/users/{userId}/settings"): "IngestFunction",
    ("PUT", "/v1/users/{userId}/settings"): "IngestFunction",
    ("POST", "/v1/users/{userId}/calendars/{calendarId}/import"): "IngestFunction",
    ("POST", "/v1/users/{userId}/classify"): "PredictFunction",
    ("POST", "/v1/users/{userId}/classify/batch"): "PredictFunction",
    ("GET", "/v1/users/{userId}/stats"): "StatsFunction",
    ("GET", "/v1/stats"): "StatsFunction",
    ("GET", "/v1/experiments/{name}"): "StatsFunction",
    ("GET", "/v1/users/{userId}/model"): "ModelsFunction",
    ("GET", "/v1/users/{userId}/models"): "ModelsFunction",
    ("POST", "/v1/users/{userId}/train"): "ModelsFunction",
    ("POST", "/v1/users/{userId}/models/{version}/promote"): "ModelsFunction",
    ("POST", "/v1/users/{userId}/models/rollback"): "ModelsFunction",
    ("GET", "/v1/openapi.json"): "ModelsFunction",
    ("GET", "/v1/users/{userId}/calendars"): "DataFunction",
    ("GET", "/v1/users/{userId}/events"): "DataFunction",
    ("DELETE", "/v1/users/{userId}/events/{eventId}"): "DataFunction",
    ("DELETE", "/v1/users/{userId}/calendars/{calendarId}"): "DataFunction",
    ("DELETE", "/v1/users/{userId}"): "DataFunction",
    ("GET", "/v1/docs"): "ModelsFunction",
    ("POST", "/v1/users/{userId}/events/parse"): "ParseFunction",
}

DDB_READ = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"}
DDB_WRITE = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


# ------------------------------------------------------------------------------------- helpers
def tag(value, name: str):
    return value.value if isinstance(value, _Tag) and value.tag == name else None


def ref(value) -> str | None:
    return tag(value, "Ref")


def target(resource) -> str:
    """A canonical description of a statement's Resource: 'table:EventsTable', 'bucket:models/*',
    'function:LlmFallbackFunction', 'ssm:<path>', 'kms:key/*', 'statemachine:TrainingStateMachine', or
    the raw string."""
    if isinstance(resource, _Tag):
        if resource.tag == "GetAtt":
            logical = resource.value.split(".")[0] if isinstance(resource.value, str) else resource.value[0]
            kind = RES[logical]["Type"]
            if kind == "AWS::DynamoDB::Table":
                return f"table:{logical}"
            if kind == "AWS::Serverless::Function":
                return f"function:{logical}"
            return f"{kind}:{logical}"
        if resource.tag == "Ref":
            if resource.value.endswith(".Alias"):  # SAM's reference to an AutoPublishAlias alias
                return f"alias:{resource.value[: -len('.Alias')]}"
            kind = RES.get(resource.value, {}).get("Type", "param")
            if kind == "AWS::Serverless::StateMachine":
                return f"statemachine:{resource.value}"
            return f"ref:{resource.value}"
        if resource.tag == "Sub":
            text = resource.value if isinstance(resource.value, str) else resource.value[0]
            m = re.fullmatch(r"\$\{ModelBucket\.Arn\}/(.+)", text)
            if m:
                return f"bucket:{m.group(1)}"
            m = re.fullmatch(r"arn:\$\{AWS::Partition\}:ssm:\$\{AWS::Region\}:\$\{AWS::AccountId\}:parameter(.+)", text)
            if m:
                return f"ssm:{m.group(1)}"
            m = re.fullmatch(r"arn:\$\{AWS::Partition\}:kms:\$\{AWS::Region\}:\$\{AWS::AccountId\}:(key/.+)", text)
            if m:
                return f"kms:{m.group(1)}"
            return f"sub:{text}"
    return str(resource)


def statements(logical: str) -> list[dict]:
    out = []
    for pol in RES[logical]["Properties"].get("Policies") or []:
        assert isinstance(pol, dict) and "Statement" in pol, (
            f"{logical}: only inline Statement policies (no managed/SAM-template policies): {pol!r}")
        out.extend(pol["Statement"])
    return out


def grants(logical: str) -> dict[str, set[str]]:
    """{resource target: actions} of a function's Allow statements."""
    out: dict[str, set[str]] = {}
    for st in statements(logical):
        assert st["Effect"] == "Allow"
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for r in resources:
            out.setdefault(target(r), set()).update(actions)
    return out


def holders(resource: str, action: str) -> set[str]:
    return {fn for fn in FUNCTIONS if action in grants(fn).get(resource, set())}


# ------------------------------------------------------------------------------------- functions
def test_functions_code_dirs_and_layers():
    fns = {k for k, v in RES.items() if v["Type"] == "AWS::Serverless::Function"}
    assert fns == set(FUNCTIONS)
    glob_layers = (T["Globals"]["Function"].get("Layers") or [])
    assert glob_layers == [], "layers are listed per function (explicit), not in Globals"
    for fn, (code, layers) in FUNCTIONS.items():
        props = RES[fn]["Properties"]
        assert props["CodeUri"] == code
        assert (ROOT / code).is_dir(), f"{code} missing"
        assert [ref(x) for x in props["Layers"]] == layers, fn


def test_globals_runtime_tracing():
    g = T["Globals"]["Function"]
    assert g["Runtime"] == "python3.12" and g["Architectures"] == ["x86_64"]
    assert g["Tracing"] == "Active"
    assert g["Handler"] == "app.lambda_handler"


def test_serving_path_tracing_off_by_default_and_one_switch():
    """predict and its LLM fallback trace only with PredictTracing=Active (the X-Ray SDK's import is
    a large share of both cold starts); every other function keeps the Globals' Active tracing."""
    assert T["Parameters"]["PredictTracing"]["Default"] == "PassThrough"
    for fn in ("PredictFunction", "LlmFallbackFunction"):
        props = RES[fn]["Properties"]
        assert isinstance(props["Tracing"], _Tag) and props["Tracing"].tag == "Ref" and props["Tracing"].value == "PredictTracing", fn
        flag = props["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"]
        assert flag.tag == "If" and flag.value == ["PredictTracingOn", "false", "true"], fn
    traced = [fn for fn in FUNCTIONS if fn not in ("PredictFunction", "LlmFallbackFunction")]
    for fn in traced:
        assert "Tracing" not in RES[fn]["Properties"], f"{fn} overrides the Globals' tracing"


def test_numpy_blas_single_threaded_everywhere():
    """OpenBLAS would start a thread per vCPU at numpy's import (~100 ms of a cold start, measured in
    docs/serving.md); Globals set it to one thread for every function."""
    assert T["Globals"]["Function"]["Environment"]["Variables"]["OPENBLAS_NUM_THREADS"] == "1"
    for fn in FUNCTIONS:
        own = (RES[fn]["Properties"].get("Environment") or {}).get("Variables") or {}
        assert "OPENBLAS_NUM_THREADS" not in own, fn


def test_train_user_sizing():
    props = RES["TrainUserFunction"]["Properties"]
    assert props["MemorySize"] == 1769 and props["Timeout"] == 600  # one full vCPU: fits are single-threaded


def test_environment_variables_are_settings_fields():
    fields = {name.upper() for name in Settings.model_fields}
    envs = dict(T["Globals"]["Function"]["Environment"]["Variables"])
    for fn in FUNCTIONS:
        envs.update(((RES[fn]["Properties"].get("Environment") or {}).get("Variables")) or {})
    unknown = {k for k in envs if not k.startswith("POWERTOOLS_")} - fields - set(LIBRARY_ENVIRONMENT)
    assert not unknown, f"env vars that calroute.config.Settings does not read: {sorted(unknown)}"
    for name in ("EVENTS_TABLE", "USERS_TABLE", "REGISTRY_TABLE", "PREDICTIONS_TABLE", "USAGE_TABLE",
                 "MODEL_BUCKET", "AUTH_MODE"):
        assert name in T["Globals"]["Function"]["Environment"]["Variables"], name


def test_function_specific_environment():
    env = lambda fn: RES[fn]["Properties"]["Environment"]["Variables"]  # noqa: E731
    assert ref(env("PredictFunction")["LLM_FUNCTION_NAME"]) == "LlmFallbackFunction.Alias"
    assert ref(env("PredictFunction")["ML_ENABLED_PARAM"]) == "MlEnabledParameter"
    assert ref(env("ParseFunction")["LLM_FUNCTION_NAME"]) == "LlmFallbackFunction.Alias"  # as predict: the live alias
    assert ref(env("ParseFunction")["ML_ENABLED_PARAM"]) == "MlEnabledParameter"
    assert ref(env("ModelsFunction")["STATE_MACHINE_ARN"]) == "TrainingStateMachine"
    assert ref(env("LlmFallbackFunction")["LLM_API_KEY_PARAM"]) == "OpenAIApiKeyParameter"
    assert "OPENAI_API_KEY" not in json.dumps(T, default=str), "the API key is never a plain env var"


def test_every_function_has_a_retained_log_group():
    for fn in FUNCTIONS:
        lg = ref(RES[fn]["Properties"]["LoggingConfig"]["LogGroup"])
        assert RES[lg]["Type"] == "AWS::Logs::LogGroup", fn
        assert ref(RES[lg]["Properties"]["RetentionInDays"]) == "LogRetentionDays", fn


# ------------------------------------------------------------------------------------- IAM
def test_no_wildcard_resources_in_function_policies():
    for fn in FUNCTIONS:
        for st in statements(fn):
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for r in resources:
                t = target(r)
                assert t != "*" and not t.startswith("sub:"), f"{fn}: unscoped resource {t}"
                if t.startswith("kms:"):  # the one pattern: any key, but only through SSM for one parameter
                    cond = st["Condition"]["StringEquals"]
                    assert "kms:ViaService" in cond and "kms:EncryptionContext:PARAMETER_ARN" in cond
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert not any("*" in a for a in actions), f"{fn}: wildcard action {actions}"


def test_predict_least_privilege():
    g = grants("PredictFunction")
    assert g == {
        "bucket:models/*": {"s3:GetObject"},
        "table:RegistryTable": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"},
        "table:PredictionsTable": {"dynamodb:PutItem", "dynamodb:BatchWriteItem"},
        "table:UsageTable": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"},
        # calendar list (unmet calendars, LLM answer check); remember: the profile's event counters
        "table:UsersTable": {"dynamodb:Query", "dynamodb:UpdateItem"},
        "table:EventsTable": {"dynamodb:PutItem"},  # remember: one conditional put per answered event
        "alias:LlmFallbackFunction": {"lambda:InvokeFunction"},  # the alias only, not $LATEST
        "ssm:/calroute/${Stage}/ml-enabled": {"ssm:GetParameter"},
    }
    # both writes are limited to the attributes remembering writes (never a correction, a calendar, ...)
    by_sid = {st["Sid"]: st for st in statements("PredictFunction")}
    put = by_sid["EventsRemember"]["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert set(put) == {"user_id", "event_id", "calendar_id", "start", "data", "source", "provenance",
                        "updated_at", "label_meta"}
    counters = by_sid["UsersRememberCounters"]["Condition"]["ForAllValues:StringLike"]["dynamodb:Attributes"]
    assert set(counters) == {"user_id", "sk", "events_total", "corrections_total", "labels_total", "updated_at",
                             "created_at", "calev#*"}


def test_the_counters_predict_writes_are_the_ones_its_policy_allows():
    """What ``PredictService._remember`` bumps (new events per calendar, sole answers as labels),
    through the real DynamoDB adapter's UpdateExpression, against the template's attribute list."""
    import fnmatch
    import types

    from calroute.adapters.dynamo.users import DynamoUserStore

    sent = []
    store = DynamoUserStore.__new__(DynamoUserStore)
    store.name = "users"
    store.t = types.SimpleNamespace(table=lambda name: types.SimpleNamespace(update_item=lambda **kw: sent.append(kw)))
    store.bump("alice", events=2, calendars={"work": 1, "gym": 1}, labels=1)
    (kw,) = sent
    names = kw.get("ExpressionAttributeNames", {})
    add, _, set_ = kw["UpdateExpression"].removeprefix("ADD ").partition(" SET ")
    written = {"user_id", "sk"} | {names.get(t.split()[0], t.split()[0]) for t in add.split(",")}
    written |= {t.split("=")[0].strip() for t in set_.split(", ") if "=" in t}
    by_sid = {st["Sid"]: st for st in statements("PredictFunction")}
    allowed = by_sid["UsersRememberCounters"]["Condition"]["ForAllValues:StringLike"]["dynamodb:Attributes"]
    assert {"labels_total", "events_total", "calev#work", "calev#gym", "updated_at", "created_at"} <= written
    assert all(any(fnmatch.fnmatchcase(w, a) for a in allowed) for w in written), (written, allowed)


def test_parse_least_privilege():
    """Issue 13: the parse function reads what routing a draft needs (the user's model, registry,
    budgets, profile and calendars), invokes only the LLM fallback, and writes nothing."""
    g = grants("ParseFunction")
    assert g == {
        "bucket:models/*": {"s3:GetObject"},
        "table:RegistryTable": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"},
        "table:UsageTable": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"},
        "table:UsersTable": {"dynamodb:GetItem", "dynamodb:Query"},  # profile (time zone), calendars
        "alias:LlmFallbackFunction": {"lambda:InvokeFunction"},  # the alias only, not $LATEST
        "ssm:/calroute/${Stage}/ml-enabled": {"ssm:GetParameter"},
    }
    assert not set().union(*g.values()) & DDB_WRITE


SNAPSTART_FUNCTIONS = ("PredictFunction", "LlmFallbackFunction")


def test_snapstart_is_an_opt_in_parameter_on_the_two_serving_functions():
    from calroute_dev.local.template import Resolver

    p = T["Parameters"]["SnapStart"]
    assert p["Default"] == "None" and p["AllowedValues"] == ["None", "PublishedVersions"]
    for fn in FUNCTIONS:
        props = RES[fn]["Properties"]
        if fn in SNAPSTART_FUNCTIONS:
            # SnapStart snapshots published versions only: the alias is what gets invoked
            assert props["AutoPublishAlias"] == "live", fn
            assert ref(props["SnapStart"]["ApplyOn"]) == "SnapStart", fn
        else:
            assert "SnapStart" not in props and "AutoPublishAlias" not in props, fn
    assert "SnapStart" not in T["Globals"]["Function"]
    for params, applied in (({}, "None"), ({"SnapStart": "PublishedVersions"}, "PublishedVersions")):
        r = Resolver(T, parameters=params, stack_name="s")
        for fn in SNAPSTART_FUNCTIONS:
            assert r.resolve(RES[fn]["Properties"]["SnapStart"]) == {"ApplyOn": applied}, (fn, params)
    # predict invokes the LLM function's alias (its snapshotted version), and may invoke nothing else
    r = Resolver(T, stack_name="s")
    name = r.resolve(RES["PredictFunction"]["Properties"]["Environment"]["Variables"]["LLM_FUNCTION_NAME"])
    assert name == "arn:aws:lambda:us-east-1:123456789012:function:calroute-prod-llm-fallback:live"
    invoke = [st for st in statements("PredictFunction") if st["Action"] == "lambda:InvokeFunction"]
    assert len(invoke) == 1 and r.resolve(invoke[0]["Resource"]) == name


def test_only_training_writes_models_and_only_plan_writes_runs():
    assert holders("bucket:models/*", "s3:PutObject") == {"TrainUserFunction"}
    assert holders("bucket:runs/*", "s3:PutObject") == {"PlanFunction"}
    # TrainUser may delete what it just wrote when a later write fails (no registry record ever names
    # a missing object); the bucket is versioned, so a delete is only a recoverable delete marker.
    assert holders("bucket:models/*", "s3:DeleteObject") == {"TrainUserFunction"}
    for fn in FUNCTIONS:
        for t, actions in grants(fn).items():
            if t.startswith("bucket:") and fn != "DataFunction":  # erasure: test_only_the_data_function_deletes
                assert actions <= {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, (fn, t, actions)
                if fn != "TrainUserFunction":
                    assert "s3:DeleteObject" not in actions


DDB_DELETE = {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
TABLES = ("EventsTable", "UsersTable", "RegistryTable", "PredictionsTable", "UsageTable")


def test_only_the_data_function_deletes():
    """Issue 17: deleting (items, object versions) is the DataFunction's alone. BatchWriteItem cannot be
    limited to puts by IAM, so the two functions that batch-*upsert* keep it on their own table only
    (ingest: events; predict: the prediction log) — and their code never sends a DeleteRequest."""
    for table in TABLES:
        deleters = {fn for fn in FUNCTIONS if "dynamodb:DeleteItem" in grants(fn).get(f"table:{table}", set())}
        assert deleters <= {"DataFunction"}, f"{table}: DeleteItem held by {sorted(deleters)}"
        batch = {fn for fn in FUNCTIONS if "dynamodb:BatchWriteItem" in grants(fn).get(f"table:{table}", set())}
        upserters = {"EventsTable": {"IngestFunction"}, "PredictionsTable": {"PredictFunction"}}.get(table, set())
        assert batch == {"DataFunction"} | upserters, f"{table}: BatchWriteItem held by {sorted(batch)}"
    g = grants("DataFunction")
    assert set().union(*(g[f"table:{t}"] for t in TABLES)) >= DDB_DELETE
    for action in ("s3:DeleteObjectVersion", "s3:ListBucketVersions"):
        holders_ = {fn for fn in FUNCTIONS for a in grants(fn).values() if action in a}
        assert holders_ == {"DataFunction"}, (action, holders_)
    assert g["bucket:models/*"] == {"s3:DeleteObjectVersion"}  # never reads or writes a model
    assert g["bucket:runs/*"] == {"s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObjectVersion"}
    assert g["AWS::S3::Bucket:ModelBucket"] == {"s3:ListBucketVersions"}
    listing = next(st for st in statements("DataFunction") if st["Action"] == "s3:ListBucketVersions")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["models/*", "runs/*"]
    assert "dynamodb:Scan" not in set().union(*g.values())  # one user's partition at a time
    assert ref(RES["DataFunction"]["Properties"]["Environment"]["Variables"]["ERASURE_HMAC_KEY_PARAM"]) == (
        "ErasureKeyParameter")
    for fn in ("IngestFunction", "PredictFunction"):  # batch writes there are upserts only
        src = (ROOT / FUNCTIONS[fn][0] / "app.py").read_text(encoding="utf-8")
        assert "DeleteRequest" not in src


def test_table_access_matrix():
    expected_writers = {
        # PredictFunction: classify with remember (attribute-limited puts/counters, test_predict_least_privilege)
        "EventsTable": {"IngestFunction", "DataFunction", "PredictFunction"},
        "UsersTable": {"IngestFunction", "DataFunction", "PredictFunction"},
        "PredictionsTable": {"IngestFunction", "PredictFunction", "DataFunction"},
        "UsageTable": {"LlmFallbackFunction", "DataFunction"},
        "RegistryTable": {"ModelsFunction", "TrainUserFunction", "ValidateFunction", "PromoteFunction",
                          "SummarizeFunction", "DataFunction",
                          # the drift monitor's flags only (condition on dynamodb:Attributes; test_ops.py)
                          "PlanFunction"},
    }
    for table, writers in expected_writers.items():
        actual = {fn for fn in FUNCTIONS if grants(fn).get(f"table:{table}", set()) & DDB_WRITE}
        assert actual == writers, f"{table}: writers {sorted(actual)}"
    # scans only where a whole-table read is the job
    scanners = {fn for fn in FUNCTIONS for t, a in grants(fn).items() if "dynamodb:Scan" in a}
    assert scanners == {"PlanFunction", "StatsFunction"}
    # the ingest function may update predictions (corrections) but never create/delete them
    assert grants("IngestFunction")["table:PredictionsTable"] == {
        "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"}


def test_llm_function_secret_access():
    g = grants("LlmFallbackFunction")
    ssm = {t: a for t, a in g.items() if t.startswith("ssm:")}
    assert ssm == {"ssm:${OpenAIApiKeyParameter}": {"ssm:GetParameter"}}
    assert g["kms:key/*"] == {"kms:Decrypt"}
    assert "lambda:InvokeFunction" not in set().union(*g.values())
    invokers = {fn for fn in FUNCTIONS if any("lambda:InvokeFunction" in a for a in grants(fn).values())}
    assert invokers == {"PredictFunction", "ParseFunction"}


def test_models_function_starts_only_the_training_state_machine():
    g = grants("ModelsFunction")
    assert g["statemachine:TrainingStateMachine"] == {"states:StartExecution"}
    starters = {fn for fn in FUNCTIONS if any(a & {"states:StartExecution"} for a in grants(fn).values())}
    assert starters == {"ModelsFunction"}


# ------------------------------------------------------------------------------------- data resources
def test_bucket_hardening():
    b = RES["ModelBucket"]["Properties"]
    assert all(b["PublicAccessBlockConfiguration"][k] is True for k in (
        "BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    assert b["VersioningConfiguration"]["Status"] == "Enabled"
    assert b["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = b["LifecycleConfiguration"]["Rules"]
    assert any("NoncurrentVersionExpiration" in r for r in rules)
    assert any(r.get("Prefix") == "runs/" and r.get("ExpirationInDays") for r in rules)
    assert RES["ModelBucket"]["DeletionPolicy"] == "Retain"
    pol = RES["ModelBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    tls = [s for s in pol if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get(
        "aws:SecureTransport") == "false"]
    assert tls and tls[0]["Action"] == "s3:*"


@pytest.mark.parametrize("table,ttl", [("EventsTable", False), ("UsersTable", False), ("RegistryTable", False),
                                       ("PredictionsTable", True), ("UsageTable", True)])
def test_tables_on_demand_pitr_ttl(table, ttl):
    p = RES[table]["Properties"]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert p["SSESpecification"]["SSEEnabled"] is True
    has_ttl = bool((p.get("TimeToLiveSpecification") or {}).get("Enabled"))
    assert has_ttl is ttl
    if ttl:
        assert p["TimeToLiveSpecification"]["AttributeName"] == "expires_at"


# ------------------------------------------------------------------------------------- API
def template_routes() -> dict[tuple[str, str], str]:
    out = {}
    for fn in FUNCTIONS:
        for name, ev in (RES[fn]["Properties"].get("Events") or {}).items():
            if ev["Type"] != "HttpApi":
                continue
            p = ev["Properties"]
            assert ref(p["ApiId"]) == "HttpApi", (fn, name)
            assert "Auth" not in p, f"{fn}.{name}: per-route auth overrides the API default"
            key = (p["Method"].upper(), p["Path"])
            assert key not in out, f"duplicate route {key}"
            out[key] = fn
    return out


def test_http_api_default_auth_is_iam():
    api = RES["HttpApi"]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    assert api["Auth"]["EnableIamAuthorizer"] is True
    assert api["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    assert api["AccessLogSettings"]["DestinationArn"]


def test_routes_are_the_designed_ones():
    assert template_routes() == ROUTES


def test_every_route_maps_to_a_handler_that_serves_it():
    missing = []
    for (method, path), fn in sorted(template_routes().items()):
        app = ROOT / FUNCTIONS[fn][0] / "app.py"
        assert app.is_file(), f"{fn}: {app} missing"
        src = app.read_text(encoding="utf-8")
        resolver_path = re.sub(r"\{(\w+)\}", r"<\1>", path)
        decorator = re.compile(rf"@app\.{method.lower()}\(\s*[\"']{re.escape(resolver_path)}[\"']")
        swagger = method == "GET" and re.search(rf"app\.enable_swagger\(path=[\"']{re.escape(path)}[\"']", src)
        if not decorator.search(src) and not swagger:
            missing.append(f"{app.relative_to(ROOT)}: @app.{method.lower()}(\"{resolver_path}\")")
    assert not missing, "template routes no handler serves:\n  " + "\n  ".join(missing)


# ------------------------------------------------------------------------------------- training
def test_state_machine_wiring():
    sm = RES["TrainingStateMachine"]["Properties"]
    asl_path = ROOT / sm["DefinitionUri"]
    asl = asl_path.read_text(encoding="utf-8")
    placeholders = set(re.findall(r"\$\{(\w+)\}", asl))
    assert placeholders <= set(sm["DefinitionSubstitutions"]), placeholders - set(sm["DefinitionSubstitutions"])
    invoked = {ref(p["LambdaInvokePolicy"]["FunctionName"]) for p in sm["Policies"] if "LambdaInvokePolicy" in p}
    assert invoked == {"PlanFunction", "TrainUserFunction", "ValidateFunction", "PromoteFunction",
                       "SummarizeFunction"}
    assert sm["Logging"]["Level"] == "ALL" and sm["Logging"]["IncludeExecutionData"] is False
    assert sm["Tracing"]["Enabled"] is True
    stmts = [s for p in sm["Policies"] if "Statement" in p for s in p["Statement"]]
    s3 = [s for s in stmts if "s3:GetObject" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    assert [target(s["Resource"]) for s in s3] == ["bucket:runs/*"]
    # the Map's ResultWriter: the documented writer actions, only under runs/<runId>/results/ (it can
    # neither overwrite Plan's users.json nor touch models/); nothing else of S3
    s3_targets: dict[str, set] = {}
    for st in stmts:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if any(a.startswith("s3:") for a in actions):
            s3_targets.setdefault(target(st["Resource"]), set()).update(actions)
    assert s3_targets == {"bucket:runs/*": {"s3:GetObject"},
                          "bucket:runs/*/results/*": {"s3:PutObject", "s3:ListMultipartUploadParts",
                                                      "s3:AbortMultipartUpload"}}
    writer = json.loads(re.sub(r"\$\{(\w+)\}", "1", asl))["States"]["TrainUsers"]["ResultWriter"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject"
    assert writer["Parameters"]["Prefix.$"] == "$.results_prefix"  # Plan's runs/<runId>/results
    starts = [s for s in stmts if s["Action"] == "states:StartExecution"]
    assert len(starts) == 1 and "stateMachine:calroute-${Stage}-training" in tag(starts[0]["Resource"], "Sub")
    wildcard = [s for s in stmts if s["Resource"] == "*"]
    for s in wildcard:  # only the APIs AWS defines without resource-level permissions
        assert all(a.startswith(("logs:", "xray:")) for a in s["Action"]), s
    assert ref(sm["DefinitionSubstitutions"]["MaxConcurrency"]) == "MaxConcurrency"


def test_training_run_manifests_and_the_summarize_grants():
    """runs/{runId}/users.json: written by Plan only; read by the state machine (ItemReader) and by
    Summarize (only to recover the users of a child workflow that failed as a whole, whose outcomes it
    then reads from the registry: GetItem/Query, no Scan; its only writes stay the run record)."""
    assert holders("bucket:runs/*", "s3:PutObject") == {"PlanFunction"}
    # (DataFunction: the erasure scrubs the manifests that name the user)
    assert holders("bucket:runs/*", "s3:GetObject") == {"SummarizeFunction", "DataFunction"}
    g = grants("SummarizeFunction")
    assert g["bucket:runs/*"] == {"s3:GetObject"}
    assert g["table:RegistryTable"] == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert set(g) == {"bucket:runs/*", "table:RegistryTable"}


def test_schedule_with_retry_and_dlq():
    ev = RES["TrainingStateMachine"]["Properties"]["Events"]["Schedule"]
    assert ev["Type"] == "Schedule"
    p = ev["Properties"]
    assert ref(p["Schedule"]) == "ScheduleExpression"
    assert json.loads(p["Input"]) == {"trigger": "schedule"}
    assert p["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    dlq = tag(p["DeadLetterConfig"]["Arn"], "GetAtt")
    assert dlq.split(".")[0] == "ScheduleDeadLetterQueue" and RES["ScheduleDeadLetterQueue"]["Type"] == "AWS::SQS::Queue"
    pol = RES["ScheduleDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert pol["Principal"] == {"Service": "events.amazonaws.com"}
    assert "aws:SourceArn" in pol["Condition"]["ArnEquals"]
    assert T["Parameters"]["ScheduleExpression"]["Default"] == "cron(0 3 * * ? *)"


# ------------------------------------------------------------------------------------- parameters, ops, outputs
def test_parameters():
    params = T["Parameters"]
    for name in ("Stage", "ScheduleExpression", "MaxConcurrency", "AuthMode", "JwtIssuer", "JwtAudience",
                 "LlmModel", "OpenAIBaseUrl", "OpenAIApiKeyParameter", "LlmDailyBudgetUsd",
                 "LlmUserDailyBudgetUsd", "TargetPrecision", "MlEnabled", "ExperimentControlPercent",
                 "AlarmTopicArn", "LlmFallbackShareAlarm", "LogRetentionDays"):
        assert name in params, name
    assert params["MaxConcurrency"]["Default"] == 20
    assert params["AuthMode"]["Default"] == "iam"
    assert params["LlmModel"]["Default"] == "gpt-4o-mini"
    assert params["LlmFallbackShareAlarm"]["Default"] == 0.15


def test_alarms_and_dashboard():
    alarms = {k: v["Properties"] for k, v in RES.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert len(alarms) >= 7
    text = json.dumps(alarms, default=lambda o: [o.tag, o.value])
    for metric in ("Predictions", "ClassifyLatencyMs", "5xx", "ExecutionsFailed", "TrainingUsersFailed",
                   "DriftPsi", "LlmCostUsd", "ApproximateNumberOfMessagesVisible"):
        assert f'"{metric}"' in text, metric
    for name, a in alarms.items():
        actions = tag(a["AlarmActions"], "If")
        assert actions and actions[0] == "HasAlarmTopic", name
    assert RES["Dashboard"]["Type"] == "AWS::CloudWatch::Dashboard"


def test_outputs():
    out = T["Outputs"]
    for name in ("ApiUrl", "ModelBucketName", "EventsTableName", "UsersTableName", "RegistryTableName",
                 "PredictionsTableName", "UsageTableName", "TrainingStateMachineArn"):
        assert name in out, name
    for fn in FUNCTIONS:
        assert f"{fn}Name" in out, fn


def test_sample_events_match_template_routes():
    """infra/events/*.json for HTTP functions carry a routeKey the template actually serves."""
    routes = {f"{m} {p}" for (m, p) in template_routes()}
    files = sorted((ROOT / "infra" / "events").glob("*.json"))
    assert files
    http = 0
    for f in files:
        ev = json.loads(f.read_text(encoding="utf-8"))
        if isinstance(ev, dict) and ev.get("version") == "2.0" and "routeKey" in ev:
            http += 1
            assert ev["routeKey"] in routes, f"{f.name}: {ev['routeKey']} is not a template route"
    assert http >= 9
