"""The body of POST /v1/responses, in OpenAI's wire shape, and what it becomes: a
`kind="response"` ChatJob whose turn (`ResponseTurn`) carries the new input items.

Lenient about fields we do not use (clients send many, as on /v1/chat/completions),
strict about those we do: a tool that is not a function is refused naming `tools`.
The ids of a turn's items are derived from the response id, on both sides: the ingress
(its input) and the worker (its output) give the same ids to the same items.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from schemas.conversations import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputText,
    ItemIn,
    MessageItem,
    OutputText,
    ResponseTurn,
    StoredItem,
    Truncation,
    item_id,
    position,
)
from schemas.jobs import ChatJob, ForcedTool, ResponseFormat, Tool
from schemas.memory import MemoryContext
from schemas.request import RequestModel

INPUT, OUTPUT = 0, 1
_KIND: dict[str, Literal["msg", "fc", "fco"]] = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
}


class _Wire(RequestModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TextFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(default=None, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> TextFormat:
        if self.type == "json_schema" and (self.name is None or self.schema_ is None):
            raise ValueError('a "json_schema" format needs its "name" and "schema"')
        return self


class TextConfig(_Wire):
    format: TextFormat = Field(default_factory=TextFormat)


class FunctionTool(_Wire):
    type: Literal["function"] = "function"
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=100_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(_Wire):
    type: Literal["function"] = "function"
    name: str = Field(min_length=1, max_length=200)


class ConversationRef(_Wire):
    id: str = Field(min_length=1, max_length=200)


class ResponseRequest(_Wire):
    model: str = Field(min_length=1, max_length=200)
    input: str | list[ItemIn] = Field(min_length=1, max_length=10_000)
    instructions: str | None = Field(default=None, max_length=1_000_000)
    tools: list[FunctionTool] | None = Field(default=None, max_length=128, validate_default=True)
    tool_choice: Literal["auto", "none", "required"] | NamedFunction | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    text: TextConfig | None = None
    previous_response_id: str | None = Field(default=None, max_length=200)
    conversation: str | ConversationRef | None = None
    store: bool = True
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    stream: bool = False
    background: bool = False
    truncation: Truncation = "disabled"
    parallel_tool_calls: bool = True
    user: str | None = Field(default=None, max_length=200)
    user_id: str | None = Field(default=None, max_length=200)
    # Ayush's job extension (the official SDKs send it in `extra_body`), as on `POST /v1/jobs`.
    memory: MemoryContext | None = None

    @field_validator("tools", mode="before")
    @classmethod
    def _functions_only(cls, value: Any) -> Any:
        for tool in value if isinstance(value, list) else ():
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function":
                raise ValueError(f'tools of type "{kind}" are not supported: only "function"')
        return value

    @model_validator(mode="after")
    def _one_history_one_user(self) -> ResponseRequest:
        if self.previous_response_id is not None and self.conversation is not None:
            raise ValueError('send "previous_response_id" or "conversation", not both')
        if self.background and not self.store:
            raise ValueError("a background response is kept to be read: it needs store=true")
        if self.user is not None and self.user_id is not None and self.user != self.user_id:
            raise ValueError('"user" and "user_id" name different users: send one')
        return self

    def end_user(self) -> str | None:
        return self.user_id or self.user

    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, ConversationRef):
            return self.conversation.id
        return self.conversation

    def items(self) -> list[MessageItem | FunctionCallItem | FunctionCallOutputItem]:
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=[InputText(text=self.input)])]
        return [i.item for i in self.input]

    def echoed(self) -> dict[str, Any]:
        """What the Response object echoes of the request (the `params` of its row)."""
        fmt = self.text.format if self.text else TextFormat()
        return {
            "instructions": self.instructions,
            "tools": [_tool_wire(t) for t in self.tools or ()],
            "tool_choice": _choice_wire(self.tool_choice),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens,
            "text": {"format": fmt.model_dump(mode="json", by_alias=True, exclude_none=True)},
            "metadata": self.metadata or {},
            "truncation": self.truncation,
            "parallel_tool_calls": self.parallel_tool_calls,
        }


def _tool_wire(tool: FunctionTool) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters or {},
        "strict": tool.strict if tool.strict is not None else True,
    }


def _choice_wire(choice: str | NamedFunction | None) -> Any:
    if choice is None:
        return "auto"
    if isinstance(choice, NamedFunction):
        return {"type": "function", "name": choice.name}
    return choice


def input_items(
    response_id: uuid.UUID,
    items: list[MessageItem | FunctionCallItem | FunctionCallOutputItem],
    created_at: int,
) -> list[StoredItem]:
    """A turn's input as stored: ids and positions derived from the response id (the
    caller's own ids are not kept: an id names one stored item)."""
    made_from = uuid.uuid5(response_id, "input")
    return [
        StoredItem(
            id=item_id(_KIND[item.type], made_from, i),
            position=position(response_id, INPUT, i),
            item=item.model_copy(update={"id": None, "status": None}),
            created_at=created_at,
        )
        for i, item in enumerate(items)
    ]


