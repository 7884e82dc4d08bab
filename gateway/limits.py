"""The gateway's fixed limits, each in one place with the reason for its number (settings live in config.py)."""
from __future__ import annotations

# The legacy platform's documented batch size: a pull asks for at most this many events,
# and a push destination's batch_max_events cannot exceed it. Larger asks are refused, never cut.
MAX_BATCH_EVENTS = 10_000
# SOAP requests are small (credentials and a list of types), but long type lists and the
# headers some clients add (WS-Security and the like) need room, more than Spyne's default
# of 2 MiB; anything larger is refused before it is parsed, by both SOAP services.
MAX_SOAP_REQUEST_BYTES = 5 * 1024 * 1024
# Request bodies handled at once (gateway/api/body.py, body_budget_bytes): small bodies (any API
# call but a bulk ingest) always pass. A body that finds no room waits for the bodies ahead of
# it (eight bodies of 30 MB, one after the other, take 20 to 30 s on two busy cores), within
# the 60 s that producers' HTTP clients commonly wait for an answer; then a 503 with Retry-After.
# A waiting body holds a server thread: run more threads than bulk uploads come at once.
FREE_BODY_BYTES = 2**20
BODY_WAIT_SECONDS = 60.0
BODY_RETRY_AFTER_SECONDS = 5
