"""The event model: type names, validation, and every rendering (JSON, CSV, legacy CSV, form)."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any

import pytest

from gateway.errors import ValidationError
from gateway.events import formats, model
from tests.support.events import raw_event

# The mapping the issue asks for, written out so that a change to TYPE_ALIASES shows here.
DOCUMENTED_ALIASES = {
    "hard": "BOUNCE",
    "soft": "SOFTBOUNCE",
    "unsubscribe": "OPTOUT",
    "subscribe": "OPTIN",
    "sent": "DELIVERY",
    "complaint": "COMPLAINT",
}

ISSUE_EXAMPLE = {
    "id": "evt-000123", "type": "CLICK", "occurred_at": "2026-11-24T10:15:00Z",
    "email": "jane@example.com", "message_id": "m-42", "message_name": "November news",
    "list_id": "9997", "delivered_at": "2026-11-24T09:00:00Z", "url": "https://example.com/offer",
    "data": {"esp_name": "Amazon SES"},
}


def valid(raw: dict[str, Any]) -> model.Event:
    event, problems = model.validate(raw, 0)
    assert problems == []
    assert event is not None
    return event


def problem_fields(raw: Any, record: int | str = 3) -> list[tuple[object, object]]:
    event, problems = model.validate(raw, record)
    assert event is None
    return [(p.record, p.field) for p in problems]


@pytest.mark.parametrize("etype", model.ALL_TYPES)
def test_every_type_is_accepted_in_any_case(etype: str) -> None:
    for spelling in (etype, etype.lower(), etype.capitalize(), f"  {etype.lower()} "):
        assert valid(raw_event("e1", etype, type=spelling))["type"] == etype


@pytest.mark.parametrize(("alias", "expected"), sorted(DOCUMENTED_ALIASES.items()))
def test_documented_aliases(alias: str, expected: str) -> None:
    assert model.TYPE_ALIASES[alias] == expected
    assert valid(raw_event("e1", expected, type=alias))["type"] == expected
    assert valid(raw_event("e1", expected, type=alias.upper()))["type"] == expected


@pytest.mark.parametrize(("alias", "expected"), sorted(model.TYPE_ALIASES.items()))
def test_every_alias_maps_to_a_type(alias: str, expected: str) -> None:
    assert expected in model.ALL_TYPES
    assert model.normalize_type(alias) == expected
    assert model.normalize_type(alias.title()) == expected


def test_twelve_types() -> None:
    assert set(model.ALL_TYPES) == {
        "DELIVERYSTART", "DELIVERY", "OPEN", "CLICK", "BOUNCE", "SOFTBOUNCE", "BLOCKED",
        "OPTIN", "OPTOUT", "SMSOPTOUT", "SMSFAILED", "COMPLAINT",
    }


def test_parse_types_accepts_a_list_or_commas() -> None:
    assert model.parse_types("open, Click,hard,,OPEN") == ["OPEN", "CLICK", "BOUNCE"]
    assert model.parse_types(["unsubscribe", "sent"]) == ["OPTOUT", "DELIVERY"]
    with pytest.raises(ValueError, match="nope"):
        model.parse_types("open,nope")


def test_unknown_type_names_record_and_field() -> None:
    event, problems = model.validate(raw_event("e1", "OPEN", type="bogus"), 7)
    assert event is None
    assert [(p.record, p.field) for p in problems] == [(7, "type")]
    assert "'bogus'" in problems[0].message
    assert "OPEN" in problems[0].message and "COMPLAINT" in problems[0].message


def test_missing_type_id_and_time_are_required() -> None:
    event, problems = model.validate({"email": "jane@example.com"}, 0)
    assert event is None
    assert {(p.field, p.message) for p in problems} == {
        ("type", "is required"), ("id", "is required"), ("occurred_at", "is required"),
    }


@pytest.mark.parametrize("etype", sorted(set(model.ALL_TYPES) - model.SMS_TYPES - model.CAMPAIGN_TYPES))
def test_email_types_need_an_email(etype: str) -> None:
    raw = raw_event("e1", etype)
    del raw["email"]
    assert ("line 4", "email") in problem_fields(raw, "line 4")


@pytest.mark.parametrize("etype", sorted(model.SMS_TYPES))
def test_sms_types_need_a_phone(etype: str) -> None:
    raw = raw_event("e1", etype, email="jane@example.com")
    del raw["phone"]
    assert problem_fields(raw) == [(3, "phone")]


@pytest.mark.parametrize("etype", sorted(model.CAMPAIGN_TYPES))
def test_campaign_types_need_no_recipient(etype: str) -> None:
    event = valid(raw_event("e1", etype))
    assert "email" not in event and "phone" not in event


def test_phone_numbers_are_normalised_and_checked() -> None:
    assert valid(raw_event("e1", "SMSFAILED", phone="+44 (7700) 900-123"))["phone"] == "+447700900123"
    assert problem_fields(raw_event("e1", "SMSFAILED", phone="call me")) == [(3, "phone")]


def test_click_needs_a_url() -> None:
    raw = raw_event("e1", "CLICK")
    del raw["url"]
    event, problems = model.validate(raw, 2)
    assert event is None
    assert [(p.record, p.field, p.message) for p in problems] == [(2, "url", "is required for CLICK")]


@pytest.mark.parametrize("url", ["ftp://example.com/file", "javascript:alert(1)", "example.com/offer", "https://"])
def test_bad_url(url: str) -> None:
    event, problems = model.validate(raw_event("e1", "CLICK", url=url), 5)
    assert event is None
    assert [(p.record, p.field) for p in problems] == [(5, "url")]
    assert "http or https URL" in problems[0].message


def test_bad_email() -> None:
    assert problem_fields(raw_event("e1", "OPEN", email="jane at example")) == [(3, "email")]


@pytest.mark.parametrize("field", ["occurred_at", "delivered_at"])
@pytest.mark.parametrize("value", ["yesterday", "2026-13-45T10:00:00Z", True, [2026, 11, 24], {"at": 1}])
def test_unparseable_time(field: str, value: object) -> None:
    assert problem_fields(raw_event("e1", "OPEN", **{field: value})) == [(3, field)]


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", 1e20,
                                   float("inf"), float("nan")])
def test_out_of_range_time_is_a_problem_not_a_crash(value: object) -> None:
    assert problem_fields(raw_event("e1", "OPEN", occurred_at=value)) == [(3, "occurred_at")]


def test_naive_time_is_refused() -> None:
    event, problems = model.validate(raw_event("e1", "OPEN", occurred_at="2026-11-24T10:15:00"), 1)
    assert event is None
    assert [(p.record, p.field) for p in problems] == [(1, "occurred_at")]
    assert "time zone" in problems[0].message


@pytest.mark.parametrize("value", [[1, 2], "esp=ses", 5, True])
def test_data_must_be_an_object(value: object) -> None:
    event, problems = model.validate(raw_event("e1", "OPEN", data=value), 0)
    assert event is None
    assert [(p.field, p.message) for p in problems] == [("data", "must be a JSON object")]


@pytest.mark.parametrize("value", [{"name": "x"}, ["x"], True])
def test_text_fields_must_be_text(value: object) -> None:
    assert problem_fields(raw_event("e1", "OPEN", message_name=value)) == [(3, "message_name")]


def test_text_fields_have_a_length_limit() -> None:
    assert problem_fields(raw_event("e1", "OPEN", id="x" * 201)) == [(3, "id")]
    assert valid(raw_event("e1", "OPEN", id="x" * 200))["id"] == "x" * 200


def test_nul_characters_are_refused() -> None:
    # PostgreSQL cannot store NUL in text; refusing it here keeps both stores alike.
    assert problem_fields(raw_event("e1", "OPEN", message_name="News\x00letter")) == [(3, "message_name")]


def test_numbers_are_taken_as_text_ids() -> None:
    event = valid(raw_event("e1", "OPEN", id=123, list_id=9997))
    assert (event["id"], event["list_id"]) == ("123", "9997")


def test_every_problem_of_a_record_is_reported() -> None:
    raw = {"id": "e1", "type": "CLICK", "occurred_at": "soon", "url": "mailto:x@example.com", "data": []}
    assert sorted(problem_fields(raw, 0)) == [(0, "data"), (0, "email"), (0, "occurred_at"), (0, "url")]


def test_a_record_that_is_not_an_object() -> None:
    event, problems = model.validate(["OPEN"], 9)  # type: ignore[arg-type]
    assert event is None
    assert [(p.record, p.message) for p in problems] == [(9, "must be a JSON object")]


def test_validate_all_lists_every_problem_with_its_record() -> None:
    raws = [raw_event("e1", "OPEN"), raw_event("e2", "OPEN", type="nope"), raw_event("e3", "CLICK", url="x"),
            raw_event("e4", "SMSOPTOUT")]
    with pytest.raises(ValidationError) as caught:
        model.validate_all(raws)
    assert [(p.record, p.field) for p in caught.value.problems] == [(1, "type"), (2, "url")]
    assert "record 1, field 'type'" in str(caught.value)


def test_validate_all_limits_the_problems() -> None:
    with pytest.raises(ValidationError) as caught:
        model.validate_all([raw_event("e1", "OPEN", type="nope")] * 50, max_problems=10)
    assert len(caught.value.problems) == 10


def test_unknown_keys_go_into_data() -> None:
    event = valid(raw_event("e1", "OPEN", esp_name="Amazon SES", device={"os": "iOS"}, data={"profile": "p1"}))
    assert event["data"] == {"esp_name": "Amazon SES", "device": {"os": "iOS"}, "profile": "p1"}
    assert "esp_name" not in event


def test_fields_of_other_types_go_into_data() -> None:
    event = valid(raw_event("e1", "OPEN", url="https://example.com/x", reason="n/a", source="form"))
    assert "url" not in event and "reason" not in event and "source" not in event
    assert event["data"] == {"url": "https://example.com/x", "reason": "n/a", "source": "form"}


def test_explicit_data_wins_over_a_stray_key() -> None:
    event = valid(raw_event("e1", "OPEN", esp_name="stray", data={"esp_name": "given"}))
    assert event["data"] == {"esp_name": "given"}


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-11-24T10:15:00Z", datetime(2026, 11, 24, 10, 15, tzinfo=timezone.utc)),
    ("2026-11-24T11:15:00+01:00", datetime(2026, 11, 24, 10, 15, tzinfo=timezone.utc)),
    ("2026-11-24T05:15:00.250-05:00", datetime(2026, 11, 24, 10, 15, 0, 250000, tzinfo=timezone.utc)),
    (1795515300, datetime(2026, 11, 24, 10, 15, tzinfo=timezone.utc)),
    (1795515300.5, datetime(2026, 11, 24, 10, 15, 0, 500000, tzinfo=timezone.utc)),
    ("1795515300", datetime(2026, 11, 24, 10, 15, tzinfo=timezone.utc)),
])
def test_times_are_stored_as_aware_utc(value: object, expected: datetime) -> None:
    event = valid(raw_event("e1", "OPEN", occurred_at=value, delivered_at=value))
    for name in ("occurred_at", "delivered_at"):
        assert event[name] == expected
        assert event[name].tzinfo == timezone.utc


def test_to_json_has_the_shape_of_the_issue_example() -> None:
    assert formats.to_json(valid(ISSUE_EXAMPLE)) == ISSUE_EXAMPLE


def test_to_json_of_sms_bounce_and_opt_events() -> None:
    sms = formats.to_json(valid(raw_event("e1", "SMSFAILED", error="absent subscriber")))
    assert sms["phone"] == "+447700900123" and "email" not in sms and sms["error"] == "absent subscriber"
    bounce = formats.to_json(valid(raw_event("e1", "hard", category="hard", reason="550 user unknown")))
    assert (bounce["type"], bounce["category"], bounce["reason"]) == ("BOUNCE", "hard", "550 user unknown")
    opt = formats.to_json(valid(raw_event("e1", "unsubscribe", source="link")))
    assert (opt["type"], opt["source"]) == ("OPTOUT", "link")
    assert "data" not in opt and "url" not in opt


def test_csv_row_follows_csv_columns() -> None:
    assert formats.CSV_COLUMNS == model.FIELD_NAMES
    row = formats.to_csv_row(valid(ISSUE_EXAMPLE))
    assert len(row) == len(formats.CSV_COLUMNS)
    assert dict(zip(formats.CSV_COLUMNS, row, strict=True)) == {
        "id": "evt-000123", "type": "CLICK", "occurred_at": "2026-11-24T10:15:00Z",
        "email": "jane@example.com", "phone": "", "message_id": "m-42", "message_name": "November news",
        "list_id": "9997", "delivered_at": "2026-11-24T09:00:00Z", "url": "https://example.com/offer",
        "category": "", "reason": "", "error": "", "source": "", "data": '{"esp_name":"Amazon SES"}',
    }


def test_an_exported_csv_reads_back_as_the_same_events() -> None:
    originals = [valid(ISSUE_EXAMPLE), valid(raw_event("e1", "SMSFAILED", error="absent, subscriber")),
                 valid(raw_event("e1", "BLOCKED", category="policy", reason='said "no"', extra=[1, 2]))]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(formats.CSV_COLUMNS)
    writer.writerows(formats.to_csv_row(event) for event in originals)
    buffer.seek(0)
    again = [valid(formats.from_csv_record(record)) for record in csv.DictReader(buffer)]
    assert again == originals


def test_csv_data_columns_and_data_json_are_merged() -> None:
    raw = formats.from_csv_record({"id": "e1", "type": "open", "occurred_at": "1795515300", "email": "a@example.com",
                                 "phone": "", "data.esp_name": "SES", "data": '{"profile": "p1"}'})
    assert raw == {"id": "e1", "type": "open", "occurred_at": "1795515300", "email": "a@example.com",
                   "data": {"esp_name": "SES", "profile": "p1"}}


@pytest.mark.parametrize("column", ["[1, 2]", '{"score": NaN}', "{not json"])
def test_a_csv_data_column_that_is_not_an_object_is_refused(column: str) -> None:
    raw = formats.from_csv_record({"id": "e1", "type": "OPEN", "occurred_at": "1795515300", "email": "a@example.com",
                                 "data.esp_name": "SES", "data": column})
    assert problem_fields(raw) == [(3, "data")]


def test_legacy_headers_of_open_and_click_are_the_documented_strings() -> None:
    assert formats.legacy_header("OPEN") == "type, email, messageName, deliveryDate"
    assert formats.legacy_header("CLICK") == "type,email,Message Name,Delivery Date,Click Url,Click Date"


@pytest.mark.parametrize("etype", model.ALL_TYPES)
def test_every_type_has_a_legacy_header_starting_with_type(etype: str) -> None:
    columns = [name.strip() for name in formats.legacy_header(etype).split(",")]
    assert columns[0] == "type"
    row = formats.to_legacy_row(valid(raw_event("e1", etype)))
    assert len(row) == len(columns)
    assert row[0] == etype


def test_legacy_click_row_has_unix_times() -> None:
    assert formats.to_legacy_row(valid(ISSUE_EXAMPLE)) == [
        "CLICK", "jane@example.com", "November news", "1795510800", "https://example.com/offer", "1795515300",
    ]


def test_form_field_names() -> None:
    event = valid({**ISSUE_EXAMPLE, "tags": ["a", "b"], "score": 3})
    assert formats.to_form(event) == [
        ("eventId", "evt-000123"), ("type", "CLICK"), ("Event_date", "1795515300"), ("email", "jane@example.com"),
        ("Delivery_ID", "m-42"), ("messageName", "November news"), ("List_ID", "9997"),
        ("deliveryDate", "1795510800"), ("clickUrl", "https://example.com/offer"),
        ("esp_name", "Amazon SES"), ("score", "3"), ("tags[]", "a"), ("tags[]", "b"),
    ]


def test_form_field_names_of_sms_and_bounce() -> None:
    sms = dict(formats.to_form(valid(raw_event("e1", "SMSFAILED", error="absent subscriber"))))
    assert sms["mobile"] == "+447700900123" and sms["error"] == "absent subscriber" and "email" not in sms
    bounce = dict(formats.to_form(valid(raw_event("e1", "SOFTBOUNCE", category="soft", reason="mailbox full"))))
    assert (bounce["category"], bounce["reason"]) == ("soft", "mailbox full")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_data_must_be_plain_json(value: float) -> None:
    assert problem_fields(raw_event("e1", "OPEN", data={"score": value})) == [(3, "data")]
    assert problem_fields(raw_event("e1", "OPEN", score=value)) == [(3, "data")]


def test_data_has_a_size_limit_also_for_unknown_keys() -> None:
    assert problem_fields(raw_event("e1", "OPEN", data={"x": "y" * model.MAX_DATA_BYTES})) == [(3, "data")]
    assert problem_fields(raw_event("e1", "OPEN", notes="y" * model.MAX_DATA_BYTES)) == [(3, "data")]


def nested(levels: int) -> dict[str, Any]:
    """An object ``levels`` deep, objects and arrays taking turns."""
    value: Any = {}
    for level in range(levels - 2):
        value = {"a": value} if level % 2 else [value]
    return {"a": value}


def test_data_nesting_is_limited_so_that_every_rendering_can_write_it() -> None:
    fine = valid(raw_event("e1", "OPEN", data=nested(model.MAX_DATA_DEPTH)))
    assert formats.to_json(fine)["data"] == nested(model.MAX_DATA_DEPTH)
    for levels in (model.MAX_DATA_DEPTH + 1, 300, 5000):
        assert problem_fields(raw_event("e1", "OPEN", data=nested(levels))) == [(3, "data")]


@pytest.mark.parametrize(("data", "message"), [
    ({"big": 2**64}, "integer beyond 64 bits (at big)"),
    ({"list": [1, -(2**63) - 1]}, "integer beyond 64 bits (at list.1)"),
    ({"text": "caf\u00e9 \ud800"}, "not valid Unicode"),
    ({"caf\udc00": "x"}, "key that is not a text"),
    ({1: "x"}, "key that is not a text"),
    ({"when": datetime(2026, 1, 1, tzinfo=timezone.utc)}, "not JSON (datetime)"),
    ({"a": {"b": [float("-inf")]}}, "NaN or Infinity (at a.b.0)"),
])
def test_data_holds_only_what_every_rendering_can_write(data: dict[Any, Any], message: str) -> None:
    event, problems = model.validate(raw_event("e1", "OPEN", data=data), 0)
    assert event is None and [p.field for p in problems] == ["data"]
    assert message in problems[0].message


def test_data_at_the_limits_is_accepted_and_renders_everywhere() -> None:
    data = {"max": 2**64 - 1, "min": -(2**63), "text": "Zürich ✓", "deep": nested(model.MAX_DATA_DEPTH - 1)}
    event = valid(raw_event("e1", "OPEN", data=data))
    assert formats.render_problem(event) is None


def test_render_problem_names_the_rendering_that_fails() -> None:
    event = valid(raw_event("e1", "OPEN"))
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    assert formats.render_problem({**event, "data": {"deep": deep}}) == (
        "cannot be rendered as JSON: TypeError: Recursion limit reached")
    assert "Integer exceeds 64-bit range" in (formats.render_problem({**event, "data": {"n": 2**70}}) or "")
