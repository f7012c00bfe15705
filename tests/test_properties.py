"""Property-based tests (hypothesis) of the pure parts: event ids, session
ids, the SSE wire format through ``sse.testing``'s strict parser, and the
replay planner."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sse._stream.events import (
    MAX_ID_PART,
    format_id,
    is_valid_session_id,
    parse_id,
    prepare,
    render,
    render_unnumbered,
)
from sse._stream.replay import BufferRead, plan_replay
from sse.testing import parse_events

parts = st.integers(min_value=0, max_value=MAX_ID_PART)
keys = st.tuples(parts, parts)
session_ids = st.text(string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=128)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(keys)
def test_ids_round_trip(key: tuple[int, int]) -> None:
    assert parse_id(format_id(key)) == key


@given(st.text() | st.text(alphabet="0123456789-١٢٣١２３ \n", max_size=45))
def test_parse_id_takes_only_ascii_digit_ids_within_range(text: str) -> None:
    key = parse_id(text)
    if key is not None:
        assert set(text.strip()) <= set("0123456789-"), "ASCII digits only"
        assert all(0 <= part <= MAX_ID_PART for part in key)
        assert parse_id(format_id(key)) == key


@given(keys, keys)
def test_id_order_is_key_order(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert (parse_id(format_id(a)) < parse_id(format_id(b))) == (a < b)  # type: ignore[operator]


@given(session_ids)
def test_session_ids_of_the_alphabet_are_valid(session_id: str) -> None:
    assert is_valid_session_id(session_id)


@given(st.text(min_size=1, max_size=130))
def test_a_valid_session_id_is_exactly_the_alphabet(text: str) -> None:
    allowed = set(string.ascii_letters + string.digits + "_.:-")
    assert is_valid_session_id(text) == (len(text) <= 128 and set(text) <= allowed)


@settings(max_examples=200)
@given(session_ids, keys, st.dictionaries(st.text(), json_values, max_size=5))
def test_a_published_frame_parses_back_to_its_message(
    session_id: str, key: tuple[int, int], data: dict[str, Any]
) -> None:
    event_id = format_id(key)
    body = prepare(session_id, "tool_status", data)
    (event,) = parse_events(render(event_id.encode(), body).frame)
    assert event.id == event_id
    assert event.event == "message"  # unnamed: the seed's onmessage gets it
    message = json.loads(event.data)
    assert message == {
        "id": event_id,
        "type": "tool_status",
        "session_id": session_id,
        "data": json.loads(json.dumps(data)),
        "timestamp": key[0],
    }


@given(st.dictionaries(st.text(), json_values, max_size=5))
def test_an_unnumbered_frame_has_no_id(data: dict[str, Any]) -> None:
    (event,) = parse_events(render_unnumbered("heartbeat", "s", data, 5))
    assert event.id is None
    assert json.loads(event.data)["data"] == json.loads(json.dumps(data))


buffers = st.lists(keys, max_size=12, unique=True).map(sorted)


@settings(max_examples=300)
@given(buffers, st.one_of(st.none(), keys), st.booleans(), st.integers(0, 3))
def test_the_replay_plan_never_loses_or_repeats_what_the_buffer_holds(
    stored: list[tuple[int, int]],
    position: tuple[int, int] | None,
    exists: bool,
    trimmed_count: int,
) -> None:
    """Whatever the buffer and the client's position: events come out in
    order, none at or before what the client has seen unless a gap says so,
    and a gap is reported whenever events the client never saw are gone."""
    trimmed_count = min(trimmed_count, len(stored))
    trimmed = stored[trimmed_count - 1] if trimmed_count else None
    kept = stored[trimmed_count:] if exists else []
    newest = stored[-1] if stored else None
    events = [render(format_id(k).encode(), b'"type":"x"') for k in kept]
    read = BufferRead(exists and bool(kept), newest, trimmed, events)
    replay = plan_replay(read, position)
    if replay.needs_whole_buffer:
        replay = plan_replay(read, position, whole=True)
        assert replay.gap is not None
    sent = [event.key for event in replay.events]
    assert sent == sorted(sent)
    if position is None:
        assert sent == []
        assert replay.gap is None
        return
    if replay.gap is None:
        assert all(k > position for k in sent), "no repeats without a gap"
        assert sent == [k for k in kept if k > position], "everything newer, nothing lost"
    missed = [k for k in stored if k > position and k not in kept]
    if missed and replay.gap is None:
        raise AssertionError(f"events {missed} are gone and no gap was reported")
    if sent:
        assert replay.position == sent[-1]
