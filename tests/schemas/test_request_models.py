"""Request models: every validator runs, also on a field left out; no text holds a NUL."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any, get_args

import pytest
from pydantic import BaseModel, ValidationError

import schemas
from infra.settings import Settings
from producers.ingress.app import create_app
from producers.ingress.body import api_routes, route_body
from producers.ingress.openai_compat import PLAIN_ROUTES
from schemas.jobs import ChatJob
from schemas.request import RequestModel


def schema_models() -> Iterator[type[BaseModel]]:
    for info in pkgutil.iter_modules(schemas.__path__):
        module = importlib.import_module(f"schemas.{info.name}")
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseModel) and value.__module__ == module.__name__:
                yield value


def nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        yield annotation
        for field in annotation.model_fields.values():
            yield from nested_models(field.annotation)
    for arg in get_args(annotation):
        yield from nested_models(arg)


def request_models() -> set[type[BaseModel]]:
    """Every model a route reads a body as, and every model inside one."""
    app = create_app(Settings())
    bodies = [body for _, body in PLAIN_ROUTES.values()]
    bodies += [m for r in api_routes(app.routes) if (m := route_body(r)) is not None]
    assert len(bodies) >= 10  # the walk found the routes
    return {model for body in bodies for model in nested_models(body)}


def test_no_validator_of_a_defaulted_field_is_skipped() -> None:
    """A field validator runs on a value the caller sent; on a default only if told to."""
    skipped = []
    for model in schema_models():
        validate_all = model.model_config.get("validate_default", False)
        for decorator in model.__pydantic_decorators__.field_validators.values():
            for name in decorator.info.fields:
                field = model.model_fields.get(name)
                if field is None or field.is_required():
                    continue
                if not (field.validate_default or validate_all):
                    skipped.append(f"{model.__name__}.{name}")
    assert skipped == []


def test_chat_job_without_messages_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        ChatJob.model_validate({"kind": "chat", "model": "local-echo"})
    assert [e["loc"] for e in refused.value.errors()] == [("messages",)]
    assert ChatJob.model_validate({"kind": "embedding", "model": "m", "input": ["a"]})


def test_every_request_model_refuses_nul() -> None:
    models = request_models()
    assert ChatJob in models
    unguarded = sorted(m.__name__ for m in models if not issubclass(m, RequestModel))
    assert unguarded == []


def test_nul_is_refused_in_text_keys_and_nested_values_naming_the_field() -> None:
    cases = [
        ({"model": "m\x00", "messages": [{"role": "user", "content": "a"}]}, ("model",)),
        ({"model": "m", "messages": [{"role": "user", "content": "a\x00"}]},
         ("messages", 0, "content")),
        ({"model": "m", "messages": [{"role": "user", "content": "a"}], "metadata": {"k\x00": ""}},
         ("metadata",)),
        ({"model": "m", "messages": [{"role": "user", "content": "a"}],
          "tools": [{"name": "t", "parameters": {"p": [{"q": "\x00"}]}}]},
         ("tools", 0, "parameters")),
    ]  # fmt: skip
    for body, loc in cases:
        with pytest.raises(ValidationError) as refused:
            ChatJob.model_validate(body)
        errors = refused.value.errors()
        assert [(e["loc"], e["type"]) for e in errors] == [(loc, "string_nul")], body
