"""The Swagger UI (Powertools ``enable_swagger``, GET /v1/docs) of the local stack, rendered by a real
browser: headless Chromium loads the page, its JavaScript renders the operations of the whole API
(the merged document of every HTTP function), and a screenshot is taken. Skipped when no Chromium is
installed (.ci/run installs Debian's package)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from support.local_stack import running_stack

    with running_stack(tmp_path_factory.mktemp("calroute-swagger")) as st:
        yield st


def _chromium(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", "--window-size=1280,2400", "--virtual-time-budget=15000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_docs_page_is_powertools_swagger_with_the_whole_api(stack):
    r = stack.client().request("GET", "/v1/docs")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in r.text and "unpkg.com" not in r.text  # bundled JS: works offline
    spec = stack.client().call("GET", "/v1/docs?format=json")
    assert "/v1/users/{userId}/classify" in spec["paths"] and "/v1/users/{userId}/events" in spec["paths"]


def test_docs_route_is_off_unless_enabled(stack, monkeypatch):
    from calroute.config import settings

    monkeypatch.setenv("SWAGGER_UI", "false")
    settings.cache_clear()
    try:
        r = stack.client().request("GET", "/v1/docs")
        assert r.status == 404 and r.json()["error"] == "not_found"
    finally:
        monkeypatch.setenv("SWAGGER_UI", "true")
        settings.cache_clear()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)")
def test_headless_chromium_renders_the_routes(stack, tmp_path):
    url = f"{stack.url}/v1/docs"
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # rendered by Swagger UI's JavaScript (not in the served HTML): one block per operation
    assert "opblock-summary-path" in html, html[:2000]
    for path in ("/v1/users/{userId}/classify", "/v1/users/{userId}/classify/batch", "/v1/users/{userId}/events",
                 "/v1/users/{userId}/model", "/v1/users/{userId}/stats"):
        assert f'data-path="{path}"' in html, path
    shot = tmp_path / "swagger.png"
    done = _chromium(f"--screenshot={shot}", url)
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one
