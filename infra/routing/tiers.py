"""Cheapest fit: a named route (`model: "auto"`, or any `[routes.<name>]` of the routing
file) picks one model per request from ordered tiers, cheapest first, by rules a tenant
can read (GET /v1/routing/routes).

A tier takes a request unless one of its limits refuses it, checked in this order:
- `supports`: what its model can do, of "tools", "images", "json_schema" (from the tier,
  else from `CAPABILITIES` below, else nothing): a request that needs one it lacks
  goes up (rule "tools", "images", "json_schema");
- `max_prompt_tokens`: a request with more input tokens goes up (rule
  "prompt_tokens>8000");
- `max_effort`: the highest effort it takes, of "minimal" < "low" < "medium" < "high";
  a request whose `reasoning_effort` (or `metadata.difficulty`: easy = low, medium,
  hard = high, or the classifier's answer: simple = low, complex = high) is above it
  goes up (rule "effort=high").
The first tier no limit refuses answers; the rule that decided is the one that sent the
request past the tier below it ("cheapest" when the first tier takes it). If no tier
takes it, the request is refused (400) with each tier's reason.

Without a `[routes.auto]` in the file, `auto` is DEFAULT_AUTO: gpt-4o-mini (prompts up
to 8,000 tokens, effort up to low) -> gpt-4o (up to 100,000 tokens, effort up to
medium) -> o3 (any).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.errors import PermanentError
from infra.providers.tokens import estimate_job
from schemas.conversations import InputImage, MessageItem
from schemas.jobs import ChatJob, ImagePart, RouteChoice

NEEDS = ("tools", "images", "json_schema")
EFFORTS = ("minimal", "low", "medium", "high")
# metadata.difficulty and the classifier's answer, as efforts.
DIFFICULTY = {"easy": "low", "medium": "medium", "hard": "high"}
CLASSES = {"simple": "low", "complex": "high"}

_ALL = frozenset(NEEDS)
# What known models can do, for tiers that do not say.
CAPABILITIES: dict[str, frozenset[str]] = {
    **{m: _ALL for m in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano")},
    **{m: _ALL for m in ("gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5.1", "o1", "o3", "o4-mini")},
    **{m: frozenset({"tools", "json_schema"}) for m in ("o3-mini", "gpt-3.5-turbo")},
    **{m: _ALL for m in ("claude-opus-4-5", "claude-haiku-4-5", "claude-sonnet-4-5")},
    "local-echo": _ALL,
}

ROUTE_KEYS = {"tiers", "classifier", "description"}
TIER_KEYS = {"model", "supports", "max_prompt_tokens", "max_effort"}
CLASSIFIER_KEYS = {"model", "timeout_s"}


class NoTierFits(PermanentError):
    """A routed request no tier of its route can take (images and no tier sees them …)."""

    code = "no_tier_fits"

    def __init__(self, route: str, reasons: list[str]) -> None:
        super().__init__(
            f"no tier of route {route!r} fits this request: " + "; ".join(reasons), status=400
        )


@dataclass(frozen=True)
class Tier:
    model: str
    supports: frozenset[str]
    max_prompt_tokens: int | None = None
    max_effort: str | None = None

    def refusal(self, needs: Needs) -> str | None:
        """The rule that sends `needs` past this tier, or None if it takes them."""
        for need in NEEDS:
            if getattr(needs, need) and need not in self.supports:
                return need
        if self.max_prompt_tokens is not None and needs.prompt_tokens > self.max_prompt_tokens:
            return f"prompt_tokens>{self.max_prompt_tokens}"
        if (
            self.max_effort is not None
            and needs.effort is not None
            and EFFORTS.index(needs.effort) > EFFORTS.index(self.max_effort)
        ):
            return f"effort={needs.effort}"
        return None

    def rules(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "supports": sorted(self.supports),
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_effort": self.max_effort,
        }


@dataclass(frozen=True)
class Classifier:
    """A cheap model asked "simple or complex?" when a request gives no effort hint."""

    model: str
    timeout_s: float = 2.0


@dataclass(frozen=True)
class Route:
    name: str
    tiers: tuple[Tier, ...]
    classifier: Classifier | None = None
    description: str = ""

    def rules(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "tiers": [t.rules() for t in self.tiers],
            "classifier": (
                {"model": self.classifier.model, "timeout_s": self.classifier.timeout_s}
                if self.classifier
                else None
            ),
        }


@dataclass(frozen=True)
class Needs:
    """What a request needs of a model, as the rules read it."""

    prompt_tokens: int
    tools: bool = False
    images: bool = False
    json_schema: bool = False
    effort: str | None = None
    # Where `effort` came from: "reasoning_effort", "metadata.difficulty", "classifier".
    effort_from: str | None = None


@dataclass(frozen=True)
class Choice:
    route: str
    model: str
    tier: int
    rule: str
    # Each tier looked at, cheapest first: its model and why it was passed over.
    considered: tuple[tuple[str, str | None], ...] = field(default=())

    def record(self) -> dict[str, Any]:
        """What the job row, its events and its usage keep of the choice."""
        return {"route": self.route, "model": self.model, "tier": self.tier, "rule": self.rule}


def choose(route: Route, needs: Needs) -> Choice:
    """The cheapest tier of `route` that takes `needs`; NoTierFits when none does."""
    considered: list[tuple[str, str | None]] = []
    rule = "cheapest"
    for index, tier in enumerate(route.tiers):
        refused = tier.refusal(needs)
        considered.append((tier.model, refused))
        if refused is None:
            return Choice(route.name, tier.model, index, rule, tuple(considered))
        rule = refused
    raise NoTierFits(route.name, [f"{model}: needs {why}" for model, why in considered])


def needs_of(job: ChatJob) -> Needs:
    """What `job` asks of a model: its input tokens, tools, images, JSON schema, effort."""
    images = any(isinstance(p, ImagePart) for m in job.messages for p in m.parts or ())
    if job.response is not None:
        images = images or any(
            isinstance(p, InputImage)
            for stored in job.response.input
            if isinstance(stored.item, MessageItem)
            for p in stored.item.parts()
        )
    effort: str | None = job.reasoning_effort
    source = "reasoning_effort"
    if effort is None and job.metadata.get("difficulty") in DIFFICULTY:
        effort, source = DIFFICULTY[job.metadata["difficulty"]], "metadata.difficulty"
    schema = job.response_format is not None and job.response_format.type == "json_schema"
    return Needs(
        prompt_tokens=estimate_job(job),
        tools=bool(job.tools),
        images=images,
        json_schema=schema,
        effort=effort,
        effort_from=source if effort is not None else None,
    )


def routed(route: Route, job: ChatJob) -> ChatJob:
    """`job` on the model `route`'s rules choose (no classifier), with the choice recorded;
    NoTierFits when none fits. For doors that cannot ask a classifier (batch lines)."""
    if job.kind == "embedding":
        raise NoTierFits(route.name, ["a route chooses chat models, not embedding models"])
    choice = choose(route, needs_of(job))
    return job.model_copy(update={"model": choice.model, "route": RouteChoice(**choice.record())})


DEFAULT_AUTO = Route(
    "auto",
    (
        Tier("gpt-4o-mini", CAPABILITIES["gpt-4o-mini"], max_prompt_tokens=8000, max_effort="low"),
        Tier("gpt-4o", CAPABILITIES["gpt-4o"], max_prompt_tokens=100_000, max_effort="medium"),
        Tier("o3", CAPABILITIES["o3"]),
    ),
    description="gpt-4o-mini for short, easy requests; gpt-4o up to 100k tokens; o3 beyond",
)


def parse_routes(tables: Mapping[str, Any], knows: Callable[[str], bool]) -> dict[str, Route]:
    """The `[routes.<name>]` tables of a routing file; ValueError naming the route if bad.

    `knows`: whether the routing names a model (each tier's model must be one).
    """
    routes = {name: _route(name, table, knows) for name, table in tables.items()}
    routes.setdefault("auto", DEFAULT_AUTO)
    return routes


def _route(name: str, table: Any, knows: Callable[[str], bool]) -> Route:
    if not isinstance(table, dict):
        raise ValueError(f"route {name!r} must be a table")
    if knows(name):
        raise ValueError(f"route {name!r} has the name of a model")
    _only(f"route {name!r}", table, ROUTE_KEYS)
    rows = table.get("tiers")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"route {name!r} needs `tiers`, a list of at least one tier")
    tiers = tuple(_tier(f"route {name!r} tier {i + 1}", row, knows) for i, row in enumerate(rows))
    classifier = None
    if "classifier" in table:
        row = table["classifier"]
        if not isinstance(row, dict) or not isinstance(row.get("model"), str):
            raise ValueError(f"route {name!r}: `classifier` needs a `model`")
        _only(f"route {name!r} classifier", row, CLASSIFIER_KEYS)
        if not knows(row["model"]):
            raise ValueError(f"route {name!r}: classifier names unknown model {row['model']!r}")
        timeout = float(row.get("timeout_s", 2.0))
        if not 0 < timeout <= 30:
            raise ValueError(f"route {name!r}: classifier timeout_s must be in (0, 30]")
        classifier = Classifier(row["model"], timeout)
    return Route(name, tiers, classifier, str(table.get("description", "")))


def _tier(where: str, row: Any, knows: Callable[[str], bool]) -> Tier:
    if not isinstance(row, dict) or not isinstance(row.get("model"), str):
        raise ValueError(f"{where} needs a `model`")
    _only(where, row, TIER_KEYS)
    model = row["model"]
    if not knows(model):
        raise ValueError(f"{where} names unknown model {model!r}")
    supports = row.get("supports")
    if supports is None:
        capabilities = CAPABILITIES.get(model, frozenset())
    elif isinstance(supports, list) and all(s in NEEDS for s in supports):
        capabilities = frozenset(supports)
    else:
        raise ValueError(f"{where}: `supports` must be a list of {NEEDS}")
    limit = row.get("max_prompt_tokens")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"{where}: max_prompt_tokens must be a positive integer")
    effort = row.get("max_effort")
    if effort is not None and effort not in EFFORTS:
        raise ValueError(f"{where}: max_effort must be one of {EFFORTS}")
    return Tier(model, capabilities, limit, effort)


def _only(where: str, table: dict[str, Any], keys: set[str]) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
