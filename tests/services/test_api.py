"""Operational endpoints: health, OpenAPI, metrics, error shape."""

from __future__ import annotations


async def test_healthz_checks_postgres_and_s3(http):
    resp = await http.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_openapi_is_served(http):
    spec = (await http.get("/schema/openapi.json")).json()
    assert "/v1/uploads" in str(spec["paths"].keys())
    assert (await http.get("/schema")).status_code == 200


async def test_metrics_count_requests_by_full_route_template(http, settings, tenants):
    t = await tenants.create()
    await http.get("/healthz")
    await t.request("GET", "/v1/models/nothing-here/versions/latest")
    operator = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
    text = (await http.get("/metrics", headers=operator)).text
    assert 'hangar_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="/v1/models/{name}/versions/{ref}",status="404"' in text
    assert "nothing-here" not in text


async def test_metrics_need_a_token_by_default(http, tenants):
    assert (await http.get("/metrics")).status_code == 401
    t = await tenants.create()
    resp = await http.get("/metrics", headers=t.auth)  # a tenant's key is not enough
    assert resp.status_code == 401
    assert "HANGAR_METRICS_TOKEN" in resp.json()["error"]


async def _serve_with(settings, **metrics):
    import asyncio

    import uvicorn

    from core.settings import MetricsSettings
    from services.api.app import create_app
    from services.embedded import free_port

    changed = settings.model_copy(update={"metrics": MetricsSettings(**metrics)})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(changed), port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    return changed, f"http://127.0.0.1:{port}", server, task


async def test_metrics_can_have_their_own_token_be_off_or_bound_elsewhere(settings):
    import httpx

    from services.api.metrics import start_listener
    from services.embedded import free_port

    operator = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
    bind = f"127.0.0.1:{free_port()}"
    for metrics, own, elsewhere in [
        ({"mode": "token", "token": "scrape-me-please"}, 200, None),
        ({"mode": "off"}, 404, None),
        ({"mode": "bind", "bind": bind}, 404, f"http://{bind}/metrics"),
    ]:
        changed, url, server, task = await _serve_with(settings, **metrics)
        stop = start_listener(changed)
        try:
            async with httpx.AsyncClient(base_url=url) as http:
                scraper = {"Authorization": "Bearer scrape-me-please"}
                assert (await http.get("/metrics", headers=scraper)).status_code == own
                if metrics["mode"] == "token":  # its own token replaces the operator's
                    assert (await http.get("/metrics", headers=operator)).status_code == 401
                if elsewhere:
                    scraped = await http.get(elsewhere)
                    assert scraped.status_code == 200
                    assert "hangar_http_requests_total" in scraped.text
        finally:
            stop()
            server.should_exit = True
            await task


async def test_invalid_body_is_a_clear_400(tenants):
    t = await tenants.create()
    resp = await t.request("POST", "/v1/uploads/", json={"model": "m", "size": -1})
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == {"error", "detail", "code"}
    assert "size" in str(body)


def _requests_to(text: str, route: str) -> float:
    """The sum of hangar_http_requests_total over every status of ``route``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("hangar_http_requests_total{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_add_up_every_worker_of_hangar_serve(settings, tmp_path):
    """`hangar serve --workers 2`: a scrape counts what every worker served, on the API
    port (token) and on a bound address. Each worker in turn is stopped (SIGSTOP) while
    requests arrive, so each of them is certain to have served some."""
    import asyncio
    import os
    import signal
    import subprocess
    import sys

    import httpx
    import psutil

    from services.embedded import free_port

    token = settings.operator_token.get_secret_value()
    for mode in ("token", "bind"):
        port, bind = free_port(), f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "HANGAR_DATABASE_URL": settings.database.url,
            "HANGAR_S3_ENDPOINT": settings.s3.endpoint,
            "HANGAR_S3_ACCESS_KEY": settings.s3.access_key,
            "HANGAR_S3_SECRET_KEY": settings.s3.secret_key.get_secret_value(),
            "HANGAR_S3_BUCKET": settings.s3.bucket,
            "HANGAR_OPERATOR_TOKEN": token,
            "HANGAR_INSTALLATION_KEY": str(settings.installation_key_path),
            "HANGAR_METRICS_MODE": mode,
            "HANGAR_METRICS_BIND": bind,
        }
        log = tmp_path / f"serve-{mode}.log"
        with log.open("wb") as out:
            serve = subprocess.Popen(
                [sys.executable, "-m", "services.cli.main", "serve", "--port", str(port)]
                + ["--workers", "2"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            workers = []
            for _ in range(300):
                workers = psutil.Process(serve.pid).children()
                try:
                    if len(workers) == 2 and httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            assert len(workers) == 2, log.read_text()
            for paused in workers:
                paused.send_signal(signal.SIGSTOP)
                try:
                    for _ in range(5):  # a new connection each: the other worker takes it
                        assert httpx.get(f"{base}/v1/models/").status_code == 401
                finally:
                    paused.send_signal(signal.SIGCONT)
            assert [w.is_running() for w in workers] == [True, True], log.read_text()
            if mode == "token":
                scraped = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
            else:
                scraped = httpx.get(f"http://{bind}/metrics")
            assert scraped.status_code == 200, scraped.text
            assert _requests_to(scraped.text, "/v1/models") == 10, scraped.text[-3000:]
        finally:
            serve.terminate()
            serve.wait(20)
