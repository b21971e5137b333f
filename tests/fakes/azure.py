"""A local HTTP server that speaks Azure OpenAI: OpenAI's wire on a deployment's path.

    POST /openai/deployments/{deployment}/chat/completions?api-version=...
    POST /openai/deployments/{deployment}/embeddings?api-version=...

Like Azure it answers 400 without `api-version` and 401 without the right
`api-key` header (or `Authorization: Bearer <token>`), and 404 for a deployment
it does not have. A prompt containing `CONTENT-FILTER` is refused as Azure's
content filter does (400, code content_filter). Otherwise the answer is the
fake LLM's (tests/fakes/llm.py), directives in the model name included.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from tests.fakes.llm import FakeLLMServer, _seen_in_messages

API_KEY = "azure-fake-key"
AD_TOKEN = "azure-fake-entra-token"
FILTERED = "CONTENT-FILTER"


@dataclass
class AzureCall:
    deployment: str
    operation: str
    api_version: str
    api_key: str | None
    authorization: str | None


class FakeAzureServer(FakeLLMServer):
    name = "fake Azure OpenAI server"

    def __init__(self, deployments: tuple[str, ...] = ()) -> None:
        super().__init__()
        # Empty: any deployment exists.
        self.deployments = deployments
        self.azure_calls: list[AzureCall] = []

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._azure_embed)
        return app

    async def _azure_chat(self, request: web.Request) -> web.StreamResponse:
        refused = await self._gate(request, "chat/completions")
        if refused is not None:
            return refused
        last_user, _ = _seen_in_messages(await request.json())
        if FILTERED in last_user:
            return _content_filtered()
        return await self._openai_chat(request)

    async def _azure_embed(self, request: web.Request) -> web.StreamResponse:
        refused = await self._gate(request, "embeddings")
        return refused if refused is not None else await self._openai_embeddings(request)

    async def _gate(self, request: web.Request, operation: str) -> web.Response | None:
        deployment = request.match_info["deployment"]
        version = request.query.get("api-version", "")
        key, bearer = request.headers.get("api-key"), request.headers.get("Authorization")
        with self._lock:
            self.azure_calls.append(AzureCall(deployment, operation, version, key, bearer))
        if not version:
            return _error(400, "MissingApiVersionParameter", "The api-version query parameter "
                          "(?api-version=) is required for all requests.")  # fmt: skip
        if key != API_KEY and bearer != f"Bearer {AD_TOKEN}":
            return _error(401, "401", "Access denied due to invalid subscription key or wrong "
                          "API endpoint.")  # fmt: skip
        if self.deployments and deployment not in self.deployments:
            return _error(404, "DeploymentNotFound", f"The API deployment {deployment} for "
                          "this resource does not exist.")  # fmt: skip
        return None


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _content_filtered() -> web.Response:
    verdicts = {
        "hate": {"filtered": False, "severity": "safe"},
        "self_harm": {"filtered": False, "severity": "safe"},
        "sexual": {"filtered": False, "severity": "safe"},
        "violence": {"filtered": True, "severity": "high"},
    }
    return web.json_response(
        {
            "error": {
                "message": "The response was filtered due to the prompt triggering Azure "
                "OpenAI's content management policy.",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": verdicts,
                },
            }
        },
        status=400,
    )
