"""The experiments beyond the notebook's study, behind one entry point: `python -m experiments NAME`.

- seeds: the notebook's three variants over five seeds, with paired tests of significance and time to target;
- l1: the BN model's L1 lambda;
- norm_batch: BatchNorm against the number of images it normalises over, LN and GN as controls;
- gn_groups: GroupNorm from one group (LayerNorm) to one per channel (InstanceNorm);
- bn_test: the study's BN model evaluated with running, batch and recomputed statistics.

Each writes results/NAME.json and Images/NAME.png; the shared machinery is in experiments/runner.py.
"""