def output_items(
    response_id: uuid.UUID,
    text: str | None,
    tool_calls: list[dict[str, Any]] | None,
    created_at: int,
    status: Literal["completed", "incomplete"] = "completed",
) -> list[StoredItem]:
    """A turn's output: the assistant's message (when it said something), then its
    function calls; the ids are the ones the event stream announced."""
    out: list[StoredItem] = []
    if text:
        message = MessageItem(role="assistant", content=[OutputText(text=text)], status=status)
        out.append(
            StoredItem(
                id=item_id("msg", response_id, 0),
                position=position(response_id, OUTPUT, 0),
                item=message,
                created_at=created_at,
            )
        )
    for i, call in enumerate(tool_calls or ()):
        fc = FunctionCallItem(
            call_id=call["id"], name=call["name"], arguments=call["arguments"], status="completed"
        )
        out.append(
            StoredItem(
                id=item_id("fc", response_id, i),
                position=position(response_id, OUTPUT, len(out)),
                item=fc,
                created_at=created_at,
            )
        )
    return out


def response_job(
    body: ResponseRequest,
    response_id: uuid.UUID,
    created_at: int,
    *,
    previous_response_id: uuid.UUID | None,
    conversation_id: uuid.UUID | None,
) -> ChatJob:
    """The job that runs the turn (its history is assembled by the worker)."""
    choice: Any = body.tool_choice
    if isinstance(choice, NamedFunction):
        choice = ForcedTool(name=choice.name)
    turn = ResponseTurn(
        input=input_items(response_id, body.items(), created_at),
        instructions=body.instructions,
        previous_response_id=previous_response_id,
        conversation_id=conversation_id,
        store=body.store,
        background=body.background,
        truncation=body.truncation,
        params=body.echoed(),
    )
    return ChatJob(
        kind="response",
        model=body.model,
        user_id=body.end_user(),
        temperature=body.temperature,
        top_p=body.top_p,
        response_format=_response_format(body),
        max_tokens=body.max_output_tokens,
        metadata=body.metadata or {},
        tools=[
            Tool(name=t.name, description=t.description, parameters=t.parameters or {})
            for t in body.tools
        ]
        if body.tools
        else None,
        tool_choice=choice,
        memory=body.memory,
        response=turn,
    )


def _response_format(body: ResponseRequest) -> ResponseFormat | None:
    fmt = body.text.format if body.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ResponseFormat(type="json_object")
    schema = {"name": fmt.name, "schema": fmt.schema_, "strict": fmt.strict}
    if fmt.description:
        schema["description"] = fmt.description
    return ResponseFormat(
        type="json_schema", json_schema={k: v for k, v in schema.items() if v is not None}
    )


def error_code(status: int | None, code: str | None = None) -> str:
    """The `error.code` of a failed response: the one the failure named, else one for the
    upstream's status."""
    if code:
        return code
    if status == 429:
        return "rate_limit_exceeded"
    if status in (400, 413, 422):
        return "invalid_prompt"
    return "server_error"
