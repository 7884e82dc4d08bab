"""The tables of the event store, as typed SQLAlchemy 2.x models."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from gateway import vault

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer, "sqlite")


def sqlite_time(value: datetime) -> str:
    """How a UTC timestamp is stored on SQLite: fixed-width ISO text that sorts as time does."""
    if value.tzinfo is not timezone.utc:  # validated and stored times already are
        value = value.astimezone(timezone.utc)
    return value.isoformat(sep=" ", timespec="microseconds")[:26]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always stored in UTC and always read back timezone-aware.

    On SQLite it is stored as fixed-width ISO text ("2026-11-24 10:15:00.000000"), which
    sorts and compares correctly and costs far less to convert than the generic type.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return sqlite_time(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
        moment: datetime = value
        return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


class SealedSettings(TypeDecorator[dict[str, Any]]):
    """A destination's settings as JSON, each secret among them sealed with the keys of the store's engine
    (``gateway.vault``): sealed when written, opened when read."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> Any:
        return None if value is None else vault.seal_stored(dialect, value)

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, Any] | None:
        return None if value is None else vault.open_stored(dialect, value)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Account(Base):
    """A customer of the gateway: owns events, destinations and credentials."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    notify_email: Mapped[str | None] = mapped_column(String(1000))  # where operational notices are mailed
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key of an account; only its SHA-256 is stored."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """One stored event; unique per account on the producer's event id."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("account_id", "uid", name="uq_events_account_uid"),
        Index("ix_events_account_type_time", "account_id", "type", "occurred_at"),
        # The console: events by recipient (migration 0007).
        Index("ix_events_account_email", "account_id", "email",
              sqlite_where=text("email IS NOT NULL"), postgresql_where=text("email IS NOT NULL")),
        Index("ix_events_account_phone", "account_id", "phone",
              sqlite_where=text("phone IS NOT NULL"), postgresql_where=text("phone IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    email: Mapped[str | None] = mapped_column(String(1000))
    phone: Mapped[str | None] = mapped_column(String(32))
    message_id: Mapped[str | None] = mapped_column(String(1000))
    message_name: Mapped[str | None] = mapped_column(String(1000))
    list_id: Mapped[str | None] = mapped_column(String(1000))
    delivered_at: Mapped[datetime | None]
    url: Mapped[str | None] = mapped_column(String(2048))
    category: Mapped[str | None] = mapped_column(String(1000))
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(1000))
    data: Mapped[dict[str, Any] | None]


class Destination(Base):
    """Where an account's events go: its pull queue, a webhook, an email address or a file server."""

    __tablename__ = "destinations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(200), default="")
    app: Mapped[str | None] = mapped_column(String(200))
    settings: Mapped[dict[str, Any]] = mapped_column(SealedSettings, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deactivated_at: Mapped[datetime | None]
    failing_since: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    # After a failure the whole destination waits out the retry delay, not just the batch
    # that failed: a dead endpoint is not tried once per waiting batch.
    paused_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Route(Base):
    """One event type of one account goes to one destination (a type may go to several)."""

    __tablename__ = "routes"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True)


class QueueItem(Base):
    """One event waiting for (or delivered to) one destination.

    ``state`` is one of ``gateway.store.queue.QueueState``, which owns every change of it.
    Written in the same transaction as its event.
    """

    __tablename__ = "queue"
    # Partial indexes over the rows still waiting: they stay small however many delivered
    # rows the table keeps, and give takers their rows in id (arrival) order.
    __table_args__ = (
        UniqueConstraint("destination_id", "event_id", name="uq_queue_destination_event"),
        Index("ix_queue_pending", "destination_id", "id",
              sqlite_where=text("state != 'done'"), postgresql_where=text("state != 'done'")),
        Index("ix_queue_pending_due", "destination_id", "due_at",
              sqlite_where=text("state != 'done'"), postgresql_where=text("state != 'done'")),
        Index("ix_queue_lease", "destination_id", "lease_id",
              sqlite_where=text("lease_id IS NOT NULL"), postgresql_where=text("lease_id IS NOT NULL")),
        Index("ix_queue_done", "done_at", sqlite_where=text("state = 'done'"), postgresql_where=text("state = 'done'")),
        Index("ix_queue_parked", "destination_id", "done_at",
              sqlite_where=text("state = 'parked'"), postgresql_where=text("state = 'parked'")),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(8), default="ready")
    due_at: Mapped[datetime]
    lease_id: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)  # why a parked row's event cannot be rendered


class Attempt(Base):
    """One try at delivering a batch to a destination, kept for the attempt log."""

    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_destination_time", "destination_id", "started_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime]
    duration_ms: Mapped[int] = mapped_column(Integer)
    event_count: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, default="")


class FilePeriod(Base):
    """One period of a file destination: the span of arrivals its file holds, and, once uploaded, the file.

    A destination's periods never overlap (the next starts where the last ended, or later when
    periods without events are skipped), and no two share a file name.
    """

    __tablename__ = "file_periods"
    __table_args__ = (
        UniqueConstraint("destination_id", "starts_at", name="uq_file_periods_start"),
        UniqueConstraint("destination_id", "name", name="uq_file_periods_name"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    sequence: Mapped[int] = mapped_column(Integer)  # among the destination's periods starting that UTC day, from 1
    event_count: Mapped[int] = mapped_column(Integer)  # the rows cut into it
    name: Mapped[str | None] = mapped_column(String(255))  # the file it was uploaded as
    sha256: Mapped[str | None] = mapped_column(String(64))
    uploaded_at: Mapped[datetime | None]


class PullBatch(Base):
    """A batch handed to a pulling client: leased until acknowledged, re-fetchable for a recovery window."""

    __tablename__ = "pull_batches"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    event_count: Mapped[int] = mapped_column(Integer)
    acked_at: Mapped[datetime | None]


class Notice(Base):
    """An operational notice for an account's owner (a destination was deactivated, say)."""

    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    destination_id: Mapped[int | None] = mapped_column(ForeignKey("destinations.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)


class LegacySession(Base):
    """A session of either SOAP API; only the SHA-256 of its id (the legacy `beanId`) is stored."""

    __tablename__ = "legacy_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginFailure(Base):
    """Failed logins in a row of one account from one client address, for the wait before its next try."""

    __tablename__ = "login_failures"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(index=True)
