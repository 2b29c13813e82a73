"""/metrics is never on the API's port outside development and test (the process with
its own metrics port: tests/ops/test_metrics.py)."""

from __future__ import annotations

import httpx
import pytest

from merci.config import Settings
from runtime import faces


@pytest.mark.parametrize(("env", "metrics_port", "api_port", "status"), [
    ("staging", 0, 8000, 404),  # no metrics port: no metrics at all
    ("production", 0, 8000, 404),
    ("production", 9100, 8000, 404),  # the API's port
    ("test", 9100, 8000, 404),  # a metrics port in any environment takes /metrics off the API's
])
async def test_no_metrics_on_the_api_port(env: str, metrics_port: int, api_port: int, status: int) -> None:
    app = faces.app(Settings(env=env, secret_key="k", metrics_port=metrics_port), "all")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://127.0.0.1:{api_port}") as c:
        r = await c.get("/metrics")
    assert r.status_code == status and "merci_" not in r.text


async def test_the_metrics_port_serves_nothing_else() -> None:
    app = faces.app(Settings(env="production", secret_key="k", metrics_port=9100), "all")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:9100") as c:
        for path in ("/graphql", "/healthz", "/directory", "/embed/button"):
            assert (await c.get(path)).status_code == 404, path
