"""The AsyncAPI 3.0 document of every topic and event, built from this package.

Each topic is a channel; each event type a message whose payload is the
envelope with that type's payload model. Dead-letter topics carry the same
messages as their source topic, plus error headers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from schemas import catalog, live, topics
from schemas.envelope import Envelope

REF_TEMPLATE = "#/components/schemas/{model}"
# The WebSocket's channel in the document, beside one per topic.
SOCKET = "socket"
HEADERS = {
    "type": "object",
    "properties": {
        "ayush-type": {"type": "string", "description": "The event type."},
        "ayush-version": {"type": "string", "description": "The payload version."},
        "traceparent": {"type": "string", "description": "W3C trace context."},
        "tracestate": {"type": "string"},
    },
}


def _message_id(event: catalog.EventType) -> str:
    return event.name.replace(".", "_")


def asyncapi_document(version: str) -> dict[str, Any]:
    envelopes: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (Envelope[e.payload], "validation")  # type: ignore[name-defined]
        for e in catalog.EVENTS
    ]
    frames: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m, "validation") for m in (*live.CLIENT, *live.SERVER)
    ]
    refs, defs = models_json_schema([*envelopes, *frames], ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = defs.get("$defs", {})
    messages: dict[str, Any] = {}
    for event, key in zip(catalog.EVENTS, envelopes, strict=True):
        messages[_message_id(event)] = {
            "name": event.name,
            "title": event.name,
            "summary": event.summary,
            "contentType": "application/json",
            "headers": HEADERS,
            "payload": refs[key],
            "correlationId": {"location": "$message.payload#/correlation_id"},
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in topics.ALL:
        events = catalog.on_topic(topic)
        refs_here = {
            _message_id(e): {"$ref": f"#/components/messages/{_message_id(e)}"} for e in events
        }
        channels[topic.name] = {
            "address": topic.name,
            "description": topic.description,
            "messages": refs_here,
            "bindings": {
                "kafka": {
                    "partitions": topic.partitions,
                    "topicConfiguration": {"retention.ms": topic.retention_ms},
                }
            },
        }
        channels[topic.dead_letter] = {
            "address": topic.dead_letter,
            "description": f"Events of {topic.name} that could not be handled, with headers "
            "ayush-dlq-error, ayush-dlq-source (topic:partition:offset), ayush-dlq-group "
            "and ayush-dlq-attempts.",
            "messages": refs_here,
            "bindings": {"kafka": {"partitions": 1}},
        }
        operations[f"publish_{topic.name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic.name}"},
            "messages": [{"$ref": f"#/channels/{topic.name}/messages/{m}"} for m in refs_here],
        }
    socket_messages = {
        m.__name__: {
            "name": m.__name__,
            "title": m.__name__,
            "summary": (m.__doc__ or m.__name__).strip().splitlines()[0],
            "contentType": "application/json",
            "payload": refs[(m, "validation")],
        }
        for m in (*live.CLIENT, *live.SERVER)
    }
    messages.update(socket_messages)
    channels[SOCKET] = {
        "address": "/v1/ws",
        "servers": [{"$ref": "#/servers/ingress"}],
        "description": "One WebSocket per client (Authorization header, or a `token` query "
        "parameter from a browser): subscribe to jobs, conversations and a user's feed, and "
        "resume after the last id seen. A client that stops reading is closed with 1008.",
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in socket_messages},
        "bindings": {"ws": {"method": "GET"}},
    }
    for direction, models in (("receive", live.CLIENT), ("send", live.SERVER)):
        operations[f"socket_{direction}"] = {
            "action": direction,
            "channel": {"$ref": f"#/channels/{SOCKET}"},
            "messages": [{"$ref": f"#/channels/{SOCKET}/messages/{m.__name__}"} for m in models],
        }
    return {
        "asyncapi": "3.0.0",
        "servers": {
            "ingress": {
                "host": "localhost:8000",
                "protocol": "ws",
                "description": "The ingress (wss behind TLS).",
            }
        },
        "info": {
            "title": "Ayush events",
            "version": version,
            "description": "Every Kafka topic of Ayush and the events it carries. Keys are "
            "the job id (correlation_id); delivery is at least once, so consumers "
            "deduplicate by envelope id.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
