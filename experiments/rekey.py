"""Re-key a run store from the first key (spec, device, threads, torch version and a fingerprint of the code's syntax
tree) to the present one (spec with its digits, and training.TRAINING_VERSION), without retraining anything:
`python -m experiments.rekey [--store DIR]`.

Each record is read and checked (its SHA-256, and that its key is the hash of the identity it holds), then written
under its new key with the same weights, predictions, history and seconds: its identity becomes the new one, its spec
gains `data` (MNIST's original files, which every record of the first key was checked against when it trained), and
the old identity's code fingerprint moves into its environment, with the device, threads and torch it already names.
The old file is removed only once the new one reads back whole. A record already under the present key is left as it
is, so running this again changes nothing.
"""

import argparse
import hashlib
import json
from pathlib import Path

import data
import store
import training

OLD_IDENTITY = {"spec", "device", "threads", "torch", "code"}


def rekey(record: dict) -> dict:
    """The record under the present key; a ValueError where its key is not the hash of its old identity."""
    old = record["identity"]
    digest = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    if set(old) != OLD_IDENTITY or record["key"] != f"{training.label(old['spec'])}-{digest}":
        raise ValueError(f"{record['key']}: its key is not the hash of the first key's identity it holds")
    spec = {**old["spec"], "data": data.MNIST_DIGEST}
    return {**record, "key": training.key(spec), "identity": training.identity(spec),
            "environment": {**record["environment"], "code_fingerprint": old["code"]}}


def main(path: Path = store.STORE) -> None:
    runs = store.Store(path)
    moved = kept = 0
    for file in sorted(path.glob("*.safetensors")):
        record, tensors = runs.read(file)
        if record["identity"].get("training") is not None:
            kept += 1
            continue
        new = rekey(record)
        written = runs.put(new, tensors)
        again, again_tensors = runs.read(written)
        if again != new or any(not again_tensors[k].equal(t) for k, t in tensors.items()):
            raise RuntimeError(f"{written} does not read back as written: {file} is kept")
        file.unlink()
        moved += 1
    print(f"{moved} records re-keyed, {kept} already under the present key, in {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m experiments.rekey", description=__doc__)
    parser.add_argument("--store", type=Path, default=store.STORE, help=f"the run store (default {store.STORE})")
    main(parser.parse_args().store)
