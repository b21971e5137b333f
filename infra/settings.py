"""Typed settings, read once in each process's entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.tenant_settings import normalize_origins


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AYUSH_", extra="ignore")

    # Service addresses: production and compose set them; otherwise the local
    # stack starts its own services and fills them in.
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS")
    )
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL"))
    s3_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("S3_ENDPOINT_URL")
    )
    s3_bucket: str = "ayush"
    aws_access_key_id: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID")
    )
    aws_secret_access_key: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY")
    )
    s3_region: str = "us-east-1"

    # Prefix of every topic and consumer group name: several environments (or
    # test runs) can share one cluster without seeing each other's events.
    topic_prefix: str = ""
    data_dir: Path = Path(".ayush")

    # Whether the broker supports the idempotent producer (Apache Kafka does,
    # Tansu does not).
    kafka_idempotent_producer: bool = True
    # How long the broker may hold a fetch that finds nothing new. Kafka answers
    # a waiting fetch as soon as data arrives, so a long wait adds no latency and
    # spares an idle consumer (and the broker) fifty empty fetches a second. The
    # local stack sets 5 for Tansu, which does not answer a waiting fetch early.
    kafka_fetch_max_wait_ms: int = 500
    # No wait before sending: the producer has one request in flight per broker,
    # and what arrives meanwhile goes as the next batch, so batching comes from
    # load without delaying a lone event.
    kafka_linger_ms: int = 0
    # The largest event: above the ingress's 8 MiB body limit, so a long-context
    # prompt that the ingress accepts also fits in the log (Kafka's default is
    # 1 MB). Topics are created with it; consumers read larger records whole.
    kafka_max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024)
    # Caps every topic's partitions when created. For small dev and test stacks
    # that make many topic namespaces: each partition holds open files, and a
    # broker at its file limit stops accepting connections.
    kafka_max_partitions: int | None = Field(default=None, ge=1)

    # model-calls worker
    model_calls_concurrency: int = Field(default=64, ge=1)
    provider_timeout_s: float = 600.0
    provider_max_attempts: int = Field(default=4, ge=1)
    # Model calls of one job that offers built-in tools (`ayush_tools`): a model still
    # calling them at the last one fails the job with `tool_step_limit`.
    tool_step_limit: int = Field(default=8, ge=1, le=100)
    provider_backoff_initial_s: float = 0.5
    provider_backoff_max_s: float = 30.0
    handler_max_attempts: int = Field(default=5, ge=1)
    # Every handler attempt runs under this time budget; a hung one is retried, then
    # dead-lettered. Routes that call models stretch it to the provider's own budget.
    handler_timeout_s: float = Field(default=300.0, gt=0)
    handler_backoff_s: float = Field(default=0.2, gt=0)
    kafka_max_poll_interval_ms: int = Field(default=300_000, ge=1_000)
    local_echo_delay_s: float = 0.02

    # Extra price table on top of the shipped one (infra/pricing/prices.toml).
    prices_file: Path | None = None

    # archive group: a batch is written once it holds this many events or
    # its oldest event waited this long.
    archive_batch_events: int = Field(default=5_000, ge=1)
    archive_batch_age_s: float = 2.0
    archive_prefix: str = "archive"
    # memory: embeddings and the vector store
    # minilm: all-MiniLM-L6-v2 (int8 ONNX) on the CPU, semantic and offline; hashing
    # matches words, not meaning (fast, for tests); openai: any compatible endpoint.
    memory_embedder: Literal["hashing", "openai", "minilm"] = "minilm"
    memory_embedding_model: str = "text-embedding-3-small"  # for the openai embedder
    memory_embedding_dim: int = Field(default=384, ge=8, le=2000)  # openai and hashing
    # CPU threads of the minilm embedder's forward pass (default: every core).
    memory_embedder_threads: int | None = Field(default=None, ge=1)
    memory_store: Literal["pgvector", "pinecone"] = "pgvector"
    memory_hnsw_ef_search: int = Field(default=100, ge=10, le=1000)
    # A user's chunks are searched exactly until they have more than this; then they go
    # into the HNSW graph (pgvector), which costs each about a millisecond of Postgres CPU.
    memory_graph_after: int = Field(default=200, ge=0)
    memory_chunk_chars: int = Field(default=1000, ge=100)
    memory_chunk_overlap: int = Field(default=100, ge=0)
    # memory group: a list of remembers is embedded and written together once it holds
    # this many events or its oldest event waited this long (0: whatever one poll brought).
    memory_batch_events: int = Field(default=1_000, ge=1)
    memory_batch_age_s: float = Field(default=0.0, ge=0)
    pinecone_host: str | None = None
    pinecone_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("PINECONE_API_KEY", "AYUSH_PINECONE_API_KEY")
    )
    # Files (OpenAI Files API): a folder under data_dir by default, S3 when an
    # endpoint is given or the backend is set to s3.
    files_backend: Literal["local", "s3"] | None = None
    files_dir: Path | None = None

    # Batches: OpenAI's documented limits, and the concurrency of the batch lane
    # (kept well below model_calls_concurrency so interactive jobs go first).
    batch_max_requests: int = Field(default=50_000, ge=1)
    batch_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    batch_lane_concurrency: int = Field(default=16, ge=1)
    # The batch workers (the `batch` group's fan-out and the lane) run at this
    # lower CPU priority (nice), so interactive workers sharing a machine go first.
    batch_nice: int = Field(default=5, ge=0, le=19)
    # Events the batch group takes per poll: outcomes counted in one transaction.
    batch_progress_max: int = Field(default=2_000, ge=1)
    # The completion window ("24h"); shorter in tests and for trials.
    batch_completion_window_s: int = Field(default=24 * 3600, ge=1)
    # How often the batch group looks for batches past their window.
    batch_expiry_check_s: float = Field(default=30.0, gt=0)
    # scheduler group: how often it looks for due slots; a slot older than the grace
    # when found was missed (the schedule's `missed` policy decides); the clock file,
    # when set, holds the time it takes for now (ISO 8601; for tests and trials).
    scheduler_tick_s: float = Field(default=5.0, gt=0)
    scheduler_grace_s: float = Field(default=60.0, ge=0)
    scheduler_clock_file: Path | None = None
    # alerts group: how often it evaluates every enabled alert rule.
    alert_eval_s: float = Field(default=15.0, gt=0)
    # usage worker: events per batch (one transaction and one offset commit each).
    # A batch upserts one row per (tenant, day, key, user, model) it touches, so
    # bigger batches spread that cost over more events; a crash redoes one batch.
    usage_batch_max: int = Field(default=20_000, ge=1)

    # The largest request body the ingress reads, by default; uploads and webhook
    # deliveries have their own limits (batch_max_bytes, webhook_max_body_bytes).
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1)

    # Browsers (CORS): origins that may call the API whatever the tenant, comma separated
    # ("https://app.example.com, http://localhost:5173", or "*" for any, then without
    # credentials); each tenant adds its own (PUT /v1/tenant/settings). An ingress re-reads
    # the tenants' origins from Postgres when its copy is older than `cors_refresh_s`.
    # Browsers keep a preflight's answer for `cors_max_age_s`.
    cors_origins: str = ""
    cors_refresh_s: float = Field(default=5.0, gt=0)
    cors_max_age_s: int = Field(default=600, ge=0)

    # Admission at the ingress. Rate limits apply per API key and per minute.
    rate_limit_requests_per_min: int = Field(default=1200, ge=1)
    rate_limit_tokens_per_min: int = Field(default=2_000_000, ge=1)
    # Output tokens assumed for a request that sets no max_tokens, when
    # estimating the cost to reserve against a budget.
    budget_default_output_tokens: int = Field(default=1024, ge=0)
    # A reservation whose usage never arrives (a failed job) is released then.
    budget_hold_ttl_s: int = Field(default=3600, ge=1)

    # AI gateway: the routing file (docs/routing.example.toml); without one,
    # each model goes to its family's provider.
    routing_file: Path | None = None
    response_cache_ttl_s: int = 24 * 3600
    # The semantic cache (opt-in: `X-Ayush-Cache: semantic` or the tenant's setting): a
    # question whose embedding (the memory embedder's) is at least this similar to a
    # cached one of the same partition is answered from it. 0.90: bench/semantic_cache.py.
    semantic_cache_threshold: float = Field(default=0.90, gt=0, le=1)
    semantic_cache_ttl_s: int = Field(default=24 * 3600, ge=1)
    # Rows per tenant at most; the oldest go first.
    semantic_cache_max_entries: int = Field(default=10_000, ge=1)
    # How long an OpenAI-compatible request waits for its job's answer.
    gateway_wait_timeout_s: float = 600.0
    # A waiting request reads its job's stream itself after this long without
    # news on its reply channel (pub/sub loses messages on reconnects).
    gateway_reply_poll_s: float = 1.0

    # Telemetry. Traces are exported over OTLP when the standard
    # OTEL_EXPORTER_OTLP_ENDPOINT is set, and/or as JSON lines to `trace_file`;
    # with neither, spans are no-ops. `telemetry_enabled=False` also drops metrics.
    telemetry_enabled: bool = True
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    trace_file: Path | None = None
    # Every process (workers and the ingress) serves /metrics on this port and
    # address, apart from the API; 0 turns it off. Keep the port off the internet.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    # One INFO line per handled event (failures are always logged).
    log_events: bool = False
    # Prompt and answer bodies stay out of logs unless this is set.
    log_bodies: bool = False
    # SIGTERM: how long in-flight events and open streams get to finish.
    shutdown_deadline_s: float = Field(default=30.0, ge=0)

    # live streams
    stream_ttl_s: int = 24 * 3600
    stream_maxlen: int = 100_000
    # Event streams a client may hold open at once (job and batch events, chat
    # completions with stream=true), counted over every ingress process; past
    # a limit a new stream is refused with 429.
    max_streams_per_key: int = Field(default=200, ge=1)
    max_streams_per_tenant: int = Field(default=1000, ge=1)
    # One ingress process's open streams, whoever holds them: the size of the
    # Redis pool its streams read from (apart from the pool of everything else).
    max_streams_per_process: int = Field(default=2000, ge=1)
    # A process renews its streams' slots while they are open; the slots of a
    # process that died lapse after this long.
    stream_slot_lease_s: float = Field(default=30.0, gt=0)
    # The WebSocket /v1/ws: the messages one connection may have waiting to be sent
    # (past that, or a send that takes longer than `ws_send_timeout_s`, the server
    # closes it with 1008 "slow consumer"); the subscriptions one connection may hold
    # (each also takes an open-stream slot); the heartbeat it sends when quiet.
    ws_send_queue: int = Field(default=256, ge=1)
    ws_send_timeout_s: float = Field(default=10.0, gt=0)
    ws_max_subscriptions: int = Field(default=32, ge=1)
    ws_ping_s: float = Field(default=15.0, gt=0)

    # Integrations. Keys that encrypt credentials at rest: "id:base64-32-bytes"
    # pairs, comma separated; the first encrypts, all decrypt (rotation).
    encryption_keys: str = Field(default="", repr=False)
    # How long a process keeps a user's data key in memory after reading it: a key
    # destroyed elsewhere (a forgotten user) may open events that long here, never longer.
    data_key_cache_s: float = Field(default=5.0, ge=0)
    webhook_max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    integrations_concurrency: int = Field(default=32, ge=1)
    connector_timeout_s: float = 15.0
    connector_max_attempts: int = Field(default=4, ge=1)
    connector_backoff_initial_s: float = 0.5
    connector_backoff_max_s: float = 30.0
    # The largest answer body a connector reads; the rest is not read.
    connector_max_response_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Where the connectors whose targets tenants choose (http, email) may connect: public
    # addresses only, unless private ones are allowed (development) or hosts/networks are
    # listed, comma separated ("hooks.internal, 10.20.0.0/16"). Cloud metadata addresses need
    # an explicit entry. The AYUSH_HTTP_CONNECTOR_ names of before still work.
    connector_allow_private: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "AYUSH_CONNECTOR_ALLOW_PRIVATE", "AYUSH_HTTP_CONNECTOR_ALLOW_PRIVATE"
        ),
    )
    connector_allow: str = Field(
        default="",
        validation_alias=AliasChoices("AYUSH_CONNECTOR_ALLOW", "AYUSH_HTTP_CONNECTOR_ALLOW"),
    )
    # How long GET /v1/connections/{id}/tools keeps an MCP server's tool list (per ingress
    # process) before asking the server again; 0 asks every time.
    mcp_tools_cache_s: float = Field(default=60.0, ge=0)
    # Outbound webhooks (the notifications group). The retry schedule (immediately, 5 s,
    # 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) and the disabling window (5 days of failures)
    # are multiplied by `webhook_retry_scale` (tests and benches shrink them). Each endpoint
    # gets at most `webhook_endpoint_concurrency` attempts at once, each within
    # `webhook_timeout_s`; the due-attempts loop looks for work at least every `webhook_poll_s`.
    # URLs go through the connectors' address policy (AYUSH_CONNECTOR_ALLOW...). At most
    # `webhook_max_in_flight` attempts per worker: the sender's connection pool holds 100.
    webhook_retry_scale: float = Field(default=1.0, gt=0)
    webhook_disable_after_s: float = Field(default=5 * 24 * 3600.0, gt=0)
    webhook_timeout_s: float = Field(default=15.0, gt=0)
    webhook_endpoint_concurrency: int = Field(default=4, ge=1)
    webhook_max_in_flight: int = Field(default=100, ge=1)
    webhook_poll_s: float = Field(default=1.0, gt=0)
    # Settled messages (delivered or failed for good) stay in the delivery log, and can be
    # redelivered, this many days; fired slots' claims are kept as long.
    webhook_log_keep_days: float = Field(default=30.0, gt=0)
    schedule_slot_keep_days: float = Field(default=30.0, gt=0)
    # How long a rotated-out signing secret keeps signing beside the new one.
    webhook_secret_overlap_s: float = Field(default=24 * 3600.0, ge=0)
    # Sign-in tokens: the clock skew allowed when checking `exp` and `nbf`, in seconds.
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)
    # An issuer's key set (JWKS) is fetched again at most this often, whatever tokens arrive.
    jwks_refetch_s: float = Field(default=60.0, gt=0)
    # Vendors' base URLs: enterprise installs and tests point them elsewhere.
    slack_api_url: str = Field(
        default="https://slack.com/api", validation_alias=AliasChoices("SLACK_API_URL")
    )
    github_api_url: str = Field(
        default="https://api.github.com", validation_alias=AliasChoices("GITHUB_API_URL")
    )
    discord_api_url: str = Field(
        default="https://discord.com/api", validation_alias=AliasChoices("DISCORD_API_URL")
    )
    telegram_api_url: str = Field(
        default="https://api.telegram.org", validation_alias=AliasChoices("TELEGRAM_API_URL")
    )
    notion_api_url: str = Field(
        default="https://api.notion.com", validation_alias=AliasChoices("NOTION_API_URL")
    )

    @field_validator("cors_origins")
    @classmethod
    def _cors_origins(cls, value: str) -> str:
        return ",".join(normalize_origins([v for v in value.split(",") if v.strip()]))

    def cors_origin_list(self) -> list[str]:
        return [v for v in self.cors_origins.split(",") if v]

    # Proxies in front of the ingress (CIDRs, comma separated). Only from these is
    # X-Forwarded-For believed, for API keys limited to some addresses; empty: nobody.
    trusted_proxies: str = ""

    def require_services(self) -> tuple[str, str, str]:
        if not (self.kafka_bootstrap_servers and self.database_url and self.redis_url):
            raise RuntimeError(
                "KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and REDIS_URL must be set "
                "(or run `ayush dev`, which starts local services)"
            )
        return self.kafka_bootstrap_servers, self.database_url, self.redis_url

    def require_database(self) -> str:
        """The database URL, for what needs only Postgres."""
        if not self.database_url:
            raise RuntimeError(
                "DATABASE_URL must be set (or run `ayush dev`, which starts local services)"
            )
        return self.database_url

    def file_backend(self) -> Literal["local", "s3"]:
        if self.files_backend is not None:
            return self.files_backend
        return "s3" if self.s3_endpoint_url else "local"

    def files_root(self) -> Path:
        return self.files_dir or self.data_dir / "files"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
