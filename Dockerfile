# The one image of every Ayush service: `ayush ingress`, `ayush worker <group>`, `ayush migrate`.
FROM python:3.11-slim

COPY --from=ghcr.io/astral-sh/uv:0.8 /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1

WORKDIR /app
# Dependencies first: this layer is reused while only the code changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

COPY README.md ./
COPY ayush ./ayush
COPY schemas ./schemas
COPY producers ./producers
COPY consumers ./consumers
COPY infra ./infra
COPY migrations ./migrations
RUN uv sync --frozen --no-dev

RUN useradd --create-home --uid 10001 ayush
USER ayush
# `ayush` handles SIGTERM itself: in-flight work finishes within the deadline.
STOPSIGNAL SIGTERM
CMD ["ayush", "--help"]
