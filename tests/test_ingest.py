"""Bulk ingest on SQLite and PostgreSQL: requests and files, all or nothing, idempotent, per account."""
from __future__ import annotations

import io
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway import ingest
from gateway.accounts import NewAccount
from gateway.errors import ValidationError
from gateway.ingest import IngestResult, ingest_file, ingest_request, store_events
from gateway.runtime import Runtime
from gateway.store.models import Destination, Event, QueueItem, Route
from tests.support.events import raw_event, write_jsonl


def stored(runtime: Runtime, account: NewAccount) -> dict[str, str]:
    """The account's stored events: producer id to type."""
    with runtime.sessions() as session:
        return dict(session.execute(select(Event.uid, Event.type).where(Event.account_id == account.id)).all())


def queued(runtime: Runtime, destination_id: int) -> list[tuple[str, str]]:
    """(producer id, type) of each queue row of a destination, sorted."""
    with runtime.sessions() as session:
        rows = session.execute(
            select(Event.uid, QueueItem.event_type)
            .join(Event, Event.id == QueueItem.event_id)
            .where(QueueItem.destination_id == destination_id)
        ).all()
    return sorted((uid, etype) for uid, etype in rows)


def total_rows(runtime: Runtime) -> tuple[int, int]:
    """How many events and queue rows the whole store holds."""
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(Event)), session.scalar(
            select(func.count()).select_from(QueueItem))


def test_request_stores_events_and_a_pull_queue_row_each(runtime: Runtime, account: NewAccount) -> None:
    raws = [raw_event("e1", "OPEN"), raw_event("e2", "click"), raw_event("e3", "SMSFAILED", error="absent subscriber"),
            raw_event("e4", "DELIVERYSTART")]
    assert ingest_request(runtime.sessions, account.id, raws) == IngestResult(4, 0)
    assert stored(runtime, account) == {"e1": "OPEN", "e2": "CLICK", "e3": "SMSFAILED", "e4": "DELIVERYSTART"}
    assert queued(runtime, account.pull_destination_id) == [
        ("e1", "OPEN"), ("e2", "CLICK"), ("e3", "SMSFAILED"), ("e4", "DELIVERYSTART")]
    with runtime.sessions() as session:
        states = session.execute(select(QueueItem.state, QueueItem.attempts)).all()
    assert set(states) == {("ready", 0)}


def test_stored_event_keeps_every_field(runtime: Runtime, account: NewAccount) -> None:
    ingest_request(runtime.sessions, account.id, [raw_event(
        "e1", "hard", occurred_at="2026-11-24T11:15:00+01:00", delivered_at=1795510800, message_id="m-42",
        message_name="November news", list_id=9997, category="hard", reason="550 user unknown",
        esp_name="Amazon SES", data={"tags": ["a", "b"]})])
    with runtime.sessions() as session:
        event = session.scalars(select(Event)).one()
    assert (event.type, event.email, event.message_id, event.message_name, event.list_id, event.category,
            event.reason) == ("BOUNCE", "e1@example.com", "m-42", "November news", "9997", "hard", "550 user unknown")
    assert event.occurred_at == datetime(2026, 11, 24, 10, 15, tzinfo=timezone.utc)
    assert event.delivered_at == datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    assert event.occurred_at.tzinfo == timezone.utc
    assert event.data == {"esp_name": "Amazon SES", "tags": ["a", "b"]}


def test_one_queue_row_per_routed_destination(runtime: Runtime, account: NewAccount) -> None:
    with runtime.sessions.begin() as session:
        webhook = Destination(account_id=account.id, kind="http", name="hook", settings={"url": "http://x"})
        session.add(webhook)
        session.flush()
        session.add(Route(account_id=account.id, event_type="CLICK", destination_id=webhook.id))
        webhook_id = webhook.id
    ingest_request(runtime.sessions, account.id, [raw_event("e1", "OPEN"), raw_event("e2", "CLICK")])
    assert queued(runtime, account.pull_destination_id) == [("e1", "OPEN"), ("e2", "CLICK")]
    assert queued(runtime, webhook_id) == [("e2", "CLICK")]


def test_an_unrouted_type_is_stored_but_not_queued(runtime: Runtime, account: NewAccount) -> None:
    with runtime.sessions.begin() as session:
        session.query(Route).filter(Route.account_id == account.id, Route.event_type == "OPEN").delete()
    assert ingest_request(runtime.sessions, account.id,
                          [raw_event("e1", "OPEN"), raw_event("e2", "CLICK")]) == IngestResult(2, 0)
    assert stored(runtime, account) == {"e1": "OPEN", "e2": "CLICK"}
    assert queued(runtime, account.pull_destination_id) == [("e2", "CLICK")]


def test_events_and_queue_rows_share_the_callers_transaction(runtime: Runtime, account: NewAccount) -> None:
    events = ingest.model.validate_all([raw_event("e1"), raw_event("e2")])
    with runtime.sessions() as session:
        session.begin()
        assert store_events(session, account.id, events) == IngestResult(2, 0)
        session.rollback()
    assert total_rows(runtime) == (0, 0)


