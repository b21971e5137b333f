"""A provider wrapper that times, traces and counts every model call.

Wrapping the port (rather than instrumenting each vendor adapter or the
handler) gives every provider the same span, latency, error, token and cost
series, including providers added later. Series are labelled with the
catalog's bounded name for the model, never with whatever name a request sent.
"""

from __future__ import annotations

import time

from opentelemetry.trace import SpanKind, Status, StatusCode

from infra.errors import PermanentError, TransientError
from infra.pricing import cost_at
from infra.providers.base import ChatProvider, ChatRequest, Completion, OnDelta
from infra.routing.catalog import ModelCatalog
from infra.telemetry.metrics import Metrics
from infra.telemetry.tracing import tracer


class ObservedProvider:
    def __init__(self, inner: ChatProvider, metrics: Metrics | None, catalog: ModelCatalog) -> None:
        self._inner = inner
        self._metrics = metrics
        self._catalog = catalog
        self.name = inner.name

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        model = request.model
        started = time.perf_counter()
        with tracer().start_as_current_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.system": self.name, "gen_ai.request.model": model},
            record_exception=False,
        ) as span:
            try:
                completion = await self._inner.stream_chat(request, on_delta)
            except (TransientError, PermanentError) as exc:
                kind = "transient" if isinstance(exc, TransientError) else "permanent"
                span.set_status(Status(StatusCode.ERROR, f"{kind}: {exc}"))
                self._failed(self._catalog.label(model), kind, started)
                raise
            span.set_attribute("gen_ai.usage.input_tokens", completion.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", completion.output_tokens)
            self._succeeded(model, completion, started)
            return completion

    def _failed(self, model: str, kind: str, started: float) -> None:
        if self._metrics is None:
            return
        self._metrics.provider_errors.labels(self.name, model, kind).inc()
        self._metrics.provider_seconds.labels(self.name, model, "error").observe(
            time.perf_counter() - started
        )

    def _succeeded(self, model: str, completion: Completion, started: float) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        label = self._catalog.label(model)
        metrics.provider_seconds.labels(self.name, label, "ok").observe(
            time.perf_counter() - started
        )
        metrics.tokens.labels(self.name, label, "input").inc(completion.input_tokens)
        metrics.tokens.labels(self.name, label, "output").inc(completion.output_tokens)
        price = self._catalog.prices.price(model)
        if price is not None:  # an unpriced call fails its job where it is priced
            cost = cost_at(
                price,
                completion.input_tokens,
                completion.output_tokens,
                completion.cached_input_tokens,
            )
            # Prometheus samples are floats; the exact Decimal amounts live in Postgres.
            metrics.cost_usd.labels(self.name, label).inc(float(cost))

    async def close(self) -> None:
        await self._inner.close()
