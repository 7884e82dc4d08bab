"""gateway/ingest_body.py: a request body's events, parsed and validated one at a time, as functions."""
from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest

from gateway.errors import TooLarge, ValidationError
from gateway.ingest_body import parse_events
from tests.support.events import raw_event


def uids(body: bytes, content_type: str = "application/json") -> list[str]:
    return [event["id"] for event in parse_events(body, content_type, 10)]


def test_reads_ndjson() -> None:
    body = (json.dumps(raw_event("e1")) + "\n\n" + json.dumps(raw_event("e2")) + "\r\n").encode()
    assert uids(body, "application/x-ndjson") == ["e1", "e2"]
    assert uids(body) == ["e1", "e2"]  # not an array: lines, whatever the type says


def test_reads_a_json_array() -> None:
    body = ("\ufeff  [" + json.dumps(raw_event("e1")) + ",\n " + json.dumps(raw_event("e2")) + " ]\n").encode()
    assert uids(body) == ["e1", "e2"]
    assert uids(b" [ ] ") == []


def test_keeps_data_as_the_json_text_it_is_stored_as() -> None:
    [event] = parse_events(json.dumps([raw_event("e1", data={"b": [1, {"c": None}]}, extra="x")]).encode(),
                           "application/json", 10)
    assert orjson.loads(orjson.dumps(event["data"])) == {"extra": "x", "b": [1, {"c": None}]}


def test_refuses_more_than_the_batch_limit() -> None:
    events = [raw_event(f"e{i}") for i in range(10_001)]
    with pytest.raises(TooLarge):
        parse_events(json.dumps(events).encode(), "application/json", 10_000)
    with pytest.raises(TooLarge):
        parse_events("\n".join(json.dumps(e) for e in events).encode(), "application/x-ndjson", 10_000)
    assert len(parse_events(json.dumps(events[:10_000]).encode(), "application/json", 10_000)) == 10_000


@pytest.mark.parametrize("body", [b"", b"   \n\n ", "\ufeff ".encode()])
def test_refuses_an_empty_body(body: bytes) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_events(body, "application/json", 10)
    assert [p.field for p in caught.value.problems] == ["body"]
    assert "empty" in str(caught.value)


@pytest.mark.parametrize("body", [
    b"[", b"[1,]", b"[{}", b"[{},,{}]", b"[] x", b"[][]", b"[NaN]", b"[-Infinity]", b'["\\ud800"]',
    b'[{"a": "\\udc00"}]', b"[" * 5000 + b"]" * 5000, b'[{"a": 1 ]',
])
def test_refuses_what_is_not_a_json_array(body: bytes) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_events(body, "application/json", 10)
    assert [p.field for p in caught.value.problems][-1:] == ["body"]
    assert "invalid JSON" in str(caught.value)


def test_a_valid_surrogate_pair_is_text() -> None:
    body = b'[' + json.dumps(raw_event("e1", message_name="\U0001f600 sale")).encode() + b']'
    assert "\\ud83d" in body.decode()
    [event] = parse_events(body, "application/json", 10)
    assert event["message_name"] == "\U0001f600 sale"


def test_gives_the_position_of_invalid_json() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_events(b'[{"id": "e1"},\n {"id": }]', "application/json", 10)
    assert [p.field for p in caught.value.problems][-1] == "body"
    assert "line 2 column 9" in caught.value.problems[-1].message
    with pytest.raises(ValidationError) as caught:
        parse_events(json.dumps(raw_event("e1")).encode() + b'\n{"id": "e2"\n', "application/x-ndjson", 10)
    assert [p.record for p in caught.value.problems] == ["line 2"]
    assert "invalid JSON" in caught.value.problems[0].message


def test_refuses_bytes_that_are_not_utf8() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_events(b'[{"id": "\xff\xfe"}]', "application/json", 10)
    assert [p.field for p in caught.value.problems] == ["body"] and "byte 9" in str(caught.value)


@pytest.mark.parametrize("body", [b"42", b'"events"', b'{"events": [{"id": "e1"}]}', b"[1, 2]", b"[[]]"])
def test_a_body_that_is_not_events_is_refused(body: bytes) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_events(body, "application/json", 10)
    assert caught.value.problems[0].record == 0


def test_problems_name_each_event_and_field() -> None:
    body = json.dumps([raw_event("e0"), raw_event("e1", type="NOPE"), raw_event("e2", email="x"), raw_event("e3")])
    with pytest.raises(ValidationError) as caught:
        parse_events(body.encode(), "application/json", 10)
    assert [(p.record, p.field) for p in caught.value.problems] == [(1, "type"), (2, "email")]


# Peak memory of parsing 10,000 events full of small objects (30 MB of JSON), in a fresh process:
# parsed whole, the objects alone take about 250 MB.
PROBE = """
import json, resource, sys
from gateway.ingest_body import parse_events
from tests.support.events import raw_event
items = [{"sku": f"sku-{i:05d}", "qty": i % 7, "note": "x" * 20} for i in range(55)]
body = json.dumps([raw_event(f"e{n}", data={"items": items}) for n in range(10_000)]).encode()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
events = parse_events(body, "application/json", 10_000)
print(len(body), before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(events))
"""


def test_parsing_takes_little_more_memory_than_the_body() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    size, before_kb, after_kb, count = (int(x) for x in done.stdout.split())
    assert count == 10_000 and size > 30_000_000
    assert (after_kb - before_kb) * 1024 < 3 * size, (size, before_kb, after_kb)
