"""Cheapest fit: what `model: "auto"` costs against sending everything to the strongest tier.

    uv run python bench/routing.py [--routing FILE] [--route auto] [--reasoning-tokens 1000]
                                   [--no-ingress]

The workload (bench/data/routing_workload.json, written for this repository): short
chit-chat, long documents, tool calls, JSON output and hard reasoning with an effort hint,
each with the length of the answer it expects. Every request is routed by the same function
the ingress uses (infra.routing.tiers.needs_of and choose) over the
route (the default `auto` unless --routing names a file), and priced from the price table
(infra/pricing/prices.toml, with the routing file's prices over it) by its input tokens
(infra.providers.tokens, as admission counts them) and its expected output tokens. A
reasoning model (o1/o3/o4…) also spends hidden reasoning tokens billed as output:
--reasoning-tokens per request, added wherever such a model answers (in both runs).

The baseline in the same run: every request sent to the route's last (strongest) tier.
Unless --no-ingress, an ingress is started and every request is also sent to
POST /v1/routing/explain, and the bench checks the ingress chose the same model.

Prints one JSON object: cost_per_1000_requests_usd for auto and for the strongest tier, the
saving, the share of requests each tier took (overall and by category), the rules that
decided, and `explain_agrees` (requests the ingress routed as the bench did / requests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.services import bench_key, bench_services
from infra.pricing import PriceTable, cost_at
from infra.routing.config import load_routing
from infra.routing.tiers import Route, choose, needs_of
from schemas.chat_completions import chat_job
from schemas.openai import ChatCompletionRequest
from tests.harness import Platform

DATA = Path(__file__).with_name("data") / "routing_workload.json"
REASONING = re.compile(r"^o\d")


def wire_bodies(route: str, data: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """(category, expected output tokens, chat completion body) of each request."""
    out = []
    for item in data["requests"]:
        messages = list(item["messages"])
        if "document" in item:
            doc = item["document"]
            text = "".join(doc["template"].format(n=n + 1) for n in range(doc["repeat"]))
            messages = [{"role": "user", "content": text}, *messages]
        body: dict[str, Any] = {"model": route, "messages": messages}
        if "tools" in item:
            body["tools"] = [{"type": "function", "function": t} for t in item["tools"]]
        for field in ("response_format", "reasoning_effort", "metadata"):
            if field in item:
                body[field] = item[field]
        out.append((item["category"], int(item["output_tokens"]), body))
    return out


def price_run(
    route: Route, prices: PriceTable, bodies: list[tuple[str, int, dict[str, Any]]], extra: int
) -> dict[str, Any]:
    strongest = route.tiers[-1].model
    auto_cost = base_cost = Decimal(0)
    tiers: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    by_category: dict[str, Counter[str]] = defaultdict(Counter)
    chosen = []
    for category, output_tokens, body in bodies:
        job = chat_job(ChatCompletionRequest.model_validate(body))
        needs = needs_of(job)
        choice = choose(route, needs)
        chosen.append(choice.model)
        tiers[choice.model] += 1
        rules[choice.rule] += 1
        by_category[category][choice.model] += 1
        auto_cost += _cost(prices, choice.model, needs.prompt_tokens, output_tokens, extra)
        base_cost += _cost(prices, strongest, needs.prompt_tokens, output_tokens, extra)
    n = len(bodies)
    per_1000 = Decimal(1000) / n
    return {
        "chosen": chosen,
        "requests": n,
        "route": route.name,
        "tiers": [t.model for t in route.tiers],
        "strongest_tier": strongest,
        "cost_per_1000_requests_usd": {
            "auto": float(round(auto_cost * per_1000, 4)),
            "strongest_tier": float(round(base_cost * per_1000, 4)),
        },
        "saving": float(round(1 - auto_cost / base_cost, 4)) if base_cost else 0.0,
        "share_by_tier": {t.model: round(tiers[t.model] / n, 3) for t in route.tiers},
        "share_by_category": {
            cat: {m: round(c / sum(counts.values()), 3) for m, c in counts.items()}
            for cat, counts in by_category.items()
        },
        "rules": dict(rules.most_common()),
        "reasoning_tokens_per_request": extra,
    }


def _cost(prices: PriceTable, model: str, inp: int, out: int, extra: int) -> Decimal:
    price = prices.price(model)
    if price is None:
        raise SystemExit(f"model {model!r} has no price: give it one in the routing file")
    return cost_at(price, inp, out + (extra if REASONING.match(model) else 0))


def through_ingress(
    routing: Path | None, bodies: list[tuple[str, int, dict[str, Any]]], chosen: list[str]
) -> str:
    """Send every request to POST /v1/routing/explain of a real ingress; 'agreed/total'."""
    with bench_services() as services:
        env = services.env(AYUSH_LOG_LEVEL="INFO")
        if routing is not None:
            env["AYUSH_ROUTING_FILE"] = str(routing.resolve())
        platform = Platform(env, services.work / "logs")
        try:
            platform.start_ingress()
            key = asyncio.run(bench_key(services.settings))
            answers = asyncio.run(_explain(platform.url, key, [b for _, _, b in bodies]))
        finally:
            platform.stop()
    agreed = sum(1 for got, want in zip(answers, chosen, strict=True) if got == want)
    return f"{agreed}/{len(chosen)}"


async def _explain(url: str, key: str, bodies: list[dict[str, Any]]) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        answers = []
        for body in bodies:
            response = await http.post("/v1/routing/explain", json=body, headers=headers)
            answers.append(response.json().get("model", f"error {response.status_code}"))
        return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--routing", type=Path, default=None, help="a routing file")
    parser.add_argument("--route", default="auto")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--reasoning-tokens", type=int, default=1000)
    parser.add_argument("--no-ingress", action="store_true", help="skip the end-to-end check")
    args = parser.parse_args()
    config = load_routing(args.routing)
    route = config.routes[args.route]
    prices = PriceTable.load().with_prices(config.prices)
    bodies = wire_bodies(args.route, json.loads(args.data.read_text()))
    result = price_run(route, prices, bodies, args.reasoning_tokens)
    chosen = result.pop("chosen")
    if not args.no_ingress:
        result["explain_agrees"] = through_ingress(args.routing, bodies, chosen)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
