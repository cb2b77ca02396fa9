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
experiments/report.py.
"""

PROTOCOL2 = ["no_norm", "real_batch", "drift", "scarce"]
EXPERIMENTS = ["main", "own_rate", "l1", "lr", "norm_batch", "gn_groups", "bn_test", "shift", "ghost_stats"] + PROTOCOL2
