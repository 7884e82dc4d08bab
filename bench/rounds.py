"""Repeated measurements: run a benchmark's rounds, print each, and give the medians."""
from __future__ import annotations

import statistics
from collections.abc import Callable


def median_rates(rounds: int, measure: Callable[[int], dict[str, float]]) -> dict[str, float]:
    """Run ``measure(round)`` ``rounds`` times, print each round's events/s, and return the medians by name."""
    rates: dict[str, list[float]] = {}
    for round_ in range(rounds):
        figures = measure(round_)
        for name, rate in figures.items():
            rates.setdefault(name, []).append(rate)
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {rate:,.0f}/s" for name, rate in figures.items()))
    return {name: statistics.median(values) for name, values in rates.items()}
