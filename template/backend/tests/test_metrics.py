"""Prometheus metrics: counted in the app, added up across server processes, served on
METRICS_PORT and not on the API's port."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue

from app.core.config import Settings
from app.core.metrics import POOL_SAMPLE_SECONDS
from tests.servers import app_server, free_port, run_worker
from tests.support import PASSWORD, add_user, organization_of, running_app, token_for


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_of(route: str, status: int, method: str = "GET") -> float:
    return sample("http_requests_total", method=method, route=route, status=str(status))


def label_values() -> set[str]:
    return {
        value
        for family in REGISTRY.collect()
        for metric in family.samples
        for value in metric.labels.values()
    }


# In the app


async def test_requests_are_counted_and_timed_by_route_template_and_status(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    headers = await token_for(app, settings, "ada@example.com")
    user = await add_user(app, "grace@example.com")
    organization = await organization_of(app, user)
    files = "/api/v1/organizations/{org_id}/files/{file_id}"
    before = {
        "health": requests_of("/health", 200),
        "me": requests_of("/api/v1/users/me", 200),
        "file": requests_of(files, 404),
        "unmatched": requests_of("unmatched", 404),
        "timed": sample(
            "http_request_duration_seconds_count",
            method="GET",
            route="/health",
            status="200",
        ),
    }
    for _ in range(3):
        assert (await client.get("/health")).status_code == 200
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    for _ in range(2):
        missing = f"/api/v1/organizations/{organization}/files/{uuid.uuid4()}"
        assert (await client.get(missing, headers=headers)).status_code == 404
    marker = f"no-such-{uuid.uuid4().hex}"
    assert (await client.get(f"/{marker}")).status_code == 404
    strange = marker.upper().replace("-", "")
    other = sample("http_requests_total", method="other", route="/health", status="405")
    assert (await client.request(strange, "/health")).status_code == 405
    assert sample("http_requests_total", method="other", route="/health", status="405") == other + 1
    assert requests_of("/health", 200) - before["health"] == 3
    assert requests_of("/api/v1/users/me", 200) - before["me"] == 1
    assert requests_of(files, 404) - before["file"] == 2
    assert requests_of("unmatched", 404) - before["unmatched"] == 1
    assert (
        sample("http_request_duration_seconds_count", method="GET", route="/health", status="200")
        - before["timed"]
        == 3
    )
    # Neither a path a client made up nor an id becomes a label.
    assert not [
        value
        for value in label_values()
        if marker in value or strange in value or str(organization) in value
    ]


async def test_requests_in_flight_are_counted_while_they_run(settings: Settings) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    async with running_app(settings) as (app, client):

        @app.get("/demo/slow")
        async def slow() -> dict[str, str]:
            entered.set()
            await release.wait()
            return {}

        before = sample("http_requests_in_flight")
        pending = asyncio.create_task(client.get("/demo/slow"))
        await asyncio.wait_for(entered.wait(), timeout=10)
        assert sample("http_requests_in_flight") == before + 1
        release.set()
        assert (await pending).status_code == 200
        assert sample("http_requests_in_flight") == before


async def test_failed_logins_and_throttled_requests_are_counted(settings: Settings) -> None:
    reasons = ("wrong password", "unknown account")
    before = {reason: sample("auth_login_failures_total", reason=reason) for reason in reasons}
    throttled = sample("rate_limited_requests_total", limit="login-account")
    async with running_app(settings, LOGIN_LIMIT_PER_ACCOUNT="2/minute") as (app, client):
        await add_user(app, "ada@example.com")
        statuses = [
            (
                await client.post(
                    "/api/v1/auth/login", data={"username": name, "password": "not it at all"}
                )
            ).status_code
            for name in ["ada@example.com"] * 4 + ["nobody@example.com"]
        ]
    assert statuses == [401, 401, 429, 429, 401]
    assert sample("auth_login_failures_total", reason="wrong password") - before[reasons[0]] == 2
    assert sample("auth_login_failures_total", reason="unknown account") - before[reasons[1]] == 1
    assert sample("rate_limited_requests_total", limit="login-account") - throttled == 2


async def test_the_pool_gauges_follow_the_pool(app: FastAPI, settings: Settings) -> None:
    engine = app.state.engine
    async with engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")
        await asyncio.sleep(POOL_SAMPLE_SECONDS * 2.5)
        assert sample("db_pool_connections_in_use") >= 1
        assert sample("db_pool_connections_size") == engine.pool.size()
    await asyncio.sleep(POOL_SAMPLE_SECONDS * 2.5)
    assert sample("db_pool_connections_in_use") == engine.pool.checkedout()


# Served by `python -m app`, with several server processes


@contextmanager
def serving(settings: Settings, directory: Path, workers: int) -> Iterator[tuple[str, str]]:
    """`python -m app` with `workers` processes and METRICS_PORT; its API and metrics URLs."""
    metrics_port = free_port()
    env = {
        "METRICS_PORT": str(metrics_port),
        "WEB_CONCURRENCY": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    log = directory.parent / "server.log"
    with app_server(settings, log, **env) as url:
        # /health answers once one process is up: wait for the others too.
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < workers:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url, f"http://127.0.0.1:{metrics_port}/metrics"


def scrape(metrics_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(metrics_url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.redis
def test_two_server_processes_are_counted_as_one_server(
    server_settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    configured = server_settings.model_copy(update={"REDIS_URL": redis_url})
    health = {"method": "GET", "route": "/health", "status": "200"}
    with serving(configured, directory, workers=2) as (url, metrics_url):
        # Not on the API's port: that one is public.
        assert httpx.get(f"{url}/metrics").status_code == 404
        before = value(scrape(metrics_url), "http_requests_total", **health)

        def get_health(_: int) -> int:
            # A connection each, so that both processes take some.
            return httpx.get(f"{url}/health", headers={"Connection": "close"}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(get_health, range(80))) == {200}
        scraped = scrape(metrics_url)
        assert value(scraped, "http_requests_total", **health) - before == 80
        assert value(scraped, "http_request_duration_seconds_count", **health) - before == 80
        assert value(scraped, "http_requests_in_flight") == 0
        served_by = {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}
        assert len(served_by) == 2, served_by

        # The queues are read from Redis at each scrape.
        redis = Redis.from_url(redis_url)
        for number in range(3):
            response = httpx.post(
                f"{url}/api/v1/auth/register",
                json={"email": f"user{number}@example.com", "password": PASSWORD},
            )
            assert response.status_code == 202
        Queue("default", connection=redis).enqueue("app.no_such_module.job")
        run_worker(configured)
        Queue("default", connection=redis).enqueue("app.no_such_module.job")
        scraped = scrape(metrics_url)
        assert value(scraped, "jobs_queued", queue="email") == 0
        assert value(scraped, "jobs_queued", queue="default") == 1
        assert value(scraped, "jobs_failed", queue="default") == 1
        assert value(scraped, "jobs_failed", queue="email") == 0


async def test_the_api_serves_no_metrics_path(client: AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 404
    assert (await client.get("/api/v1/metrics")).status_code == 404
