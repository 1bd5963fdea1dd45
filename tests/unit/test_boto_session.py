"""The boto3 session's loader (calroute.adapters.boto_session) loads exactly what botocore's own
loader loads, for every service calroute uses, and fails the same way for a name it does not know."""

import gzip
import json
from collections import OrderedDict

import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader, create_loader

from calroute.adapters.boto_session import DictJSONFileLoader, ServiceDirLoader, new_session

SERVICES = ("dynamodb", "s3", "lambda", "ssm", "stepfunctions", "sts")


def same(a, b) -> bool:
    """Equal and in the same key order at every level (dict == OrderedDict ignores order)."""
    return a == b and json.dumps(a) == json.dumps(b)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("type_name", ("service-2", "endpoint-rule-set-1", "paginators-1"))
def test_models_match_botocore(service, type_name):
    ours = new_session()._session.get_component("data_loader")
    assert isinstance(ours, ServiceDirLoader)
    mine, theirs = ours.load_service_model(service, type_name), create_loader().load_service_model(service, type_name)
    assert same(mine, theirs)
    assert type(mine) is dict and type(theirs) is OrderedDict  # the 3x faster parse is in use


@pytest.mark.parametrize("name", ("endpoints", "partitions", "_retry", "sdk-default-configuration"))
def test_shared_data_files_match_botocore(name):
    ours = new_session()._session.get_component("data_loader")
    assert same(ours.load_data(name), create_loader().load_data(name))


def test_gzipped_model_files_load(tmp_path):
    """botocore reads ``.json.gz`` too (a data path may ship compressed models): so does ours."""
    model = {"version": "2.0", "metadata": {"b": 1, "a": 2}, "operations": {}, "shapes": {}}
    (tmp_path / "example.json.gz").write_bytes(gzip.compress(json.dumps(model).encode()))
    loader = DictJSONFileLoader()
    assert loader.exists(str(tmp_path / "example"))
    assert same(loader.load_file(str(tmp_path / "example")), model)
    assert loader.load_file(str(tmp_path / "missing")) is None


def test_boto3_resource_models_match():
    ours = new_session()._loader
    botocores = Loader(extra_search_paths=list(ours.search_paths), include_default_search_paths=False)
    assert same(ours.load_service_model("dynamodb", "resources-1"), botocores.load_service_model("dynamodb", "resources-1"))


def test_unknown_service_is_botocores_error():
    loader = new_session()._session.get_component("data_loader")
    with pytest.raises(UnknownServiceError, match="dynamodb"):  # the known names are listed
        loader.load_service_model("no-such-service", "service-2")


def test_aws_data_path_is_searched_first(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    paths = new_session()._session.get_component("data_loader").search_paths
    assert paths[0] == str(tmp_path)
    assert paths[:3] == [str(tmp_path), *Loader().search_paths]  # boto3 appends its own data after


def test_clients_work_from_the_session():
    s = new_session()
    assert s.client("s3", region_name="us-east-1").meta.service_model.service_name == "s3"
    assert s.resource("dynamodb", region_name="us-east-1").Table("t").name == "t"


def test_the_models_function_step_functions_client_is_from_the_shared_session(monkeypatch):
    """POST .../train builds its Step Functions client from the process's one session (this loader),
    not a second default botocore session."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from calroute import wiring
    from calroute.adapters.dynamo.base import shared_tables
    from calroute.config import Settings
    from calroute_dev.memory import fake_stores

    client = wiring.models_service(Settings(), stores=fake_stores()).sfn
    assert client.meta.service_model.service_name == "stepfunctions"
    assert client._loader is shared_tables().session._session.get_component("data_loader")
    assert isinstance(client._loader, ServiceDirLoader)
