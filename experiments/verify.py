"""Whether this machine replicates the study: `python -m experiments verify [--sample N] [--publish]` retrains N
stored runs (6 by default, spread over the norms) here and compares each with its record.

- Bit for bit: the same weights, predictions and per-epoch numbers, or how far it moved (final accuracy, the
  held-out digits whose prediction differs, the largest weight change relative to that tensor's largest weight).
- Against the seeds: each retrained accuracy beside the stored runs of its cell (the same run at every other seed):
  their mean, spread and range.
- Over the sample: the paired difference, retrained minus stored, with its 90% interval, and a verdict against the
  study's +-0.10 margin: "replicates within +-0.10" (the interval inside the margin: TOST at 0.05), "differs" (the
  paired t-test below 0.05) or "inconclusive". On another CPU a run moves by up to about 0.08 points (sd of the
  differences about 0.07), so 6 runs let the interval close inside the margin (the published run says how many
  CPU-minutes they took).

Run it after installing another torch, or on another machine. It writes runs/verify/results/verify.json; with
--publish, results/verify.json (from a clean commit), which the README quotes.
"""

import scipy.stats
import torch

import records
import store
from experiments import runner, stats

NAME = "verify"
SHOWS = "retrain a few stored runs here: bit for bit, against the seeds' spread, and a replication verdict"
ORDER = "BLGI"  # the norms of Protocol 1's stored runs, in the order the sample takes them
SAMPLE = 6
OUT_DIR = runner.RUNS / "verify"  # without --publish


def sample(records: list[dict], n: int, here: dict | None = None) -> list[dict]:
    """n records, spread over the norms: round by round, one of each norm in ORDER; within a norm, records made in
    another environment than this machine's first (those are what verify is for), then plain runs (no ghost batch, no
    L1, all the training digits) on the test split, then by seed and key. Deterministic: the same store gives the same
    sample on the same machine (`here`: its environment, as store.elsewhere takes it)."""
    plain = lambda spec: (spec["norm_batch"] is not None, bool(spec["l1_lambda"]), spec["train_limit"] is not None,
                          spec["split"] != "test", spec["seed"])
    by_norm = {norm: sorted((r for r in records if r["identity"]["spec"]["norm"] == norm),
                            key=lambda r: (not store.elsewhere(r, here), *plain(r["identity"]["spec"]), r["key"]))
               for norm in ORDER}
    rounds = max(map(len, by_norm.values()), default=0)
    spread = [by_norm[norm][i] for i in range(rounds) for norm in ORDER if i < len(by_norm[norm])]
    return spread[:n]


def relative_change(old: torch.Tensor, new: torch.Tensor) -> float:
    """The largest change of a tensor's entries, relative to its largest stored entry (0 where both are zero)."""
    scale = float(old.double().abs().max()) if old.numel() else 0.0
    change = float((old.double() - new.double()).abs().max()) if old.numel() else 0.0
    return change / scale if scale else change


def cell(record: dict, records: list[dict]) -> dict:
    """The final accuracies of the stored runs of `record`'s cell (its spec at every seed): n, mean, sd, min, max."""
    spec = {k: v for k, v in record["identity"]["spec"].items() if k != "seed"}
    acc = [r["history"][-1]["test_acc"] for r in records
           if {k: v for k, v in r["identity"]["spec"].items() if k != "seed"} == spec
           and r["identity"]["training"] == record["identity"]["training"]]
    mean, sd = stats.mean_std(acc)
    return dict(n=len(acc), mean=mean, sd=sd, low=min(acc), high=max(acc))


def compare(stored: tuple[dict, dict], here: tuple[dict, dict]) -> dict:
    """How a retrained run (record, tensors) differs from its stored one."""
    (old, old_tensors), (new, new_tensors) = stored, here
    epochs = lambda r: [{k: v for k, v in e.items() if k != "seconds"} for e in r["history"]]
    largest = max(relative_change(old_tensors[k], new_tensors[k]) for k in old_tensors)
    differ = sum(a != b for a, b in zip(old["predictions"], new["predictions"], strict=True))
    return dict(key=old["key"], made_in={f: old["environment"].get(f, "unknown") for f in store.COMPARED},
                identical=differ == 0 and largest == 0 and epochs(old) == epochs(new),
                stored_acc=old["history"][-1]["test_acc"], acc=new["history"][-1]["test_acc"],
                predictions_differ=differ, largest_weight_change=largest, seconds=new["seconds"])


def replication(rows: list[dict], margin: float = stats.MARGIN) -> dict:
    """Retrained minus stored accuracy over the sample: mean, 90% interval, the paired t and TOST p, and the verdict."""
    found = stats.compare([r["acc"] for r in rows], [r["stored_acc"] for r in rows], margin)
    d = [r["acc"] - r["stored_acc"] for r in rows]
    half = scipy.stats.t.ppf(0.95, len(d) - 1) * found["sd"] / len(d) ** 0.5 if len(d) > 1 else None
    verdict = ("inconclusive" if len(d) < 2 else f"replicates within +-{margin:.2f}" if found["p_equivalence"] < stats.ALPHA
               else "differs" if found["p"] < stats.ALPHA else "inconclusive")
    return dict(n=len(d), difference=found["difference"], sd=found["sd"],
                interval_90=None if half is None else [found["difference"] - half, found["difference"] + half],
                p=found["p"], p_equivalence=found["p_equivalence"], margin=margin, verdict=verdict)


