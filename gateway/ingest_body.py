"""The events of one ingest request body (a JSON array, or NDJSON), parsed and validated one event at a time.

Parsing a whole body at once holds every value of every event as Python objects: several times
the body's size (ten times for events full of small objects). Here each event is validated as
soon as it is parsed and its ``data`` kept as the JSON text it is stored as, so a request takes
about three times its size at most, whatever its shape.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NoReturn

import orjson

from gateway.errors import Problem, TooLarge, ValidationError
from gateway.events import model
from gateway.ingest import MAX_PROBLEMS

BOM = "\ufeff"
_SPACE = re.compile(r"[ \t\r\n]*")
# A \uD800-\uDFFF escape: the stdlib parser accepts a lone surrogate, which no store can hold.
_SURROGATE = re.compile(r"\\[uU][dD][89abcdefABCDEF]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# The stdlib's C parser reads one value at a time from a position (orjson reads only whole
# documents) and is as fast per value; NaN and Infinity are refused as orjson refuses them.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def parse_events(body: bytes, content_type: str, max_events: int) -> list[model.Event]:
    """A request's valid events, in order: every one, or ValidationError listing the problems found (at most
    MAX_PROBLEMS, each naming the event's index and the field); TooLarge past ``max_events``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"is not UTF-8 text (byte {exc.start})", "body") from None
    del body  # the text is all that is needed now: a body the caller lets go of is freed here
    start = _skip_space(text, 1 if text.startswith(BOM) else 0)
    if start == len(text):
        raise ValidationError("the body is empty; send a JSON array of events or NDJSON", "body")
    lines = "ndjson" in content_type or "jsonlines" in content_type or text[start] != "["
    raws = _lines(text) if lines else _array(text, start)
    events: list[model.Event] = []
    problems: list[Problem] = []
    for index, raw in enumerate(raws):
        if index == max_events:
            raise TooLarge(f"more than {max_events} events in one request; split it into batches", "body")
        event, found = model.validate(raw, index)
        if found:
            problems.extend(found[: MAX_PROBLEMS - len(problems)])
        elif event is not None and not problems:
            if "data" in event:
                # Kept as the JSON text it is stored as, which frees the parsed values at once
                # (as text: orjson's bytes keep their working buffer, often twice their length).
                event["data"] = orjson.Fragment(orjson.dumps(event["data"]).decode())
            events.append(event)
    if problems:
        raise ValidationError(problems)
    return events


def _lines(text: str) -> Iterator[Any]:
    """The values of an NDJSON text, one per non-blank line; ValidationError naming the line of bad JSON."""
    start = 1 if text.startswith(BOM) else 0
    number = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        number += 1
        line = text[start:end]
        start = end + 1
        if line.strip():
            try:
                yield orjson.loads(line)
            except (ValueError, RecursionError) as exc:
                raise ValidationError([Problem(f"line {number}", None, f"invalid JSON: {exc}")]) from None


def _array(text: str, start: int) -> Iterator[Any]:
    """The values of the JSON array at ``start`` of ``text``, one at a time; ValidationError for bad JSON."""
    position = _skip_space(text, start + 1)
    if text.startswith("]", position):
        position += 1
    else:
        while True:
            try:
                value, end = _DECODER.raw_decode(text, position)
                if _SURROGATE.search(text, position, end):
                    orjson.loads(text[position:end])  # refuses a lone surrogate, as for the whole body
            except (ValueError, RecursionError) as exc:
                raise ValidationError([Problem(None, "body", f"invalid JSON: {exc}")]) from None
            yield value
            position = _skip_space(text, end)
            if text.startswith(",", position):
                position = _skip_space(text, position + 1)
            elif text.startswith("]", position):
                position += 1
                break
            else:
                _invalid("expected ',' or ']'", position)
    if _skip_space(text, position) != len(text):
        _invalid("extra data after the array", position)


def _skip_space(text: str, position: int) -> int:
    """The position of the first character at or after ``position`` that is not JSON white space."""
    match = _SPACE.match(text, position)
    return match.end() if match else position


def _invalid(reason: str, position: int) -> NoReturn:
    raise ValidationError([Problem(None, "body", f"invalid JSON: {reason} (char {position})")])