def test_a_resent_event_is_a_duplicate(runtime: Runtime, account: NewAccount) -> None:
    assert ingest_request(runtime.sessions, account.id, [raw_event("e1"), raw_event("e2")]) == IngestResult(2, 0)
    assert ingest_request(runtime.sessions, account.id, [raw_event("e1"), raw_event("e2")]) == IngestResult(0, 2)
    assert ingest_request(runtime.sessions, account.id,
                          [raw_event("e2", "CLICK"), raw_event("e3")]) == IngestResult(1, 1)
    assert stored(runtime, account) == {"e1": "OPEN", "e2": "OPEN", "e3": "OPEN"}
    assert total_rows(runtime) == (3, 3)


def test_duplicates_inside_one_request(runtime: Runtime, account: NewAccount) -> None:
    result = ingest_request(runtime.sessions, account.id,
                            [raw_event("e1"), raw_event("e2"), raw_event("e1", "CLICK"), raw_event("e1")])
    assert result == IngestResult(2, 2)
    assert stored(runtime, account) == {"e1": "OPEN", "e2": "OPEN"}
    assert total_rows(runtime) == (2, 2)


def test_one_invalid_event_stores_nothing_and_every_problem_is_listed(
    runtime: Runtime, account: NewAccount
) -> None:
    raws = [raw_event("e0"), raw_event("e1", "nope"), raw_event("e2"), raw_event("e3", "CLICK", url="ftp://x/y"),
            {"id": "e4", "type": "OPEN", "occurred_at": "2026-11-24T10:15:00"}, raw_event("e5", data=[1])]
    with pytest.raises(ValidationError) as caught:
        ingest_request(runtime.sessions, account.id, raws)
    assert [(p.record, p.field) for p in caught.value.problems] == [
        (1, "type"), (3, "url"), (4, "occurred_at"), (4, "email"), (5, "data")]
    assert total_rows(runtime) == (0, 0)


def test_accounts_never_share_events(runtime: Runtime, account: NewAccount, other_account: NewAccount) -> None:
    assert ingest_request(runtime.sessions, account.id, [raw_event("e1"), raw_event("e2")]) == IngestResult(2, 0)
    # The same producer ids are new for another account.
    assert ingest_request(runtime.sessions, other_account.id,
                          [raw_event("e2", "CLICK"), raw_event("e3", "CLICK")]) == IngestResult(2, 0)
    assert stored(runtime, account) == {"e1": "OPEN", "e2": "OPEN"}
    assert stored(runtime, other_account) == {"e2": "CLICK", "e3": "CLICK"}
    assert queued(runtime, account.pull_destination_id) == [("e1", "OPEN"), ("e2", "OPEN")]
    assert queued(runtime, other_account.pull_destination_id) == [("e2", "CLICK"), ("e3", "CLICK")]
    with runtime.sessions() as session:
        crossed = session.scalar(
            select(func.count()).select_from(QueueItem)
            .join(Event, Event.id == QueueItem.event_id)
            .join(Destination, Destination.id == QueueItem.destination_id)
            .where(Event.account_id != Destination.account_id))
    assert crossed == 0


def test_jsonl_file(runtime: Runtime, account: NewAccount, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl",
                       [raw_event("e1"), raw_event("e2", "CLICK"), "", raw_event("e3", "unsubscribe")])
    result = ingest_file(runtime.sessions, account.id, path)
    assert (result.lines, result.stored, result.rejected, result.problems) == (3, IngestResult(3, 0), 0, [])
    assert stored(runtime, account) == {"e1": "OPEN", "e2": "CLICK", "e3": "OPTOUT"}
    assert len(queued(runtime, account.pull_destination_id)) == 3


def test_csv_file(runtime: Runtime, account: NewAccount, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "\ufeffid,type,occurred_at,email,phone,url,data.esp_name,data\n"
        "c1,open,2026-11-24T10:15:00Z,jane@example.com,,,Amazon SES,\n"
        'c2,CLICK,1795515300,joe@example.com,,https://example.com/offer,SparkPost,'
        '"{""tags"": [""x""], ""n"": 100000000000000000000000000000}"\n'
        "c3,SMSOPTOUT,2026-11-24T11:15:00+01:00,,+44 7700 900123,,,\n",
        encoding="utf-8")
    result = ingest_file(runtime.sessions, account.id, path)
    assert (result.lines, result.stored, result.rejected) == (3, IngestResult(3, 0), 0)
    with runtime.sessions() as session:
        events = {e.uid: e for e in session.scalars(select(Event))}
    assert events["c1"].data == {"esp_name": "Amazon SES"}
    # Numbers too large for 64 bits arrive as floats, as they do in JSON bodies and JSON Lines.
    assert events["c2"].data == {"esp_name": "SparkPost", "tags": ["x"], "n": 1e29}
    assert events["c2"].url == "https://example.com/offer"
    assert events["c3"].phone == "+447700900123" and events["c3"].data is None
    assert {e.occurred_at for e in events.values()} == {datetime(2026, 11, 24, 10, 15, tzinfo=timezone.utc)}


