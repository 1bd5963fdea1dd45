"""HTTP client for the calroute API: the local stack (dev auth: ``x-calroute-user``) or a deployed
API (SigV4 for ``execute-api`` with the caller's AWS credentials, or a JWT bearer token).

stdlib ``urllib`` only, so the CLI starts fast; botocore is imported only to sign.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import quote, urlsplit

LOCAL_API = "http://127.0.0.1:3000"
AUTH_MODES = ("dev", "none", "iam", "jwt")
_REGION_RE = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", re.I)


class ApiError(Exception):
    """A non-2xx answer: ``status`` and the API's ``{"error","message","field"}`` body."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        if isinstance(body, dict):
            msg = f"{body.get('error', 'error')}: {body.get('message', '')}"
            if body.get("field"):
                msg += f" (field {body['field']})"
        else:
            msg = str(body)[:300]
        super().__init__(f"HTTP {status} {msg}")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def is_local(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("127.0.0.1", "localhost", "::1")


def region_from_url(url: str) -> Optional[str]:
    m = _REGION_RE.search(url)
    return m.group(1) if m else None


def default_auth(url: str) -> str:
    return "dev" if is_local(url) else "iam"


class Client:
    """``Client(api, auth=..., user=...)``; ``request`` returns a :class:`Response`,
    ``call`` returns the decoded JSON and raises :class:`ApiError` on a non-2xx status."""

    def __init__(self, api: str = LOCAL_API, *, auth: Optional[str] = None, user: Optional[str] = None,
                 region: Optional[str] = None, token: Optional[str] = None, timeout: float = 30.0,
                 credentials: Any = None):
        self.api = api.rstrip("/")
        self.auth = auth or default_auth(api)
        if self.auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {AUTH_MODES}")
        self.user = user
        self.region = region or region_from_url(api) or os.environ.get("AWS_REGION") \
            or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.token = token if token is not None else os.environ.get("CALROUTE_TOKEN", "")
        self.timeout = timeout
        self._credentials = credentials

    # -- helpers
    @staticmethod
    def user_path(user: str, *rest: str) -> str:
        return "/v1/users/" + "/".join(quote(p, safe="") for p in (user, *rest))

    def _credentials_or_fail(self):
        if self._credentials is None:
            import boto3  # lazily: only deployed APIs with --auth iam need it

            creds = boto3.session.Session().get_credentials()
            if creds is None:
                raise RuntimeError("--auth iam needs AWS credentials (boto3's default chain found none)")
            self._credentials = creds.get_frozen_credentials()
        return self._credentials

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """SigV4 headers for API Gateway (service ``execute-api``)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        req = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(self._credentials_or_fail(), "execute-api", self.region).add_auth(req)
        return dict(req.headers.items())

    def headers_for(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        headers = dict(headers)
        if self.auth == "dev" and self.user:
            headers["x-calroute-user"] = self.user
        elif self.auth == "jwt":
            if not self.token:
                raise RuntimeError("--auth jwt needs a token: set CALROUTE_TOKEN")
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.auth == "iam":
            headers = self.sign(method, url, headers, body)
        return headers

    # -- requests
    def request(self, method: str, path: str, *, json_body: Any = None, body: Optional[bytes] = None,
                content_type: Optional[str] = None, headers: Optional[dict[str, str]] = None,
                user: Optional[str] = None) -> Response:
        url = self.api + path
        hdrs = {"accept": "application/json", **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            content_type = content_type or "application/json"
        if content_type:
            hdrs["content-type"] = content_type
        data = body or b""
        if user is not None and self.auth == "dev":
            hdrs["x-calroute-user"] = user
        hdrs = self.headers_for(method, url, hdrs, data) if "x-calroute-user" not in hdrs else hdrs
        req = urllib.request.Request(url, data=data if method not in ("GET", "HEAD") else None,
                                     method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) URL
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, exc.read())

    def call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.request(method, path, **kw)
        try:
            data = resp.json()
        except ValueError:
            data = resp.text
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, data)
        return data

    # -- the API, one method per route the CLI uses
    def ingest(self, user: str, events: list[dict]) -> dict:
        return self.call("POST", self.user_path(user, "events"), json_body={"events": events}, user=user)

    def put_calendar(self, user: str, calendar: str, name: str = "", description: str = "") -> dict:
        return self.call("PUT", self.user_path(user, "calendars", calendar),
                         json_body={"name": name or calendar, "description": description}, user=user)

    def import_ics(self, user: str, calendar: str, data: bytes) -> dict:
        return self.call("POST", self.user_path(user, "calendars", calendar, "import"), body=data,
                         content_type="text/calendar", user=user)

    def classify(self, user: str, event: dict, remember: bool = False) -> dict:
        body = {"event": event, **({"remember": True} if remember else {})}
        return self.call("POST", self.user_path(user, "classify"), json_body=body, user=user)

    def review(self, user: str, limit: int = 10) -> dict:
        return self.call("GET", self.user_path(user, "review") + f"?limit={int(limit)}", user=user)

    def settings(self, user: str, **values) -> dict:
        """``GET .../settings``, or ``PUT`` with ``values`` (e.g. ``remember=True``)."""
        if values:
            return self.call("PUT", self.user_path(user, "settings"), json_body=values, user=user)
        return self.call("GET", self.user_path(user, "settings"), user=user)

    def confirm(self, user: str, event_id: str) -> dict:
        return self.call("POST", self.user_path(user, "events", event_id, "confirm"), json_body={}, user=user)

    def classify_batch(self, user: str, events: list[dict]) -> dict:
        return self.call("POST", self.user_path(user, "classify", "batch"), json_body={"events": events},
                         user=user)

    def parse(self, user: str, text: str, *, now: Optional[str] = None, timezone: Optional[str] = None) -> dict:
        body: dict = {"text": text}
        if now:
            body["now"] = now
        if timezone:
            body["timezone"] = timezone
        return self.call("POST", self.user_path(user, "events", "parse"), json_body=body, user=user)

    def correct(self, user: str, event_id: str, calendar: str) -> dict:
        return self.call("POST", self.user_path(user, "events", event_id, "correction"),
                         json_body={"calendar_id": calendar}, user=user)

    def train(self, user: str) -> dict:
        return self.call("POST", self.user_path(user, "train"), json_body={}, user=user)

    def model(self, user: str) -> dict:
        return self.call("GET", self.user_path(user, "model"), user=user)

    def models(self, user: str) -> dict:
        return self.call("GET", self.user_path(user, "models"), user=user)

    def stats(self, user: str) -> dict:
        return self.call("GET", self.user_path(user, "stats"), user=user)

    def fire_schedule(self) -> dict:
        """Local stack only: start the training state machine with the schedule's input."""
        return self.call("POST", "/local/schedule", json_body={})

    def local_run(self, execution_arn: str) -> dict:
        """Local stack only: the status of a state machine execution."""
        return self.call("POST", "/local/execution", json_body={"execution_arn": execution_arn})
