"""Benchmark of server-side conversation state: what a turn costs when Ayush keeps the thread.

A 20-turn conversation whose user turns are ~1,000 tokens each, run three ways through
the same ingress, model-calls worker and instant upstream, in the same run:
- `chat_full_history`: POST /v1/chat/completions, the client resending the whole history
  every turn (what every app does without server-side state);
- `responses_previous_id`: POST /v1/responses with only the new message and
  `previous_response_id` (Ayush walks the chain and sends the history upstream);
- `responses_conversation`: POST /v1/responses with only the new message and
  `conversation` (Ayush reads the conversation's items).
Prints one JSON object: per-turn latency (p50, p99 over every turn of every round) of
each, the latency Ayush adds per turn against the full-history baseline, its p50 at the
first and at the last turn (the history grows), and the bytes a client sends per turn.

    uv run python bench/conversations.py [--rounds 5] [--turns 20] [--turn-tokens 1000]

Uses the services in KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL / REDIS_URL when set, else
starts a local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.services import BenchServices, bench_key, bench_services, instant_upstream
from bench.stats import percentile
from tests.harness import Platform

ROOT = Path(__file__).resolve().parents[1]
MODEL = "bench-model"
# Short common words: about one token each.
WORDS = ("the", "of", "and", "to", "in", "is", "you", "that", "it", "was", "for", "on")


def user_text(tokens: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(tokens))


async def _post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[dict[str, Any], float, int]:
    data = json.dumps(body).encode()
    started = time.perf_counter()
    async with http.post(url, data=data, headers=headers) as response:
        payload = await response.json()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {payload}")
    return payload, (time.perf_counter() - started) * 1000, len(data)


class ChatFullHistory:
    """The client keeps the thread and resends it all."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.url, self.headers = f"{base}/v1/chat/completions", headers
        self.messages: list[dict[str, str]] = []

    async def turn(self, http: aiohttp.ClientSession, text: str) -> tuple[float, int]:
        self.messages.append({"role": "user", "content": text})
        body = {"model": MODEL, "messages": self.messages}
        payload, ms, sent = await _post(http, self.url, body, self.headers)
        self.messages.append(payload["choices"][0]["message"])
        return ms, sent


class ResponsesChain:
    """Only the new message; the history is the previous response's chain."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.url, self.headers = f"{base}/v1/responses", headers
        self.previous: str | None = None

    async def turn(self, http: aiohttp.ClientSession, text: str) -> tuple[float, int]:
        body: dict[str, Any] = {"model": MODEL, "input": text}
        if self.previous is not None:
            body["previous_response_id"] = self.previous
        payload, ms, sent = await _post(http, self.url, body, self.headers)
        self.previous = payload["id"]
        return ms, sent


class ResponsesConversation:
    """Only the new message; the history is the conversation's items."""

    def __init__(self, base: str, headers: dict[str, str], conversation: str) -> None:
        self.url, self.headers = f"{base}/v1/responses", headers
        self.conversation = conversation

    async def turn(self, http: aiohttp.ClientSession, text: str) -> tuple[float, int]:
        body = {"model": MODEL, "input": text, "conversation": self.conversation}
        _, ms, sent = await _post(http, self.url, body, self.headers)
        return ms, sent


async def rounds(base: str, headers: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Every way, round after round, interleaved: a slow moment of the machine falls on all."""
    ways = ("chat_full_history", "responses_previous_id", "responses_conversation")
    latencies: dict[str, list[list[float]]] = {w: [] for w in ways}
    sent: dict[str, list[int]] = {w: [] for w in ways}
    async with aiohttp.ClientSession() as http:
        for index in range(args.rounds + 1):  # the first round warms up and is dropped
            rng = random.Random(index)
            texts = [user_text(args.turn_tokens, rng) for _ in range(args.turns)]
            for way in ways:
                client = await _client(way, base, headers, http)
                times = []
                for text in texts:
                    ms, size = await client.turn(http, text)
                    times.append(ms)
                    if index:
                        sent[way].append(size)
                if index:
                    latencies[way].append(times)
    return {"latencies": latencies, "sent": sent}


async def _client(
    way: str, base: str, headers: dict[str, str], http: aiohttp.ClientSession
) -> ChatFullHistory | ResponsesChain | ResponsesConversation:
    if way == "chat_full_history":
        return ChatFullHistory(base, headers)
    if way == "responses_previous_id":
        return ResponsesChain(base, headers)
    created, _, _ = await _post(http, f"{base}/v1/conversations", {}, headers)
    return ResponsesConversation(base, headers, created["id"])


def summary(measured: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    flat = {w: [ms for r in rs for ms in r] for w, rs in measured["latencies"].items()}
    base50 = percentile(flat["chat_full_history"], 0.5)
    for way, rounds_ in measured["latencies"].items():
        first = [r[0] for r in rounds_]
        last = [r[-1] for r in rounds_]
        out[way] = {
            "p50_ms": round(percentile(flat[way], 0.5), 2),
            "p99_ms": round(percentile(flat[way], 0.99), 2),
            "p50_ms_first_turn": round(percentile(first, 0.5), 2),
            "p50_ms_last_turn": round(percentile(last, 0.5), 2),
            "client_bytes_per_turn_mean": round(
                sum(measured["sent"][way]) / len(measured["sent"][way])
            ),
        }
        if way != "chat_full_history":
            out[way]["added_p50_ms_per_turn"] = round(percentile(flat[way], 0.5) - base50, 2)
            base_last = out["chat_full_history"]["p50_ms_last_turn"]
            out[way]["added_p50_ms_last_turn"] = round(out[way]["p50_ms_last_turn"] - base_last, 2)
    out["rounds"], out["turns"], out["turn_tokens"] = args.rounds, args.turns, args.turn_tokens
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_services() as services:
        return measure(args, services)


def measure(args: argparse.Namespace, services: BenchServices) -> dict[str, Any]:
    with instant_upstream(services, MODEL, context_window="200000") as upstream:
        env = services.env(AYUSH_ROUTING_FILE=str(upstream.routing), AYUSH_LOG_LEVEL="INFO")
        platform = Platform(env, services.work / "logs")
        try:
            platform.start_ingress()
            platform.start_worker("model-calls")
            key = asyncio.run(bench_key(services.settings))
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            measured = asyncio.run(rounds(platform.url, headers, args))
        finally:
            platform.stop()
    return summary(measured, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--turn-tokens", type=int, default=1000)
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
