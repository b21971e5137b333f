"""How a group runner takes events (its delivery policy) and how it retries a handler.

- `Each(concurrency)`: every event is its own task, up to `concurrency` at once; for
  handlers that wait seconds on a vendor (model calls, connectors, embeddings).
- `Batches(max_events, max_age_s)`: events are handed over as lists, one list at a time,
  once `max_events` are in hand or the oldest is `max_age_s` old (0: whatever one poll
  brought); for handlers that write many events in one statement (usage, archive).
- `RetryPolicy(attempts, backoff_s, timeout_s)`: every attempt runs under
  `asyncio.timeout(timeout_s)`; a `TransientError` or a timeout is tried again after an
  exponential, jittered, capped wait, until `attempts` have been made.
- `Timer(every_s, run)`: periodic work for what no event announces (a deadline passing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from infra.errors import TransientError
from infra.settings import Settings


@dataclass(frozen=True)
class Each:
    concurrency: int


@dataclass(frozen=True)
class Batches:
    max_events: int
    max_age_s: float = 0.0


Policy = Each | Batches


@dataclass
class Attempts:
    """How many attempts a handler call has made so far (read after it gave up)."""

    made: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    timeout_s: float
    backoff_s: float = 0.2
    backoff_max_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings, timeout_s: float | None = None) -> RetryPolicy:
        return cls(
            attempts=settings.handler_max_attempts,
            timeout_s=timeout_s or settings.handler_timeout_s,
            backoff_s=settings.handler_backoff_s,
        )

    async def call(
        self,
        fn: Callable[[], Awaitable[None]],
        attempts: Attempts,
        *,
        retry_timeouts: bool = True,
    ) -> None:
        """Run `fn` until it succeeds, fails for good, or the attempts are spent."""
        again = (TransientError, TimeoutError) if retry_timeouts else (TransientError,)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(again),
            stop=stop_after_attempt(self.attempts),
            # `initial` (not 9.2's alias `multiplier`): google-genai holds tenacity below 9.2.
            wait=wait_exponential_jitter(
                initial=self.backoff_s, max=self.backoff_max_s, jitter=self.backoff_s
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                attempts.made = attempt.retry_state.attempt_number
                async with asyncio.timeout(self.timeout_s):
                    await fn()


def calling_models(settings: Settings) -> RetryPolicy:
    """For handlers that wait on model calls: the provider's whole budget, its retries too."""
    tries = settings.provider_max_attempts
    budget = tries * settings.provider_timeout_s + (tries - 1) * settings.provider_backoff_max_s
    return RetryPolicy.from_settings(settings, timeout_s=max(settings.handler_timeout_s, budget))


@dataclass(frozen=True)
class Timer:
    every_s: float
    run: Callable[[], Awaitable[None]] = field(repr=False)