def run(n: int, store_dir, jobs: int = 2, scheduler: str | None = None, keep=None) -> dict:
    """Retrain the sample of n stored runs and compare each with its record; with `keep`, a run store other than
    store_dir, the retrained runs are also put there (to compare them with runs another commit or machine made)."""
    here = {**records.environment("cpu"), "threads": 1,  # at the start: the commit that retrains
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    runs_store = store.Store(store_dir)
    kept = store.Store(keep) if keep is not None else None
    if kept is not None and kept.path.resolve() == runs_store.path.resolve():
        raise ValueError(f"--keep {keep} is the store being verified: its records would be replaced by the retrained "
                         "runs; give another folder")
    stored = [runs_store.read(path) for path in sorted(runs_store.path.glob("*.safetensors"))]
    if not 1 <= n <= len(stored):
        raise ValueError(f"--sample must be a whole number from 1 to the {len(stored)} runs stored in "
                         f"{runs_store.path}, got {n}")
    chosen = sample([record for record, _ in stored], n, here)
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
            rows.append(dict(compare(by_key[record["key"]], retrained),
                             cell=cell(record, [r for r, _ in stored])))
            row = rows[-1]
            print(f"{row['key']}: " + ("bit-identical" if row["identical"] else
                  f"accuracy {row['stored_acc']:.2f}% stored, {row['acc']:.2f}% here; {row['predictions_differ']} "
                  f"predictions differ; largest weight change {row['largest_weight_change']:.2%} of its tensor's "
                  "largest weight") + f"; its cell's {row['cell']['n']} stored seeds: {row['cell']['mean']:.2f}% "
                  f"(sd {row['cell']['sd']:.2f}, {row['cell']['low']:.2f}-{row['cell']['high']:.2f})", flush=True)
    return {"experiment": NAME, "environment": here, "identical": sum(r["identical"] for r in rows), "runs": rows,
            "replication": replication(rows)}


def table(results: dict) -> str:
    """Markdown table of a verify run: each run, where it was made, how the retrained one compares, and its cell."""
    rows = [[f"`{r['key']}`", r["made_in"]["torch"], r["made_in"]["cpu"], "yes" if r["identical"] else "no",
             f"{r['stored_acc']:.2f}", f"{r['acc']:.2f}",
             f"{r['cell']['mean']:.2f} (sd {r['cell']['sd']:.2f}, {r['cell']['low']:.2f}-{r['cell']['high']:.2f}, "
             f"{r['cell']['n']} seeds)", r["predictions_differ"], f"{r['largest_weight_change']:.1%}"]
            for r in results["runs"]]
    return records.markdown_table(["run", "stored with torch", "on CPU", "bit-identical here", "stored acc (%)",
                                   "here (%)", "its cell's stored seeds: mean (sd, range)", "predictions that differ",
                                   "largest weight change (of its tensor's largest weight)"], rows)


def verdict(results: dict) -> str:
    """The replication verdict in a sentence."""
    r, env = results["replication"], results["environment"]
    interval = "" if r["interval_90"] is None else f" [90% interval {r['interval_90'][0]:+.3f}, {r['interval_90'][1]:+.3f}]"
    return (f"Retrained here ({env['cpu']}, {env['cpu_capability']} kernels, torch {env['torch']}, one thread), "
            f"{results['identical']} of {r['n']} stored runs are bit-identical to their records; retrained minus "
            f"stored test accuracy is {r['difference']:+.3f} points{interval}: {r['verdict']}. The retraining took "
            f"{sum(run['seconds'] for run in results['runs']) / 60:.0f} CPU-minutes.")


def blocks(results: dict) -> dict[str, str]:
    """The README's verdict and STUDY.md's table of what `python -m experiments verify --publish` found, from
    `results` (every committed result, by name)."""
    if "verify" not in results:
        return {"verify": "Not run yet: `python -m experiments verify --publish` writes results/verify.json.",
                "verify_table": ""}
    return {"verify": verdict(results["verify"]), "verify_table": table(results["verify"])}


def main(n: int, store_dir, jobs: int, scheduler: str | None, out_dir, keep=None) -> dict:
    """`run`, then out_dir/results/verify.json (from a clean commit where out_dir is the repository)."""
    commit = records.git_commit()
    if out_dir.resolve() == runner.ROOT and (commit is None or commit.endswith("+changes")):
        raise ValueError(f"the code has uncommitted changes (git commit {commit}): results/ takes only what a clean "
                         "commit made. Commit first, or leave out --publish")
    results = run(n, store_dir, jobs, scheduler, keep)
    records.write_json(out_dir / "results" / f"{NAME}.json", results)
    print(table(results))
    print(verdict(results))
    print(f"written to {out_dir / 'results' / f'{NAME}.json'}")
    return results
