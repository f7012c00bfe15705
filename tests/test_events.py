"""The wire format and validation of events (pure functions)."""

from __future__ import annotations

import json

import pytest

from sse._stream.events import heartbeat, parse_id, prepare, render, render_unnumbered
from sse.exceptions import EventNotSerializable, EventTooLarge, InvalidEventType, InvalidSessionId
from sse.testing import SSEParser


def test_render_is_one_unnamed_message_with_id_and_ms_timestamp() -> None:
    event = render(b"1732456789123-4", prepare("abc", "tool_status", {"status": "running"}))
    assert event.key == (1732456789123, 4)
    assert event.frame == (
        b'id: 1732456789123-4\ndata: {"id":"1732456789123-4","type":"tool_status",'
        b'"session_id":"abc","data":{"status":"running"},"timestamp":1732456789123}\n\n'
    )
    (parsed,) = SSEParser().feed(event.frame)
    assert parsed.event == "message"
    assert parsed.id == "1732456789123-4"
    assert json.loads(parsed.data)["timestamp"] == 1732456789123


def test_newlines_and_non_ascii_stay_on_one_data_line() -> None:
    data = {"text": "第一行\n第二行\r\nthird\u2028line", "emoji": "🙂"}
    event = render(b"1-0", prepare("s", "tool_result", data))
    assert event.frame.count(b"\n") == 3  # id line, data line, blank line
    (parsed,) = SSEParser().feed(event.frame)
    assert json.loads(parsed.data)["data"] == data


def test_unnumbered_messages_have_no_id_line() -> None:
    frame = render_unnumbered("heartbeat", timestamp_ms=5)
    assert frame == b'data: {"type":"heartbeat","timestamp":5}\n\n'


def test_a_heartbeat_is_the_unnumbered_heartbeat_message() -> None:
    assert heartbeat(1732456789123) == render_unnumbered("heartbeat", timestamp_ms=1732456789123)
    (parsed,) = SSEParser().feed(heartbeat())
    assert parsed.id is None
    assert json.loads(parsed.data)["type"] == "heartbeat"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("1732456789123-0", (1732456789123, 0)),
        ("17-3", (17, 3)),
        ("42", (42, 0)),
        (" 5-1 ", (5, 1)),
        ("", None),
        ("abc", None),
        ("1-2-3", None),
        ("-1", None),
        ("1-", None),
        ("1" * 21, None),
    ],
)
def test_parse_id(value: str, key: tuple[int, int] | None) -> None:
    assert parse_id(value) == key


@pytest.mark.parametrize("session_id", ["", "a b", "a/b", "x" * 129, "é", None, 5])
def test_invalid_session_ids_are_refused(session_id: object) -> None:
    with pytest.raises(InvalidSessionId):
        prepare(session_id, "tool_status", {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "event_type",
    ["", "Tool", "1abc", "a-b", "a" * 65, "heartbeat", "connected", "replay_gap", "token_expired"],
)
def test_invalid_or_reserved_types_are_refused(event_type: str) -> None:
    with pytest.raises(InvalidEventType):
        prepare("s", event_type, {})


@pytest.mark.parametrize(
    "data", [[1, 2], "text", {"x": object()}, {"x": float("nan")}, {"x": "\ud800"}]
)
def test_data_must_be_a_json_object(data: object) -> None:
    with pytest.raises(EventNotSerializable):
        prepare("s", "tool_status", data)  # type: ignore[arg-type]


def test_size_limit(settings: pytest.FixtureRequest) -> None:
    settings.SSE = {"MAX_EVENT_BYTES": 200}  # type: ignore[attr-defined]
    prepare("s", "big", {"x": "a" * 100})
    with pytest.raises(EventTooLarge, match="MAX_EVENT_BYTES"):
        prepare("s", "big", {"x": "a" * 200})
