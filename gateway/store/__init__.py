"""The event store: one SQLAlchemy database (SQLite by default, PostgreSQL by URL)."""