def test_a_file_with_invalid_lines_stores_nothing(runtime: Runtime, account: NewAccount, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [
        raw_event("e1"), raw_event("e2", "nope"), raw_event("e3"), '{"id": "e4", "type": "OPEN",',
        {"id": "e5", "type": "CLICK", "occurred_at": 1795515300, "email": "e5@example.com"}])
    with pytest.raises(ValidationError) as caught:
        ingest_file(runtime.sessions, account.id, path)
    assert [(p.record, p.field) for p in caught.value.problems] == [
        ("line 2", "type"), ("line 4", None), ("line 5", "url")]
    assert "invalid JSON" in caught.value.problems[1].message
    assert total_rows(runtime) == (0, 0)


def test_a_csv_file_with_invalid_lines_names_them(runtime: Runtime, account: NewAccount, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("id,type,occurred_at,email\n"
                    "c1,OPEN,2026-11-24T10:15:00Z,a@example.com\n"
                    "c2,OPEN,not a time,b@example.com\n", encoding="utf-8")
    with pytest.raises(ValidationError) as caught:
        ingest_file(runtime.sessions, account.id, path)
    assert [(p.record, p.field) for p in caught.value.problems] == [("line 3", "occurred_at")]
    assert total_rows(runtime) == (0, 0)


def test_skip_invalid_stores_the_valid_lines_and_writes_the_rejects(
    runtime: Runtime, account: NewAccount, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "events.jsonl",
                       [raw_event("e1"), raw_event("e2", "nope"), "not json", raw_event("e4")])
    rejects = io.StringIO()
    result = ingest_file(runtime.sessions, account.id, path, skip_invalid=True, rejects=rejects)
    assert (result.lines, result.stored, result.rejected) == (4, IngestResult(2, 0), 2)
    assert [(p.record, p.field) for p in result.problems] == [("line 2", "type"), ("line 3", None)]
    assert stored(runtime, account) == {"e1": "OPEN", "e4": "OPEN"}
    written = [json.loads(line) for line in rejects.getvalue().splitlines()]
    assert [(r["line"], r["record"]) for r in written] == [(2, raw_event("e2", "nope")), (3, None)]
    assert written[0]["errors"][0]["field"] == "type" and "'nope'" in written[0]["errors"][0]["message"]
    assert "invalid JSON" in written[1]["errors"][0]["message"]


def test_rerunning_a_file_stores_nothing_new(
    runtime: Runtime, account: NewAccount, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, so that the file spans several transactions and repeats cross chunks.
    monkeypatch.setattr(ingest, "FILE_CHUNK", 3)
    records = [raw_event(f"e{i}", ["OPEN", "CLICK", "BOUNCE"][i % 3]) for i in range(10)] \
        + [raw_event("e4"), raw_event("e9")]
    path = write_jsonl(tmp_path / "events.jsonl", records)
    first = ingest_file(runtime.sessions, account.id, path)
    assert (first.lines, first.stored) == (12, IngestResult(10, 2))
    again = ingest_file(runtime.sessions, account.id, path)
    assert (again.lines, again.stored) == (12, IngestResult(0, 12))
    assert total_rows(runtime) == (10, 10)


def test_file_progress_counts_every_byte(runtime: Runtime, account: NewAccount, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [raw_event("e1"), raw_event("é2")])
    seen: list[int] = []
    ingest_file(runtime.sessions, account.id, path, progress=seen.append)
    assert sum(seen) == path.stat().st_size


def test_file_format_from_name_or_given(tmp_path: Path) -> None:
    assert ingest.file_format(tmp_path / "a.csv") == "csv"
    assert ingest.file_format(tmp_path / "a.CSV.gz") == "csv"
    assert ingest.file_format(tmp_path / "a.jsonl") == "jsonl"
    assert ingest.file_format(tmp_path / "a.txt", "csv") == "csv"
    with pytest.raises(ValidationError):
        ingest.file_format(tmp_path / "a.txt", "xml")


def test_example_file_ingests_completely(runtime: Runtime, account: NewAccount) -> None:
    path = Path(__file__).parent.parent / "examples" / "events.jsonl"
    types = Counter(json.loads(line)["type"] for line in path.read_text().splitlines())
    result = ingest_file(runtime.sessions, account.id, path)
    assert (result.lines, result.stored, result.rejected) == (3000, IngestResult(3000, 0), 0)
    assert set(types) == set(ingest.model.ALL_TYPES)
    assert Counter(stored(runtime, account).values()) == types


def test_data_is_stored_alike_on_both_stores(runtime: Runtime, account: NewAccount) -> None:
    data = {"note": "nul \x00 inside", "big": 2**63 - 1, "nested": {"list": [1.5, None, True]}, "ünï": "cødé"}
    ingest_request(runtime.sessions, account.id, [raw_event("e1", data=data)])
    with runtime.sessions() as session:
        assert session.scalars(select(Event.data)).one() == data


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_data_that_is_not_json_is_refused(runtime: Runtime, account: NewAccount, value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        ingest_request(runtime.sessions, account.id, [raw_event("e1", data={"score": value})])
    assert [(p.record, p.field) for p in caught.value.problems] == [(0, "data")]
    assert total_rows(runtime) == (0, 0)
