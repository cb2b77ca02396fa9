"""Off the ceiling (PROTOCOL2.md 4): the first 5,000 training digits, 20 epochs, the test digits; BN, BN + L1, LN, GN
and no normalisation, each at its own peak rate (own_rate's, and no_norm's once chosen), seeds 1-10."""

import store
from experiments import main, no_norm, own_rate

NAME = "scarce"
SHOWS = "5,000 training digits: BN, BN + L1, LN, GN and no normalisation at their own rates, ten seeds"
SEEDS = tuple(range(1, 11))
OVERRIDES: dict = {}
TRAIN_DIGITS = 5_000


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    """Seed by seed; N once its rate is chosen (no_norm.RATE)."""
    chosen = {**main.variants(settings), "N": dict(norm="N")}
    rates = {**own_rate.RATES, "N": no_norm.RATE}
    return [dict(variant=v, seed=s, spec=store.run_spec(settings, seed=s, train_limit=TRAIN_DIGITS, max_lr=rates[v],
                                                        **chosen[v]))
            for s in seeds for v in chosen if rates[v] is not None]
