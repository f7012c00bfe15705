from __future__ import annotations

import itertools

import pytest

from sse.testing import SSEEvent, SSEParser, SSEProtocolError, parse_events


def feed_split(payload: bytes, *cuts: int, strict: bool = True) -> list[SSEEvent]:
    parser = SSEParser(strict=strict)
    events: list[SSEEvent] = []
    bounds = [0, *cuts, len(payload)]
    for start, end in itertools.pairwise(bounds):
        events += parser.feed(payload[start:end])
    return events + parser.close()


def every_split(payload: bytes) -> list[list[SSEEvent]]:
    """The events of ``payload`` fed whole, byte by byte, and in two pieces cut anywhere."""
    results = [parse_events(payload), feed_split(payload, *range(1, len(payload)))]
    results += [feed_split(payload, cut) for cut in range(1, len(payload))]
    return results


def assert_same_everywhere(payload: bytes, expected: list[SSEEvent]) -> None:
    for events in every_split(payload):
        assert events == expected


def test_unnamed_event_with_id() -> None:
    payload = b'id: 17-0\ndata: {"type":"tool_status"}\n\n'
    assert_same_everywhere(payload, [SSEEvent("message", '{"type":"tool_status"}', "17-0", "17-0")])
    assert parse_events(payload)[0].json() == {"type": "tool_status"}


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_line_endings(eol: bytes) -> None:
    payload = eol.join([b"event: ping", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert_same_everywhere(
        payload, [SSEEvent("ping", "a\nb", None, ""), SSEEvent("message", "c", None, "")]
    )


def test_mixed_line_endings_and_cr_lf_split_across_chunks() -> None:
    payload = b"data: 1\r\n\r\ndata: 2\r\rdata: 3\n\r\n"
    expected = [SSEEvent("message", str(n), None, "") for n in (1, 2, 3)]
    assert_same_everywhere(payload, expected)
    parser = SSEParser()
    # CR then LF in the next chunk is one line end, not a line end and a blank line.
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r") == [SSEEvent("message", "x", None, "")]


def test_leading_bom_is_stripped_once() -> None:
    bom = "\ufeff".encode()
    assert_same_everywhere(bom + b"data: a\n\n", [SSEEvent("message", "a", None, "")])
    # A second BOM is part of the first line, whose field name is then unknown.
    assert parse_events(bom + bom + b"data: a\n\n") == []
    # A BOM not at the start of the stream is not stripped.
    assert parse_events(b"data: a\n\n" + bom + b"data: b\n\n") == [
        SSEEvent("message", "a", None, "")
    ]


def test_comments_are_ignored() -> None:
    payload = b": hello\n:\ndata: a\n: inside\ndata: b\n\n: trailing\n\n"
    assert_same_everywhere(payload, [SSEEvent("message", "a\nb", None, "")])


def test_field_value_syntax() -> None:
    # Only one space after the colon is removed; a line without colon is a field with no value.
    payload = b"data:no space\ndata:  two spaces\ndata\ndata: a:b\n\n"
    assert parse_events(payload) == [SSEEvent("message", "no space\n two spaces\n\na:b", None, "")]


def test_unknown_fields_are_ignored() -> None:
    assert parse_events(b"foo: bar\nData: x\ndata: y\n\n") == [SSEEvent("message", "y", None, "")]


def test_event_with_empty_data_buffer_is_not_dispatched() -> None:
    assert parse_events(b"event: ping\n\n") == []
    # "data" with an empty value does fill the buffer: the event is dispatched.
    assert parse_events(b"data\n\n") == [SSEEvent("message", "", None, "")]
    assert parse_events(b"data:\ndata:\n\n") == [SSEEvent("message", "\n", None, "")]


def test_event_type_resets_after_dispatch() -> None:
    payload = b"event: a\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\n"
    assert [(e.event, e.data) for e in parse_events(payload)] == [
        ("a", "1"),
        ("message", "2"),
        ("message", "3"),
    ]


def test_last_event_id_persists_and_id_is_per_event() -> None:
    payload = b"id: 1\ndata: a\n\ndata: heartbeat\n\nid: 2\ndata: b\n\nid\ndata: c\n\n"
    assert_same_everywhere(
        payload,
        [
            SSEEvent("message", "a", "1", "1"),
            SSEEvent("message", "heartbeat", None, "1"),
            SSEEvent("message", "b", "2", "2"),
            SSEEvent("message", "c", "", ""),
        ],
    )


def test_id_without_data_sets_last_event_id() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 5\n\n") == []
    assert parser.last_event_id == "5"
    assert parser.feed(b"data: a\n\n") == [SSEEvent("message", "a", None, "5")]


def test_id_containing_nul_is_ignored() -> None:
    payload = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"
    assert parse_events(payload) == [
        SSEEvent("message", "a", "1", "1"),
        SSEEvent("message", "b", None, "1"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"retry: 3000", 3000),
        (b"retry:0", 0),
        (b"retry: 30.5", None),
        (b"retry: -1", None),
        (b"retry: 1e3", None),
        (b"retry: ", None),
        (b"retry: 3000 ", None),
        ("retry: ٣".encode(), None),  # an Arabic-Indic digit is not an ASCII digit
    ],
)
def test_retry(line: bytes, expected: int | None) -> None:
    parser = SSEParser()
    events = parser.feed(line + b"\ndata: x\n\n")
    assert parser.retry == expected
    assert events == [SSEEvent("message", "x", None, "", expected)]


def test_retry_persists_on_the_parser_but_not_on_later_events() -> None:
    parser = SSEParser()
    assert parser.feed(b"retry: 3000\n\n") == []
    assert parser.retry == 3000
    assert parser.feed(b"data: a\n\n") == [SSEEvent("message", "a", None, "")]
    assert parser.retry == 3000


def test_non_ascii_split_inside_utf8_sequences() -> None:
    text = '{"reason":"用户同意 ✅ 𝄞"}'
    payload = f"id: 1\ndata: {text}\n\n".encode()
    assert_same_everywhere(payload, [SSEEvent("message", text, "1", "1")])
    assert parse_events(payload)[0].json() == {"reason": "用户同意 ✅ 𝄞"}


def test_incomplete_event_at_end_of_stream_is_discarded() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: b\n") == [SSEEvent("message", "a", None, "")]
    assert parser.close() == []
    assert parse_events(b"data: a") == []


def test_strict_parser_rejects_invalid_utf8() -> None:
    with pytest.raises(SSEProtocolError):
        SSEParser().feed(b"data: \xff\n\n")
    # A truncated sequence is only known to be invalid at the end of the stream.
    parser = SSEParser()
    assert parser.feed(b"data: \xe7\x94") == []
    with pytest.raises(SSEProtocolError):
        parser.close()


def test_lenient_parser_replaces_invalid_utf8() -> None:
    assert parse_events(b"data: \xff\n\n", strict=False) == [
        SSEEvent("message", "\ufffd", None, "")
    ]
