"""Token counts for answers whose provider reported none: a real tokenizer, offline."""

from __future__ import annotations

from infra.providers import tokens
from infra.providers.base import Image, Message, ToolCall


def test_counts_match_the_cl100k_tokenizer() -> None:
    # "hello", " world", ",", " how", " are", " you", "?"
    assert tokens.count_text("hello world, how are you?") == 7
    assert tokens.count_text("") == 0


def test_special_token_text_from_a_user_is_plain_text() -> None:
    assert tokens.count_text("<|endoftext|>") == 7


def test_a_prompt_counts_each_message_framing_and_the_reply_priming() -> None:
    user = Message("user", "tokenize this sentence, please")  # 6 tokens, role 1
    assert tokens.count_prompt([user]) == 3 + (3 + 1 + 6)
    system = Message("system", "Be brief.")  # 3 tokens, role 1
    assert tokens.count_prompt([system, user]) == 3 + (3 + 1 + 3) + (3 + 1 + 6)


def test_tool_calls_count_their_name_and_arguments() -> None:
    call = ToolCall("call_1", "lookup", '{"q": "x"}')
    with_call = Message("assistant", "", (call,))
    assert tokens.count_prompt([with_call]) > tokens.count_prompt([Message("assistant", "")])
    assert tokens.count_tool_calls(with_call) == tokens.count_text("lookup") + tokens.count_text(
        '{"q": "x"}'
    )


def test_images_count_at_openais_price() -> None:
    text_only = Message("user", "look")
    with_images = Message(
        "user",
        "look",
        parts=("look", Image("https://e.x/a.png"), Image("https://e.x/b.png", "low")),
    )
    assert tokens.count_prompt([with_images]) == tokens.count_prompt([text_only]) + 765 + 85
