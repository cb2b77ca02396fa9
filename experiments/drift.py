"""Test digits that drift, on fresh models (PROTOCOL2.md 3): BN, LN and GN at the shared rate, seeds 11-22, never
looked at under Protocol 1; seven shifts at three severities."""

from experiments import main

NAME = "drift"
SHOWS = "drift on fresh models (seeds 11-22): seven shifts, BN running, re-estimated and per batch against LN and GN"
SEEDS = tuple(range(11, 23))
OVERRIDES: dict = {}


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    return [r for r in main.runs(settings, seeds) if r["variant"] in ("BN", "LN", "GN")]
