"""What normalising buys this network (PROTOCOL2.md 1): the same skeleton without normalisation, `Net(norm="N")`,
its convolutions with a bias. Its peak learning rate is chosen on validation (seeds 1-5, the first 50,000 training
digits, scored on the last 10,000; Protocol 1 A's edge rule, PROTOCOL2.md's tie rule), then it runs seeds 1-10 on the
test digits at that rate, against BN, LN and GN at their own rates (own_rate's stored runs).
"""

import store

NAME = "no_norm"
SHOWS = "no normalisation: its rate on validation, then ten seeds against BN, LN and GN at their own rates"
SEEDS = tuple(range(1, 11))
VALIDATION_SEEDS = tuple(range(1, 6))
OVERRIDES: dict = {}
GRID = (0.005, 0.01, 0.02, 0.04)  # PROTOCOL2.md 1; the edge rule may add rates past an end (BEYOND)
BEYOND: tuple = ()
RATE: float | None = None  # chosen on validation once its runs are stored; until then only those are listed


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    """The validation sweep (seeds 1-5 among `seeds`), then, once RATE is chosen, the test runs at it."""
    sweep = [dict(variant="N", split="validation", max_lr=rate, seed=s,
                  spec=store.run_spec(settings, "N", s, split="validation", max_lr=rate))
             for s in seeds if s in VALIDATION_SEEDS for rate in sorted(GRID + BEYOND)]
    test = [] if RATE is None else [dict(variant="N", split="test", max_lr=RATE, seed=s,
                                         spec=store.run_spec(settings, "N", s, max_lr=RATE)) for s in seeds]
    return sweep + test
