"""The models a request may name, what each costs, and the names metrics give them.

One answer for every door (the ingress's routes, batch lines, webhook rules,
the workers): a model may be named when the routing file names it (or an
alias of it) or when its family routes it (gpt-*, o*, claude-*, local-*,
`openai/<name>` …), and when it has a price. A model without a price is
refused (ModelNotPriced), never run at $0; one that costs nothing says so
with `free = true`. A name no route serves is UnknownModel.

A routing-file model without a price of its own costs what its deployments'
upstream models cost (the dearest one, for estimates); its fallbacks must be
priced too, since any of them may serve the call.
"""

from __future__ import annotations

from decimal import Decimal

from infra.errors import ModelNotPriced, PermanentError, UnknownModel
from infra.pricing import Price, PriceTable, cost_at
from infra.routing.config import ModelRoute, RoutingConfig

# Metrics name a model they cannot tie to the configuration this way, so
# arbitrary names never become series of their own.
OTHER = "other"


class ModelCatalog:
    def __init__(self, routing: RoutingConfig, prices: PriceTable) -> None:
        self.routing = routing
        # The routing file's prices over the price table's.
        self.prices = prices.with_prices(routing.prices)
        self._configured = {
            *routing.models,
            *routing.aliases,
            *(d.model for r in routing.models.values() for d in r.deployments),
        }

    def check(self, model: str) -> str:
        """The canonical name of a model a request may name.

        UnknownModel (404) if no route serves it, ModelNotPriced (400) if it,
        or a fallback that may answer for it, has no price.
        """
        route = self._route(model)
        for name in self._chain(route):
            if self._price_of(name) is None:
                raise ModelNotPriced(name if name == route.name else f"{name} (a fallback)")
        return route.name

    def knows(self, model: str) -> bool:
        try:
            self.check(model)
        except PermanentError:
            return False
        return True

    def estimate(self, model: str, input_tokens: int, output_tokens: int) -> Decimal:
        """The cost to reserve before a call: the model's price (checked) times the tokens."""
        name = self.check(model)
        price = self._price_of(name)
        assert price is not None  # check() saw to it
        return cost_at(price, input_tokens, output_tokens)

    def cost(
        self,
        model: str,
        upstream: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_input_tokens: int = 0,
    ) -> Decimal:
        """What a call served by `model` (calling `upstream`) cost; ModelNotPriced if unpriced."""
        price = self.prices.price(model) or self.prices.price(upstream)
        if price is None:
            raise ModelNotPriced(model)
        return cost_at(
            price, input_tokens, output_tokens, cached_input_tokens, cache_write_input_tokens
        )

    def names(self) -> list[str]:
        """Every model a request may name, by its plain name (GET /v1/models).

        Dated snapshots of a listed model and `<provider>/<model>` forms of a
        priced model are accepted as well, without being listed one by one.
        """
        candidates = {*self.routing.listed(), *self.prices.names()}
        return sorted(name for name in candidates if self.knows(name))

    def context_window(self, model: str) -> int | None:
        """The tokens of input plus output `model` takes; None when unknown (nothing is fitted).

        The routing file's `context_window` of the model, else the price table's
        row of the model, else the smallest of its deployments' upstream models.
        """
        try:
            route = self.routing.route_for(model)
        except PermanentError:
            return None
        if route.context_window is not None:
            return route.context_window
        window = self.prices.context_window(route.name)
        if window is not None:
            return window
        upstream = [self.prices.context_window(d.model) for d in route.deployments]
        known = [w for w in upstream if w is not None]
        return min(known) if known and len(known) == len(upstream) else None

    def owner(self, model: str) -> str:
        """The provider of a model's first deployment (after `check`)."""
        return self.routing.route_for(model).deployments[0].vendor

    def label(self, model: str) -> str:
        """A bounded metric label: a configured name, the price row's name, or "other"."""
        if model in self._configured:
            return model
        return self.prices.row(model) or OTHER

    # ------------------------------------------------------------------------------------
    def _route(self, model: str) -> ModelRoute:
        try:
            return self.routing.route_for(model)
        except PermanentError as exc:
            raise UnknownModel(model) from exc

    def _chain(self, route: ModelRoute) -> list[str]:
        """The model and every fallback that may answer for it, each once."""
        seen = [route.name]
        index = 0
        while index < len(seen):
            for fallback in self._route(seen[index]).fallbacks:
                name = self.routing.canonical(fallback)
                if name not in seen:
                    seen.append(name)
            index += 1
        return seen

    def _price_of(self, name: str) -> Price | None:
        price = self.prices.price(name)
        if price is not None:
            return price
        route = self.routing.models.get(name)
        if route is None:
            return None
        upstream = [self.prices.price(d.model) for d in route.deployments]
        if any(p is None for p in upstream):
            return None
        return Price(
            max(p.input_per_million for p in upstream if p),
            max(p.output_per_million for p in upstream if p),
        )
