"""The main comparison at each norm's own learning rate (PROTOCOL.md B): BN, BN + L1, LN and GN, ten seeds each, the
notebook's recipe except the OneCycle peak rate, which is each variant's best on validation (experiment lr), on the
test digits. The same tables, tests and figure as the main comparison at the shared rate, which stays beside it.
"""

import training
from experiments import main

NAME = "own_rate"
SHOWS = "BN, BN + L1, LN and GN each at its own peak learning rate (chosen on validation), ten seeds"  # its line in python -m experiments --help
SEEDS = tuple(range(1, 11))
OVERRIDES: dict = {}  # the notebook's settings, but for each variant's peak rate
# each variant's best peak rate on validation over seeds 1-5 (results/lr.json's "best"; a test holds them equal)
RATES = {"BN": 0.04, "BN+L1": 0.01, "LN": 0.08, "GN": 0.04}


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    """main.runs's order (seed by seed, BN + L1 last), each variant at its own rate."""
    chosen = main.variants(settings)
    return [dict(r, max_lr=RATES[r["variant"]], spec=training.run_spec(settings, seed=r["seed"],
                                                                      max_lr=RATES[r["variant"]], **chosen[r["variant"]]))
            for r in main.runs(settings, seeds)]


summarise, figure, tables = main.summarise, main.figure, main.tables
