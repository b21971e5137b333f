# The few verbs people type; .ci/run uses the same commands.
.PHONY: dev test lint typecheck bench

dev:
	bash scripts/dev

test:
	bash scripts/test

lint:
	uv run ruff check .
	uv run ruff format --check .

typecheck:
	uv run mypy

bench:
	@for b in bench/*.py; do echo "== $$b"; uv run python $$b; done
