"""A consumer group, declared once, in its own module.

    group = Group("usage", [USAGE_RECORDED.name], lambda s: Batches(s.usage_batch_max))

    @group.on(jobs.JOB_FAILED, jobs.JobFailed, batch=True)
    async def handle_job_failed(events: list[Envelope[JobFailed]], ports: Ports) -> None: ...

A handler takes the decoded event (a list of them with `batch=True`) and the group's
ports, the adapters the composition root built for it (`ayush/groups.py`). The runner
decodes the record into `Envelope[payload]` before the handler sees it, so a record that
does not fit the model is a dead letter, never a handler's exception. Everything else a
group needs (delivery, retries, dead letters, telemetry, shutdown) is the runner's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from infra.kafka.codec import decode_raw
from infra.kafka.policies import Each, Policy, RetryPolicy, Timer
from infra.kafka.routes import ANY, Record, Route, envelope
from infra.settings import Settings
from schemas.envelope import Envelope
from schemas.versions import current_version

P = TypeVar("P")
Handler = Callable[[Any, P], Awaitable[None]]
GiveUp = Callable[[Any, str, P], Awaitable[None]]
Periodic = Callable[[P], Awaitable[None]]


def one_at_a_time(settings: Settings) -> Policy:
    return Each(1)


@dataclass
class Declared(Generic[P]):
    """One event type's handler, as its group declared it."""

    type: str
    handle: Handler[P]
    decode: Callable[[Record], Any]
    batch: bool
    retry: Callable[[Settings], RetryPolicy] | None
    give_up: GiveUp[P] | None = None


@dataclass(frozen=True)
class Every(Generic[P]):
    seconds: Callable[[Settings], float]
    run: Periodic[P]


class Group(Generic[P]):
    """A consumer group: its name, topics, delivery policy and one handler per event type.

    `replay_only`: a projection that only runs in replay, to rebuild a read model.
    """

    def __init__(
        self,
        name: str,
        topics: Sequence[str],
        policy: Callable[[Settings], Policy] = one_at_a_time,
        *,
        replay_only: bool = False,
    ) -> None:
        self.name = name
        self.topics = list(topics)
        self.policy = policy
        self.replay_only = replay_only
        self.declared: dict[str, Declared[P]] = {}
        self.periodic: Every[P] | None = None

    def on(
        self,
        event_type: str,
        payload: type[BaseModel] | None = None,
        *,
        decode: Callable[[Record], Any] | None = None,
        batch: bool = False,
        retry: Callable[[Settings], RetryPolicy] | None = None,
    ) -> Callable[[Handler[P]], Handler[P]]:
        """Declare the handler of `event_type` (ANY: every record, undecoded).

        The event comes as `Envelope[payload]`; without a payload model, as the envelope
        with its payload a dict; `decode` when the group reads the record its own way.
        """
        if event_type in self.declared:
            raise ValueError(f"{self.name}: {event_type} has a handler already")
        if decode is None:
            decode = typed(payload) if payload is not None else envelope

        def register(handle: Handler[P]) -> Handler[P]:
            self.declared[event_type] = Declared(event_type, handle, decode, batch, retry)
            return handle

        return register

    def gives_up(self, event_type: str) -> Callable[[GiveUp[P]], GiveUp[P]]:
        """Declare what settles an event of `event_type` once it is a dead letter (a job
        never stays `running` for good). Called with one event and a short reason."""

        def register(give_up: GiveUp[P]) -> GiveUp[P]:
            self.declared[event_type].give_up = give_up
            return give_up

        return register

    def every(self, seconds: Callable[[Settings], float]) -> Callable[[Periodic[P]], Periodic[P]]:
        """Declare periodic work, for what no event announces (a deadline passing)."""

        def register(run: Periodic[P]) -> Periodic[P]:
            self.periodic = Every(seconds, run)
            return run

        return register

    def routes(self, ports: P) -> dict[str, Route]:
        """The handlers bound to the group's ports: what the runner runs."""
        return {
            event_type: Route(
                _bind(d.handle, ports),
                decode=d.decode,
                batch=d.batch,
                give_up=_bind_give_up(d.give_up, ports) if d.give_up else None,
                retry=d.retry,
            )
            for event_type, d in self.declared.items()
        }

    def timer(self, settings: Settings, ports: P) -> Timer | None:
        if self.periodic is None:
            return None
        return Timer(self.periodic.seconds(settings), partial(self.periodic.run, ports))

    def __repr__(self) -> str:
        return f"Group({self.name!r})"


def _bind(handle: Handler[P], ports: P) -> Callable[[Any], Awaitable[None]]:
    async def bound(event: Any) -> None:
        await handle(event, ports)

    bound.__name__ = handle.__name__
    return bound


def _bind_give_up(give_up: GiveUp[P], ports: P) -> Callable[[Any, str], Awaitable[None]]:
    async def bound(event: Any, reason: str) -> None:
        await give_up(event, reason, ports)

    bound.__name__ = give_up.__name__
    return bound


def typed(payload: type[BaseModel]) -> Callable[[Record], Envelope[Any]]:
    """Decodes into `Envelope[payload]`: in one pass when the event is at the current
    version, through the upcasters when it is older."""
    model: type[Envelope[Any]] = Envelope[payload]  # type: ignore[valid-type]
    validate = model.model_validate_json

    def decode(record: Record) -> Envelope[Any]:
        try:
            event = validate(record.value or b"")
            if event.version >= current_version(event.type):
                return event
        except ValidationError:
            pass
        upcast = decode_raw(record.value)  # raises for what is no envelope at all
        return model.model_validate(upcast.model_dump())

    return decode


__all__ = ["ANY", "Declared", "Group", "typed"]
