"""template.yaml is the one source of truth for resources: this module reads it and creates the
DynamoDB tables and S3 bucket it declares in an AWS emulation (moto), resolving the few intrinsic
functions the data resources use (``!Ref``, ``!Sub``, ``!GetAtt``).

Used by the local stack and by every integration test; nothing here is shipped in a layer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import yaml

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
ACCOUNT = "123456789012"


class _Tag:
    def __init__(self, tag: str, value: Any):
        self.tag, self.value = tag, value

    def __repr__(self) -> str:  # pragma: no cover
        return f"!{self.tag} {self.value!r}"


class _Loader(yaml.SafeLoader):
    pass


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tag:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return _Tag(suffix, value)


_Loader.add_multi_constructor("!", _construct)


def load_template(path: Path | str = TEMPLATE) -> dict:
    """template.yaml as a dict; CloudFormation short-form tags become :class:`_Tag` objects."""
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_Loader)  # noqa: S506 - SafeLoader subclass


class Resolver:
    """Resolves intrinsics for a given stack name, region and parameter values."""

    def __init__(self, template: dict, *, parameters: Optional[dict] = None, region: str = "us-east-1",
                 stack_name: str = "calroute-local"):
        self.template = template
        params = {k: str(v.get("Default", "")) for k, v in (template.get("Parameters") or {}).items()}
        params.update(parameters or {})
        self.params = params
        self.pseudo = {"AWS::Region": region, "AWS::AccountId": ACCOUNT, "AWS::StackName": stack_name,
                       "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
        self.resources = template.get("Resources") or {}
        self._names: dict[str, str] = {}

    def physical_name(self, logical: str) -> str:
        """The name a resource gets: its declared name property, else ``<stack>-<logical>``."""
        if logical in self._names:
            return self._names[logical]
        res = self.resources[logical]
        props = res.get("Properties") or {}
        for key in ("TableName", "BucketName", "StateMachineName", "FunctionName", "Name", "TopicName",
                    "QueueName"):
            if key in props:
                name = self.resolve(props[key])
                break
        else:
            name = f"{self.pseudo['AWS::StackName']}-{logical}"
        self._names[logical] = name
        return name

    def arn(self, logical: str) -> str:
        res = self.resources[logical]
        t, name, region = res["Type"], self.physical_name(logical), self.pseudo["AWS::Region"]
        if t == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{name}"
        if t == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{name}"
        if t in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"
        if t in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            return f"arn:aws:states:{region}:{ACCOUNT}:stateMachine:{name}"
        return f"arn:aws:{t.split('::')[1].lower()}:{region}:{ACCOUNT}:{name}"

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return None
        if name in self.params:
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name.endswith(".Alias") and name[: -len(".Alias")] in self.resources:
            # SAM's reference to the alias AutoPublishAlias creates: the qualified function ARN
            logical = name[: -len(".Alias")]
            alias = self.resolve((self.resources[logical].get("Properties") or {})["AutoPublishAlias"])
            return f"{self.arn(logical)}:{alias}"
        if name in self.resources:
            t = self.resources[name]["Type"]
            if t in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine",
                     "AWS::SNS::Topic"):
                return self.arn(name)
            return self.physical_name(name)
        raise KeyError(f"unresolvable !Ref {name}")

    def get_att(self, logical: str, attr: str) -> str:
        if attr == "Arn":
            return self.arn(logical)
        if attr == "Name":
            return self.physical_name(logical)
        return self.physical_name(logical)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, _Tag):
            return self._tag(value.tag, value.value)
        if isinstance(value, dict):
            if len(value) == 1:
                (k, v), = value.items()
                if k == "Ref":
                    return self.ref(v)
                if k.startswith("Fn::"):
                    return self._tag(k[4:], v)
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def _sub(self, text: str, extra: dict) -> str:
        def repl(m: re.Match) -> str:
            key = m.group(1)
            if key in extra:
                return str(self.resolve(extra[key]))
            if "." in key:
                logical, attr = key.split(".", 1)
                return self.get_att(logical, attr)
            return str(self.ref(key))

        return re.sub(r"\$\{([^}!]+)\}", repl, text)

    def _tag(self, tag: str, v: Any) -> Any:
        if tag == "Ref":
            return self.ref(v)
        if tag == "Sub":
            if isinstance(v, list):
                return self._sub(v[0], v[1])
            return self._sub(v, {})
        if tag == "GetAtt":
            logical, attr = (v.split(".", 1) if isinstance(v, str) else v)
            return self.get_att(logical, attr)
        if tag == "Join":
            sep, items = v
            return sep.join(str(self.resolve(i)) for i in items)
        if tag == "If":
            return self.resolve(v[1] if self.condition(v[0]) else v[2])
        if tag == "Equals":
            a, b = (self.resolve(x) for x in v)
            return str(a) == str(b)
        if tag == "Not":
            return not self._truth(v[0])
        if tag == "And":
            return all(self._truth(x) for x in v)
        if tag == "Or":
            return any(self._truth(x) for x in v)
        if tag == "Condition":
            return self.condition(v)
        if tag == "Select":
            return self.resolve(v[1])[int(v[0])]
        if tag == "Split":
            return str(self.resolve(v[1])).split(v[0])
        if tag == "ImportValue":
            return str(self.resolve(v))
        return v

    def condition(self, name: str) -> bool:
        """Evaluate a named entry of the template's ``Conditions`` with the parameter values."""
        conds = self.template.get("Conditions") or {}
        if name not in conds:
            raise KeyError(f"unknown condition {name}")
        return self._truth(conds[name])

    def _truth(self, value: Any) -> bool:
        out = self.resolve(value)
        return out if isinstance(out, bool) else str(out).lower() == "true"

    def of_type(self, *types: str) -> dict[str, dict]:
        return {k: r for k, r in self.resources.items() if r.get("Type") in types}


def create_data_resources(resolver: Resolver, session=None, endpoint_url: Optional[str] = None) -> dict[str, str]:
    """Create every DynamoDB table and S3 bucket of the template (idempotent).

    Returns ``{logical id: physical name}``.
    """
    import boto3

    sess = session or boto3.session.Session()
    ddb = sess.client("dynamodb", endpoint_url=endpoint_url)
    s3 = sess.client("s3", endpoint_url=endpoint_url)
    created: dict[str, str] = {}
    existing = set(ddb.list_tables().get("TableNames", []))
    for logical, res in resolver.of_type("AWS::DynamoDB::Table").items():
        p = resolver.resolve(res.get("Properties") or {})
        name = resolver.physical_name(logical)
        created[logical] = name
        if name in existing:
            continue
        kwargs = {
            "TableName": name,
            "AttributeDefinitions": p["AttributeDefinitions"],
            "KeySchema": p["KeySchema"],
            "BillingMode": p.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if p.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = p["GlobalSecondaryIndexes"]
        ddb.create_table(**kwargs)
        ttl = p.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"], "Enabled": True})
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for logical, res in resolver.of_type("AWS::S3::Bucket").items():
        name = resolver.physical_name(logical)
        created[logical] = name
        if name not in buckets:
            s3.create_bucket(Bucket=name)
            p = res.get("Properties") or {}
            if (p.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return created


def function_environment(resolver: Resolver, logical: str) -> dict[str, str]:
    """Globals + the function's own environment variables, resolved (strings)."""
    glob = ((resolver.template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    env = dict(glob.get("Variables") or {})
    own = ((resolver.resources[logical].get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
    env.update(own)
    out = {}
    for k, v in env.items():
        try:
            value = resolver.resolve(v)
        except KeyError:
            continue
        if value is not None:
            out[k] = str(value)
    return out
