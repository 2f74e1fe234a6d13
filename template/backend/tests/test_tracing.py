"""Traces: what the API and the worker export over OTLP/HTTP to a receiver on loopback,
decoded; and that without an endpoint no tracing code is loaded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from app.core.config import LogFormat, Settings
from app.core.queue import JobCall, JobQueue
from tests.servers import app_server, http_receiver, run_script, run_worker
from tests.support import PASSWORD


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    status: tuple[int, str] = (0, "")


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver: keeps every span it is sent."""

    url: str
    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {
                item.key: item.value.string_value for item in resource_spans.resource.attributes
            }
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {
                        item.key: getattr(
                            item.value, item.value.WhichOneof("value") or "string_value"
                        )
                        for item in span.attributes
                    }
                    with self.lock:
                        self.spans.append(
                            Span(
                                resource["service.name"],
                                span.name,
                                span.trace_id.hex(),
                                span.span_id.hex(),
                                span.parent_span_id.hex(),
                                span.kind,
                                attributes,
                                (span.status.code, span.status.message),
                            )
                        )

    def status_of(self, name: str) -> tuple[int, str]:
        """The kind of the one span called `name`, and its status message if it is an
        error (empty otherwise)."""
        with self.lock:
            [span] = [span for span in self.spans if span.name == name]
        code, message = span.status
        return span.kind, message if code == Status.STATUS_CODE_ERROR else ""

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def wait_for(self, found: Any, what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while not (result := found()):
            assert time.monotonic() < deadline, f"no {what} in {self.spans}"
            time.sleep(0.1)
        return result


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []
    answer: bytes = ExportTraceServiceResponse().SerializeToString()

    def take(path: str, body: bytes) -> bytes:
        if path == "/v1/traces":
            holder[0].take(body)
        return answer

    with http_receiver(take) as url:
        holder.append(Receiver(url))
        yield holder[0]


@pytest.mark.redis
def test_one_requests_trace_runs_through_the_api_the_database_redis_and_its_job(
    server_settings: Settings,
    redis_url: str,
    smtp_settings: dict[str, Any],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    configured = server_settings.model_copy(
        update={
            "REDIS_URL": redis_url,
            "LOG_FORMAT": LogFormat.JSON,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            **smtp_settings,
        }
    )
    log = tmp_path / "api.log"
    with app_server(configured, log, OTEL_BSP_SCHEDULE_DELAY="200") as url:
        response = httpx.post(
            f"{url}/api/v1/auth/register?token=QUERY-SECRET",
            json={"email": "ada@example.com", "password": PASSWORD},
            headers={"X-Request-ID": "traced-request-1"},
        )
        assert response.status_code == 202

        def server_span() -> Span | None:
            with receiver.lock:
                found = [
                    span
                    for span in receiver.spans
                    if span.kind == SpanMessage.SPAN_KIND_SERVER
                    and span.attributes.get("http.route") == "/api/v1/auth/register"
                ]
            return found[0] if found else None

        request_span: Span = receiver.wait_for(server_span, "server span of the registration")
        worker = run_worker(configured)
        assert worker.returncode == 0
        api_service = configured.OTEL_SERVICE_NAME

        def whole_trace() -> list[Span] | None:
            spans = receiver.trace(request_span.trace_id)
            services = {span.service for span in spans}
            done = any(span.name == "smtp send" for span in spans)
            return spans if done and services == {api_service, f"{api_service}-worker"} else None

        trace = receiver.wait_for(whole_trace, "worker spans in the registration's trace")
    api = [span for span in trace if span.service == api_service]
    worker_spans = [span for span in trace if span.service != api_service]
    # The API: its server span, the statements of the registration, the job's enqueueing.
    assert request_span.name == "POST /api/v1/auth/register"
    # A query's values are left out: a client may put a token there.
    assert request_span.attributes["url.query"] == "token=REDACTED"
    for span in trace:
        assert not [value for value in span.attributes.values() if "SECRET" in str(value)]
        assert not [value for value in span.attributes.values() if PASSWORD in str(value)]
    assert any(
        "db.system" in span.attributes or "db.system.name" in span.attributes
        for span in api
        if span.attributes.get("db.system", span.attributes.get("db.system.name")) != "redis"
    ), api
    redis_spans = [
        span
        for span in api
        if "redis" in (span.attributes.get("db.system"), span.attributes.get("db.system.name"))
    ]
    assert redis_spans, api
    # The worker: the job's span, a child of a span of the request, with the delivery in it.
    [job] = [span for span in worker_spans if span.kind == SpanMessage.SPAN_KIND_CONSUMER]
    assert job.name.startswith("job app.services.email_service.")
    assert job.parent_id in {span.span_id for span in api}
    [smtp] = [span for span in worker_spans if span.name == "smtp send"]
    assert smtp.parent_id in {span.span_id for span in worker_spans}
    assert smtp.attributes["server.port"] == smtp_settings["SMTP_PORT"]
    # The log lines of the request name its trace.
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ours = [record for record in records if record.get("request_id") == "traced-request-1"]
    assert ours
    assert {record.get("trace_id") for record in ours} == {request_span.trace_id}
    worker_lines = [json.loads(line) for line in worker.stderr.splitlines()]
    assert {
        record.get("trace_id")
        for record in worker_lines
        if record.get("request_id") == "traced-request-1"
    } == {request_span.trace_id}


def test_the_storage_is_traced(
    server_settings: Settings, s3_settings: dict[str, Any], receiver: Receiver, tmp_path: Path
) -> None:
    configured = server_settings.model_copy(
        update={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, **s3_settings}
    )
    with app_server(configured, tmp_path / "api.log", OTEL_BSP_SCHEDULE_DELAY="200") as url:

        def s3_spans() -> list[Span]:
            with receiver.lock:
                return [
                    span
                    for span in receiver.spans
                    if span.attributes.get("rpc.system") == "aws-api" or span.name.startswith("S3.")
                ]

        # The readiness check asks the bucket.
        assert httpx.get(f"{url}/health/ready").status_code == 200
        spans = receiver.wait_for(s3_spans, "S3 spans")
    assert all(span.service == configured.OTEL_SERVICE_NAME for span in spans)


@pytest.mark.parametrize("endpoint", [None, "http://127.0.0.1:9"])
def test_tracing_code_is_loaded_only_with_an_endpoint(
    settings: Settings, endpoint: str | None
) -> None:
    # Empty is unset to the settings, whatever this machine's environment holds.
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint or "",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
        "OTEL_SDK_DISABLED": "false",
    }
    # OpenTelemetry's API is FastAPI's own dependency, and redis-py looks for the metrics
    # SDK as it is imported; the tracing SDK, the exporter and the instrumentations are
    # what tracing loads.
    script = (
        "import sys, app.main, app.worker.worker\n"
        "print(sorted({name.split('.')[1] for name in sys.modules"
        " if name.startswith(('opentelemetry.sdk.trace', 'opentelemetry.exporter',"
        " 'opentelemetry.instrumentation'))}))\n"
    )
    loaded = json.loads(run_script(settings, script, **env).stdout.strip().replace("'", '"'))
    assert loaded == ([] if endpoint is None else ["exporter", "instrumentation", "sdk"])


@pytest.mark.redis
def test_a_job_that_fails_is_an_error_in_its_span(
    server_settings: Settings, redis_url: str, receiver: Receiver
) -> None:
    configured = server_settings.model_copy(
        update={"REDIS_URL": redis_url, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    )
    queue = JobQueue(configured)
    try:
        # The worker imports `json.loads` and calls it on "x": an error, which RQ catches.
        queue.put(
            JobCall(function=json.loads, args=("x",), description="a job that fails", retry=False)
        )
    finally:
        queue.close()
    run_worker(configured)

    def failed_job() -> Span | None:
        with receiver.lock:
            jobs = [span for span in receiver.spans if span.name == "job json.loads"]
        return jobs[0] if jobs else None

    receiver.wait_for(failed_job, "the failed job's span")
    kind_and_status = (SpanMessage.SPAN_KIND_CONSUMER, "JSONDecodeError")
    assert receiver.status_of("job json.loads") == kind_and_status
