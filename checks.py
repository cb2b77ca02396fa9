"""The checks of what a person gives, each a ValueError that names the setting or argument, its value and what is
allowed: the norm's letter (`canonical_norm`), numbers, seeds, flags, digit limits, augmentation, GroupNorm's groups,
dropout and devices; and each norm's name in words (`NORM_NAMES`, `norm_name`), the one map tables, figures and
documents name the norms by.

The bottom of the project: it imports no project module, so that settings.py checks every setting with these alone,
and model.py, data.py, utils.py, training.py and store.py check their arguments with the same ones.
"""

import math

import torch

NORMS = {"b": "B", "batch": "B", "l": "L", "layer": "L", "g": "G", "group": "G", "i": "I", "instance": "I",
         "n": "N", "none": "N"}
NORM_NAMES = {"B": "BatchNorm", "L": "LayerNorm", "G": "GroupNorm", "I": "InstanceNorm", "N": "no normalisation"}  # each norm in words
# Output channels of model.Net's five convolutions: two full 3x3 ones at 26x26 and 24x24, a max-pool, then three
# depthwise-separable ones at 10x10, 8x8 and 6x6, which buy width (48 channels) for few parameters. Here because
# GroupNorm's groups must divide each (`check_groups`).
WIDTHS = (8, 16, 32, 48, 48)
# augment's settings: (largest value, whether that value itself is allowed, what it means).
AUGMENT_LIMITS = {
    "degrees": (180, True, "a rotation of up to +-degrees; 180 reaches every angle"),
    "translate": (0.5, False, "a shift of up to translate x the image size; at 0.5 a digit can leave the image"),
    "scale": (1, False, "a zoom of 1 +- scale; at 1 or more a digit is mirrored or shrunk to nothing"),
}


def canonical_norm(norm: str) -> str:
    """Map "b", "batch", "B", ... to one of "B", "L", "G", "I", "N"; raise ValueError on anything else."""
    key = norm.lower() if isinstance(norm, str) else None
    if key not in NORMS:
        raise ValueError(f"norm must be one of {sorted(set(NORMS.values()))} or {sorted(k for k in NORMS if len(k) > 1)}, got {norm!r}")
    return NORMS[key]


def norm_name(norm: str, groups: int | None = None) -> str:
    """A norm in words (NORM_NAMES), GroupNorm's with its groups where they are given: "GroupNorm (2 groups)"."""
    return NORM_NAMES[norm] + (f" ({groups} groups)" if norm == "G" and groups else "")


def whole_number(name: str, value, allowed: str) -> int:
    """`value` if it is a whole number >= 1 (bool is not one), else a ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def finite_number(name: str, value, zero_ok: bool = True) -> float:
    """`value` if it is a finite number >= 0 (> 0 without zero_ok; bool is not one), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (value == 0 and not zero_ok):
        raise ValueError(f"{name} must be a finite number {'>= 0' if zero_ok else '> 0'}, got {value!r}")
    return value


def check_flag(name: str, value) -> None:
    """A ValueError naming the setting unless `value` is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_seed(name: str, seed) -> None:
    """A ValueError naming the setting unless `seed` is a whole number from 0 to 2**32 - 1 (what NumPy accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"{name} must be a whole number from 0 to 2**32 - 1, got {seed!r}")


def check_ema_decay(name: str, decay, none_ok: bool = True) -> None:
    """A ValueError naming the setting unless `decay` is a number in (0, 1), or None (no average) with none_ok."""
    if (decay is not None or not none_ok) and (isinstance(decay, bool) or not isinstance(decay, (int, float))
                                                 or not 0 < decay < 1):
        raise ValueError(f"{name} must be {'None or ' if none_ok else ''}a number in (0, 1), got {decay!r}")


def check_limit(name: str, limit: int | None) -> None:
    """A ValueError naming the setting unless `limit` is None (every digit) or a whole number >= 1."""
    if limit is not None:
        whole_number(name, limit, "None (every digit) or a whole number of digits >= 1")


def check_augmentation(name: str, augmentation) -> None:
    """A ValueError naming the setting unless `augmentation` is None or {} (no augmentation) or a dict of exactly
    degrees, translate and scale, each a finite number from 0 to its limit in AUGMENT_LIMITS."""
    if augmentation is None or isinstance(augmentation, dict) and not augmentation:
        return
    if not isinstance(augmentation, dict) or augmentation.keys() != AUGMENT_LIMITS.keys():
        raise ValueError(f"{name} must be None or {{}} (no augmentation), or a dict of exactly the keys "
                         f"{', '.join(AUGMENT_LIMITS)}, got {augmentation!r}")
    for key, value in augmentation.items():
        high, included, meaning = AUGMENT_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high \
                or value == high and not included:
            raise ValueError(f"{name}: {key} must be a number from 0 to {high} ({'included' if included else 'excluded'}:"
                             f" {meaning}), got {value!r}")


def check_dropout(dropout) -> None:
    """A ValueError unless `dropout` is a probability in [0, 1) (bool is not one)."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")


def check_groups(groups, channels: tuple[int, ...] = WIDTHS) -> None:
    """A ValueError unless GroupNorm's `groups` is a whole number that divides each of `channels` (the network's
    widths), naming the first it does not divide."""
    whole_number("groups", groups, "a whole number >= 1 that divides every layer's channels")
    for width in channels:
        if width % groups:
            raise ValueError(f"groups={groups} does not divide a layer's {width} channels; use a divisor of {width}")


def check_net(norm: str, groups=None, dropout=0.0, norm_batch=None) -> str:
    """model.Net's settings checked together, without building one: the norm, made canonical and returned; groups,
    GroupNorm's only, dividing every layer's channels; dropout; norm_batch, BatchNorm's only, a whole number."""
    letter = canonical_norm(norm)
    if groups is not None and letter != "G":
        raise ValueError(f"groups is GroupNorm's setting; norm {norm!r} has no groups to set (use norm='G', or "
                         "groups=None)")
    check_dropout(dropout)
    if norm_batch is not None and letter != "B":
        raise ValueError(f"norm_batch is BatchNorm's setting; norm {norm!r} normalises each image alone")
    if groups is not None:
        check_groups(groups)
    if norm_batch is not None:
        whole_number("norm_batch", norm_batch, "a whole number of images >= 1")
    return letter


def available_devices() -> list[str]:
    """The device names this machine can run on: "cpu", then "cuda" and "cuda:0", ... and "mps" where present."""
    gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return ["cpu"] + (["cuda"] + gpus if gpus else []) + (["mps"] if torch.backends.mps.is_available() else [])


def check_device(name: str, device, none_ok: bool = False) -> None:
    """A ValueError naming the argument unless `device` is a torch.device or a device name that this machine has, or
    None (the first of cuda, mps and cpu it has) with none_ok."""
    if device is None and none_ok:
        return
    available = available_devices()
    if not isinstance(device, (str, torch.device)) or str(device) not in available:
        if none_ok:
            raise ValueError(f"{name} must be None (cuda, then mps, then cpu) or one of this machine's {available}, "
                             f"got {device!r}")
        raise ValueError(f"{name} must be a torch.device or the name of one this machine has, {available}; "
                         f"got {device!r}")
