"""The gateway's fixed limits, each in one place with the reason for its number (settings live in config.py)."""
from __future__ import annotations

# The legacy platform's documented batch size: a pull asks for at most this many events,
# and a push destination's batch_max_events cannot exceed it. Larger asks are refused, never cut.
MAX_BATCH_EVENTS = 10_000
# SOAP requests are small (credentials and a list of types), but long type lists and the
# headers some clients add (WS-Security and the like) need room, more than Spyne's default
# of 2 MiB; anything larger is refused before it is parsed, by both SOAP services.
MAX_SOAP_REQUEST_BYTES = 5 * 1024 * 1024
