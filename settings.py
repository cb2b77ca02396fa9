"""The study's recipe in one place: the settings that decide a run's numbers, with their defaults.

The notebook's `parameters` cell sets the same values (papermill needs them there; tests/test_store.py holds the two
equal), and the experiments and `store.load` start from these.
"""

RECIPE = {
    "EPOCHS": 20,               # per model
    "BATCH_SIZE": 128,          # training images per step
    "TEST_BATCH_SIZE": 2000,    # evaluation only: larger is faster, the numbers are the same
    "MAX_LR": 0.02,             # OneCycle peak learning rate of AdamW
    "WEIGHT_DECAY": 1e-4,       # AdamW's decoupled weight decay, every parameter
    "EMA_DECAY": 0.998,         # the model tested and kept: this moving average of the weights
    "DROPOUT": 0.0,             # after every block
    "AUGMENTATION": {"degrees": 10.0, "translate": 0.1, "scale": 0.1},  # rotation (deg), shift (x image size), zoom
    "TRAIN_LIMIT": None,        # first N training digits, None for all
    "TEST_LIMIT": None,         # first N held-out digits, None for all
    "GROUPS": 2,                # GroupNorm's groups where a run does not name them
}
# The recipe's settings a run's spec holds (GROUPS is GroupNorm's own, in the spec as `groups`)
RECIPE_KEYS = tuple(name for name in RECIPE if name != "GROUPS")
