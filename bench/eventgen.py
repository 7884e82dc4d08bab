"""Realistic generated events (a marketing platform's mix of types), for benchmarks and the example file."""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

# Share of each type in a typical day of an email+SMS platform.
MIX = {
    "DELIVERY": 300, "OPEN": 250, "CLICK": 100, "SOFTBOUNCE": 50, "BOUNCE": 30, "BLOCKED": 10,
    "OPTIN": 30, "OPTOUT": 30, "COMPLAINT": 5, "SMSOPTOUT": 10, "SMSFAILED": 10, "DELIVERYSTART": 5,
}
CAMPAIGNS = ["November news", "Black Friday preview", "Winter sale", "Welcome series 1", "Cart reminder"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com"]
BOUNCES = [("hard", "550 5.1.1 user unknown"), ("soft", "452 4.2.2 mailbox full"),
           ("policy", "554 5.7.1 message rejected as spam"), ("dns", "no MX for domain")]


def generate(count: int, seed: int = 42, start: datetime | None = None, prefix: str = "evt"
             ) -> Iterator[dict[str, Any]]:
    """Yield ``count`` events in time order, as a producer would send them."""
    rng = random.Random(seed)
    types = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    moment = start or datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
    for index, etype in enumerate(types):
        moment += timedelta(milliseconds=rng.randint(1, 4000))
        campaign = rng.randrange(len(CAMPAIGNS))
        event: dict[str, Any] = {
            "id": f"{prefix}-{index:08d}", "type": etype,
            "occurred_at": moment.isoformat().replace("+00:00", "Z"),
            "message_id": f"m-{campaign + 40}", "message_name": CAMPAIGNS[campaign],
            "list_id": str(9990 + rng.randrange(10)),
            "delivered_at": (moment - timedelta(minutes=rng.randint(1, 600))).isoformat().replace("+00:00", "Z"),
        }
        if etype in ("SMSOPTOUT", "SMSFAILED"):
            event["phone"] = f"+4477009{rng.randrange(100000, 999999)}"
        elif etype != "DELIVERYSTART":
            event["email"] = f"user{rng.randrange(1_000_000)}@{rng.choice(DOMAINS)}"
        if etype == "CLICK":
            event["url"] = f"https://shop.example.com/offer/{rng.randrange(500)}?utm_campaign=m-{campaign + 40}"
        elif etype in ("BOUNCE", "SOFTBOUNCE", "BLOCKED"):
            event["category"], event["reason"] = rng.choice(BOUNCES)
        elif etype == "SMSFAILED":
            event["error"] = "absent subscriber"
        elif etype in ("OPTIN", "OPTOUT"):
            event["source"] = rng.choice(["form", "link", "api"])
        event["data"] = {"esp_name": rng.choice(["Amazon SES", "SparkPost", "in-house MTA"])}
        yield event


def main() -> None:
    """Write generated events as JSON Lines to stdout: `python -m bench.eventgen 3000 > events.jsonl`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("count", type=int)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    for event in generate(args.count, args.seed):
        sys.stdout.write(json.dumps(event) + "\n")


if __name__ == "__main__":
    main()
