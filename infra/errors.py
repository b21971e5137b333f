"""The one error hierarchy adapters translate vendor exceptions into."""

from __future__ import annotations


class AyushError(Exception):
    """Base of every error an adapter raises.

    `status` is the vendor's HTTP status when there was one (504 for a
    timeout): the gateway maps it to the status its own clients see.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientError(AyushError):
    """Timeouts, 429, 5xx, dropped connections: worth retrying after a pause."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PermanentError(AyushError):
    """Bad request, unknown model, refused credentials: retrying cannot help."""


class EventTooLarge(PermanentError):
    """An event over the log's record size limit (`kafka_max_message_bytes`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=413)


class UnknownModel(PermanentError):
    """A model name no route of this deployment serves."""

    code = "model_not_found"

    def __init__(self, model: str, message: str | None = None) -> None:
        super().__init__(
            message or f"the model {model!r} does not exist or is not routed by this deployment",
            status=404,
        )
        self.model = model


class ModelNotPriced(PermanentError):
    """A routable model without a price: its work would be recorded at $0, so it is refused."""

    code = "model_not_priced"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"the model {model!r} has no price in this deployment, so it cannot be billed: "
            "give it a price (or `free = true`) in the routing file or AYUSH_PRICES_FILE",
            status=400,
        )
        self.model = model


class ContextTooLong(PermanentError):
    """A request whose input and answer do not fit the model's context window."""

    code = "context_length_exceeded"

    def __init__(
        self, input_tokens: int, window: int, model: str | None, *, truncation: str
    ) -> None:
        hint = (
            "set truncation to auto to drop older turns"
            if truncation != "auto"
            else "even the newest turn alone does not fit: shorten it"
        )
        super().__init__(
            f"input of ~{input_tokens} tokens exceeds the context window of {window} tokens "
            f"of model {model or 'unknown'}; {hint}",
            status=400,
        )
        self.input_tokens = input_tokens
        self.window = window
        self.model = model
