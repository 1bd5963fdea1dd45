"""The boto3 session every AWS client of a process is created from, with a botocore loader that
finds a service model by looking in that service's own directory.

botocore's :meth:`~botocore.loaders.Loader.load_service_model` first checks that the name is a
known service by listing *every* service directory of its data path (~420 of them, each listed
again for its API versions): ~45 ms of the predict function's cold start, spent before its first
DynamoDB client exists (docs/serving.md, "Cold start"). :class:`ServiceDirLoader` answers the same
question from the one directory it needs (``list_api_versions``, which botocore calls next anyway)
and otherwise leaves botocore's loading alone: same search paths (``AWS_DATA_PATH`` first), same
files, same extras, same errors (:class:`~botocore.exceptions.UnknownServiceError` for a name
that has no model of that type; with an explicit ``api_version``, which calroute never passes, a
missing model is botocore's :class:`~botocore.exceptions.DataNotFoundError` instead). ``tests/unit/test_boto_session.py`` holds it to botocore's own
loader, model for model, for every service calroute uses.

Its files are parsed into plain dicts (:class:`DictJSONFileLoader`), not botocore's
``OrderedDict`` pairs hook: insertion order is the same (dicts keep it), and building an
``OrderedDict`` per JSON object is what makes botocore's parse 3x slower (endpoints.json, 1.2 MB:
27 ms against 8 ms here; every model the first DynamoDB and S3 clients load: ~85 ms against ~30).
botocore builds its own ``OrderedDict`` where it needs one (``botocore.model``) and never checks
the type of what the loader returns; the test compares the models key order included.
"""

from __future__ import annotations

import json
import os

import boto3
import botocore.session
from botocore.exceptions import DataNotFoundError, UnknownServiceError
from botocore.loaders import JSONFileLoader, Loader, create_loader, instance_cache


class DictJSONFileLoader(JSONFileLoader):
    """botocore's JSON file loader (``.json`` and ``.json.gz``) parsing into plain dicts."""

    def _load_file(self, full_path, open_method):
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as fp:
            payload = fp.read().decode("utf-8")
        return json.loads(payload)


class ServiceDirLoader(Loader):
    """botocore's :class:`~botocore.loaders.Loader` without the scan of every service directory,
    reading files with :class:`DictJSONFileLoader`."""

    FILE_LOADER_CLASS = DictJSONFileLoader

    @instance_cache
    def load_service_model(self, service_name, type_name, api_version=None):
        if api_version is None:
            try:
                api_version = self.determine_latest_version(service_name, type_name)
            except DataNotFoundError:
                # what botocore raises for a name it does not know (it lists the known ones; listing
                # them is the cost this class avoids, so only when there is an error to explain)
                raise UnknownServiceError(service_name=service_name,
                                          known_service_names=", ".join(self.list_available_services(type_name))
                                          ) from None
        model = self.load_data(os.path.join(service_name, api_version, type_name))
        self._extras_processor.process(model, self._find_extras(service_name, type_name, api_version))
        return model


def new_session() -> boto3.session.Session:
    """A boto3 session on a botocore session whose data loader is a :class:`ServiceDirLoader` with
    the search paths botocore would have used (``AWS_DATA_PATH``, then its own data)."""
    core = botocore.session.Session()
    default = create_loader(core.get_config_variable("data_path"))
    loader = ServiceDirLoader(extra_search_paths=list(default.search_paths), include_default_search_paths=False)
    core.register_component("data_loader", loader)
    return boto3.session.Session(botocore_session=core)
