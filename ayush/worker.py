"""Running one consumer group in this process until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from contextlib import AsyncExitStack

from ayush.groups import GROUPS
from infra.kafka.publisher import Publisher
from infra.kafka.runner import GroupRunner
from infra.settings import Settings
from infra.telemetry.metrics import Metrics
from infra.telemetry.tracing import setup_tracing

log = logging.getLogger("ayush.worker")


async def build_runner(settings: Settings, group: str, stack: AsyncExitStack) -> GroupRunner:
    wired = GROUPS[group]
    assert wired.build is not None
    # Its registry is the one the worker serves on /metrics.
    publisher = Publisher(settings, Metrics() if settings.telemetry_enabled else None)
    await publisher.start()
    stack.push_async_callback(publisher.stop)
    ports = await wired.build(settings, publisher, stack)
    return GroupRunner.for_group(settings, wired.group, ports, publisher)


def tune_gc() -> None:
    """Collect garbage less often, and never scan what start-up built.

    A worker decodes thousands of events a second; with the default
    thresholds the collector keeps walking the long-lived objects (clients,
    pools, modules) and costs more than the decoding itself.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def run_worker(settings: Settings, group: str) -> None:
    async with AsyncExitStack() as stack:
        stack.callback(setup_tracing(settings, group))
        consumer = await build_runner(settings, group, stack)
        metrics = consumer.publisher.metrics
        if metrics is not None and settings.metrics_port:
            server = metrics.serve(settings.metrics_port, settings.metrics_host)
            stack.callback(server.close)
            log.info("metrics on :%d/metrics", server.port)
        tune_gc()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stop)
        ready = asyncio.Event()
        runner = asyncio.create_task(consumer.run(ready=ready))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            # Printed whatever the log level: `ayush dev` and the tests wait for this line.
            print(
                f"worker {group} ready: {', '.join(consumer.topics)}", file=sys.stderr, flush=True
            )
        waiter.cancel()
        await runner
        log.info(
            "worker %s stopped: %d handled, %d dead-lettered, %d of forgotten users skipped",
            group,
            consumer.handled,
            consumer.dead_lettered,
            consumer.forgotten,
        )
