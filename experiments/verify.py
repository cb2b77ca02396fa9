"""Whether the stored evidence still stands here: `python -m experiments verify [--sample N]` retrains N stored runs
(3 by default, spread over the norms) on this machine and compares each with its record: bit-identical (the same
weights, predictions and per-epoch numbers), or how far it moved (final accuracy, the held-out digits whose
prediction differs, the largest weight difference). Run it after installing another torch, or on another machine:
the store's records are read wherever they were made, and this says what that is worth. Writes results/verify.json.
"""


import records
import store
from experiments import runner

NAME = "verify"
SHOWS = "retrain a few stored runs here and compare them with their records, bit for bit"
ORDER = "BLGIN"  # the norms, in the order the sample takes them


def sample(records: list[dict], n: int) -> list[dict]:
    """n records, spread over the norms: round by round, one of each norm in ORDER; within a norm, plain runs (no ghost
    batch, no L1) on the test split first, then by seed and key. Deterministic: the same store gives the same sample."""
    plain = lambda spec: (spec["norm_batch"] is not None, bool(spec["l1_lambda"]), spec["split"] != "test", spec["seed"])
    by_norm = {norm: sorted((r for r in records if r["identity"]["spec"]["norm"] == norm),
                            key=lambda r: (*plain(r["identity"]["spec"]), r["key"])) for norm in ORDER}
    rounds = max(map(len, by_norm.values()), default=0)
    spread = [by_norm[norm][i] for i in range(rounds) for norm in ORDER if i < len(by_norm[norm])]
    return spread[:n]


def compare(stored: tuple[dict, dict], here: tuple[dict, dict]) -> dict:
    """How a retrained run (record, tensors) differs from its stored one."""
    (old, old_tensors), (new, new_tensors) = stored, here
    epochs = lambda r: [{k: v for k, v in e.items() if k != "seconds"} for e in r["history"]]
    largest = max(float((old_tensors[k].double() - new_tensors[k].double()).abs().max()) for k in old_tensors)
    differ = sum(a != b for a, b in zip(old["predictions"], new["predictions"], strict=True))
    return dict(key=old["key"], made_in={f: old["environment"].get(f, "unknown") for f in store.COMPARED},
                identical=differ == 0 and largest == 0 and epochs(old) == epochs(new),
                stored_acc=old["history"][-1]["test_acc"], acc=new["history"][-1]["test_acc"],
                predictions_differ=differ, largest_weight_difference=largest, seconds=new["seconds"])


def run(n: int, store_dir, jobs: int = 2, scheduler: str | None = None, keep=None) -> dict:
    """Retrain the sample of n stored runs and compare each with its record; with `keep`, a run store other than
    store_dir, the retrained runs are also put there (to compare them with runs another commit or machine made)."""
    here = {**records.environment("cpu"), "threads": 1}  # at the start: the commit that retrains
    runs_store = store.Store(store_dir)
    kept = store.Store(keep) if keep is not None else None
    if kept is not None and kept.path.resolve() == runs_store.path.resolve():
        raise ValueError(f"--keep {keep} is the store being verified: its records would be replaced by the retrained "
                         "runs; give another folder")
    stored = [runs_store.read(path) for path in sorted(runs_store.path.glob("*.safetensors"))]
    if not 1 <= n <= len(stored):
        raise ValueError(f"--sample must be a whole number from 1 to the {len(stored)} runs stored in "
                         f"{runs_store.path}, got {n}")
    chosen = sample([record for record, _ in stored], n)
    by_key = {record["key"]: (record, tensors) for record, tensors in stored}
    if kept is not None:
        kept.check_writable()
    print(f"retraining {len(chosen)} of {len(stored)} stored runs here: {', '.join(r['key'] for r in chosen)}", flush=True)
    rows = []
    with runner.executor(min(jobs, len(chosen)), scheduler) as pool:
        futures = [pool.submit(store.train_for_store, r["identity"]["spec"]) for r in chosen]
        for record, future in zip(chosen, futures):
            retrained = future.result()
            if kept is not None:
                kept.put(*retrained)
            rows.append(compare(by_key[record["key"]], retrained))
            row = rows[-1]
            print(f"{row['key']}: " + ("bit-identical" if row["identical"] else
                  f"accuracy {row['stored_acc']:.2f}% stored, {row['acc']:.2f}% here; {row['predictions_differ']} "
                  f"predictions differ; largest weight difference {row['largest_weight_difference']:.3g}"), flush=True)
    return {"experiment": NAME, "environment": here, "identical": sum(r["identical"] for r in rows), "runs": rows}


def table(results: dict) -> str:
    """Markdown table of a verify run: each run, where it was made, and how the retrained one compares."""
    rows = [[f"`{r['key']}`", r["made_in"]["torch"], r["made_in"]["cpu"], "yes" if r["identical"] else "no", f"{r['stored_acc']:.2f}",
             f"{r['acc']:.2f}", r["predictions_differ"], f"{r['largest_weight_difference']:.3g}"] for r in results["runs"]]
    return records.markdown_table(["run", "stored with torch", "on CPU", "bit-identical here", "stored acc (%)", "here (%)",
                                 "predictions that differ", "largest weight difference"], rows)


def main(n: int, store_dir, jobs: int, scheduler: str | None, out_dir, keep=None) -> dict:
    """`run`, then out_dir/results/verify.json (from a clean commit where out_dir is the repository)."""
    commit = records.git_commit()
    if out_dir.resolve() == runner.ROOT and (commit is None or commit.endswith("+changes")):
        raise ValueError(f"the code has uncommitted changes (git commit {commit}): results/ takes only what a clean "
                         "commit made. Commit first, or pass --out-dir outside results/")
    results = run(n, store_dir, jobs, scheduler, keep)
    records.write_json(out_dir / "results" / f"{NAME}.json", results)
    print(table(results))
    print(f"{results['identical']} of {len(results['runs'])} retrained runs are bit-identical to their records "
          f"(torch {results['environment']['torch']} here)")
    return results
