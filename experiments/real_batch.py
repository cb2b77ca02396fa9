"""Real small batches (PROTOCOL2.md 2): BN, LN and GN trained with an optimiser batch of B images, every norm over
the whole batch (no ghost batch), at B = 8 and 32, seeds 1-10; B = 128 is the main comparison's runs. With B, the
peak rate scales linearly (0.02 x B / 128) and the weights' moving average decays per step by 0.998^(B / 128), so
that it spans the same number of images; weight decay, epochs and augmentation stay (PROTOCOL2.md says why).
"""

import store
from experiments import feasibility

NAME = "real_batch"
SHOWS = "BN, LN and GN trained with real batches of 8 and 32 images (rate scaled with the batch), ten seeds"
SEEDS = tuple(range(1, 11))
OVERRIDES: dict = {}
BATCHES = feasibility.SMALL_BATCHES + (128,)
NORMS = {"BN": "B", "LN": "L", "GN": "G"}


def scaled(settings: dict, batch: int) -> dict:
    """The recipe's settings that scale with the batch, as run_spec overrides."""
    ratio = batch / settings["BATCH_SIZE"]
    return dict(batch_size=batch, max_lr=settings["MAX_LR"] * ratio, ema_decay=settings["EMA_DECAY"] ** ratio)


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    """Batch by batch (the larger, cheaper ones first), seed by seed."""
    return [dict(variant=v, batch=b, seed=s, spec=store.run_spec(settings, norm, s, **scaled(settings, b)))
            for b in sorted(BATCHES, reverse=True) for s in seeds for v, norm in NORMS.items()]
