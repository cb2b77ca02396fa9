"""The experiments beyond the notebook's study, behind one entry point: `python -m experiments NAME`.

- main: BN, BN + L1, LN and GN over ten seeds, with paired, equivalence and Holm-adjusted tests;
- own_rate: the same four variants, each at its own peak learning rate (chosen on validation by lr);
- l1 and lr: the L1 lambda and each norm's peak learning rate, chosen on the validation split;
- norm_batch: BatchNorm against the number of images it normalises over, LN and GN as controls;
- ghost_stats: what breaks BatchNorm on ghost batches of one or two images, and what restores it;
- gn_groups: GroupNorm from one group (LayerNorm) to one per channel (InstanceNorm);
- bn_test and shift: the main comparison's stored models at test time, and on test digits that drift;
- PROTOCOL2.md's four: no_norm (no normalisation), real_batch (real small batches), drift (fresh models, seven
  shifts) and scarce (5,000 training digits), whose primary tests carry verdicts within their families.

Each reads its runs from the run store (store.py), trains only those it does not hold, and writes results/NAME.json
and Images/NAME.png. What an experiment module gives is written once in experiments/interface.py (Experiment); the
shared machinery is in experiments/runner.py, the statistics in experiments/stats.py, the documents' numbers in
experiments/report.py. What the command line, the study table, the report and the protocol know of the experiments
beside their modules is below, in one place: REGISTRY and the orders the study table and the protocol take them in.
"""

from typing import NamedTuple


class Entry(NamedTuple):
    """What the command line, the study table, the report and the protocol read of an experiment beside its module."""

    protocol: int
    """1: PROTOCOL.md's; 2: PROTOCOL2.md's, whose primary verdicts answer in the README's words (interface.Answer)."""

    section: str
    """The anchor of its STUDY.md heading, where the README's links to its evidence land."""


# The registry: every experiment, in the order of `python -m experiments --help` and STUDY.md's compute table
REGISTRY = {
    "main": Entry(1, "the-main-comparison-four-variants-ten-seeds"),
    "own_rate": Entry(1, "the-main-comparison-at-each-norms-own-learning-rate"),
    "l1": Entry(1, "the-l1-lambda-on-validation"),
    "lr": Entry(1, "each-norms-learning-rate-on-validation"),
    "norm_batch": Entry(1, "normalisation-batch-size"),
    "gn_groups": Entry(1, "groupnorms-groups"),
    "bn_test": Entry(1, "batchnorm-at-test-time"),
    "shift": Entry(1, "test-digits-that-drift"),
    "ghost_stats": Entry(1, "what-breaks-batchnorm-on-one-or-two-images-and-what-restores-it"),
    "no_norm": Entry(2, "what-normalising-buys-no-normalisation"),
    "real_batch": Entry(2, "real-small-batches"),
    "drift": Entry(2, "drift-on-fresh-models"),
    "scarce": Entry(2, "scarce-data-5000-training-digits"),
}
EXPERIMENTS = list(REGISTRY)
PROTOCOL2 = [name for name, entry in REGISTRY.items() if entry.protocol == 2]
# Protocol 1's experiments in the order of STUDY.md's table of every verdict (experiments/study.py): ghost_stats's
# verdicts before shift's
VERDICTS = ("main", "own_rate", "l1", "lr", "norm_batch", "gn_groups", "bn_test", "ghost_stats", "shift")
# The seeds of each experiment whose runs a protocol declares, in the order they train (experiments/protocol.py).
# PROTOCOL.md (all stored): A, lr; D, norm_batch and gn_groups; B, own_rate. PROTOCOL2.md, cheapest arms first: no
# normalisation's validation sweep (its test runs and scarce's N once its rate is chosen), scarce data, drift's fresh
# models (36 runs, about 3 CPU-hours), real batches (60 runs, about 8 CPU-hours; 32 before 8).
DECLARED = {"lr": tuple(range(1, 6)), "norm_batch": tuple(range(1, 11)), "gn_groups": tuple(range(1, 11)),
            "own_rate": tuple(range(1, 11)), "no_norm": tuple(range(1, 11)), "scarce": tuple(range(1, 11)),
            "drift": tuple(range(11, 23)), "real_batch": tuple(range(1, 11))}
