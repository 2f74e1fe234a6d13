"""OpenTelemetry traces, exported over OTLP/HTTP: imported only when they are turned on.

`Settings.tracing_enabled` says whether they are: an OTLP endpoint is set
(OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), and OTEL_SDK_DISABLED
is not true. Then the API
(app/main.py) and the worker (app/worker/worker.py) call `start_tracing` once, and spans
come from:

- FastAPI itself, for each request (it traces on its own once a provider is set);
- SQLAlchemy, for each statement; Redis, for each command (the queue, rate limits);
  botocore, for each S3 call;
- app/services/email_service.py, for each SMTP delivery;
- the worker, for each job, as a child of the span of the request that enqueued it
  (app/core/queue.py carries the trace context in the job).

Without an endpoint none of this module's imports happen; the few calls into
OpenTelemetry's API elsewhere (which FastAPI imports anyway) then do nothing.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from app.core.config import Settings

_provider: TracerProvider | None = None


class RedactQueries(SpanProcessor):
    """A request's span keeps the names of its query's parameters, not their values,
    which may be a token or an address."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        query = span.attributes.get("url.query") if span.attributes else None
        if isinstance(query, str):
            names = [name for name, _ in parse_qsl(query, keep_blank_values=True)]
            span.set_attribute("url.query", "&".join(f"{name}=REDACTED" for name in names))


def start_tracing(settings: Settings, service: str) -> None:
    """Export this process's spans as `service`; once per process."""
    global _provider
    if _provider is not None:
        return
    resource = Resource.create(
        {SERVICE_NAME: service, "deployment.environment.name": settings.ENVIRONMENT.value}
    )
    # The sampler comes from OTEL_TRACES_SAMPLER (every trace by default) and the
    # exporter's headers, timeout and the like from the other standard variables.
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=settings.otlp_traces_endpoint)
    provider.add_span_processor(RedactQueries())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    # Its declared range stops short of SQLAlchemy 2.1, whose events it uses unchanged;
    # tests/test_tracing.py checks that the statements are traced.
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    RedisInstrumentor().instrument(tracer_provider=provider)
    BotocoreInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _provider = provider


def stop_tracing() -> None:
    """Send the spans still buffered, as the process stops."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None
