"""The numbers in the README's prose, computed from the committed results: `python -m experiments.report` prints them,
and tests/test_readme.py checks that each sentence stands in the README as printed here.

Each function takes the loaded results and returns {key: sentence}; `sentences()` gathers them all.
"""

import json
import re

import utils
from experiments import bn_test as bn_test_module
from experiments import runner
from experiments.__main__ import EXPERIMENTS

NAMES = {"BN": "BatchNorm + L1", "LN": "LayerNorm", "GN": "GroupNorm"}


def load() -> dict:
    """results/history.json under "history", each experiment's JSON under its name, the notebook's printed lines."""
    results = {"history": utils.load_history(runner.ROOT / "results" / "history.json")}
    for name in EXPERIMENTS:
        path = runner.ROOT / "results" / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    notebook = json.loads(runner.NOTEBOOK.read_text())
    results["notebook_output"] = "".join("".join(o.get("text", "")) for c in notebook["cells"] if c["cell_type"] == "code"
                                         for o in c["outputs"])
    return results


def study(r: dict) -> dict[str, str]:
    """The committed run: final accuracies, environment, time, and how much the models' errors overlap."""
    runs = r["history"]
    final = {name: run["history"][-1]["test_acc"] for name, run in runs.items()}
    env = runs["BN"]["environment"]
    seconds = int(re.search(r"notebook finished in (\d+) s", r["notebook_output"]).group(1))
    labels = r["seeds"]["summary"]["labels"] if "seeds" in r else None  # the test labels, stored with the seeds
    wrong = {name: {i for i, (p, y) in enumerate(zip(run["predictions"], labels, strict=True)) if p != y}
             for name, run in runs.items()} if labels else None
    out = {
        "intro_run": f"In the committed run {NAMES['BN']} ends at {final['BN']:.2f}% test accuracy, {NAMES['LN']} at "
                     f"{final['LN']:.2f}% and {NAMES['GN']} at {final['GN']:.2f}%, each with "
                     f"{runs['BN']['params']:,} parameters",
        "env": f"torch {env['torch']}, Python {env['python']}, {env['threads']} CPU threads, code at commit "
               f"{env['git_commit'][:7]}",
        "notebook_minutes": f"{seconds / 60:.1f}",
    }
    if wrong:
        union, common = set.union(*wrong.values()), set.intersection(*wrong.values())
        out["misclassified"] = (f"Of the {len(union)} test digits that at least one model gets wrong, {len(common)} are "
                                f"wrong for all three, and each model gets {', '.join(str(len(w)) for w in wrong.values())} "
                                f"wrong ({', '.join(wrong)})")
    return out


def seeds(r: dict) -> dict[str, str]:
    """Five seeds: means, spread against the standard error, the paired tests, and who leads after the first epoch."""
    s = r["seeds"]["summary"]
    v = s["variants"]
    n = len(next(iter(v.values()))["seeds"])
    pairs = s["pairs"]
    different = [p for p in pairs if p["paired_t"] is not None and p["paired_t"] < 0.05]
    if different:
        verdict = "; ".join(f"{p['a']} and {p['b']} differ by {p['difference']:+.2f} points (paired t-test over seeds, "
                            f"p = {p['paired_t']:.3f})" for p in different)
    else:
        tested = ", ".join(f"{runner.p_value(p['paired_t'])} ({p['a']} - {p['b']})" for p in pairs)
        verdict = f"no pair differs significantly (paired t-tests over seeds: p = {tested})"
    tests = [t for p in pairs for t in p["mcnemar"]]
    runs = {name: sorted((x for x in r["seeds"]["runs"] if x["variant"] == name), key=lambda x: x["seed"]) for name in v}
    first = {name: [x["history"][0]["test_acc"] for x in chosen] for name, chosen in runs.items()}
    leader = max(first, key=lambda name: sum(first[name]))
    leads = sum(all(first[leader][i] > first[o][i] for o in first if o != leader) for i in range(n))
    return {
        "intro_seeds": f"Over {n} seeds the means are {v['BN']['mean']:.2f}% (BN), {v['LN']['mean']:.2f}% (LN) and "
                       f"{v['GN']['mean']:.2f}% (GN): {verdict}",
        "seeds_spread": f"the standard deviations over seeds are {v['BN']['std']:.2f}, {v['LN']['std']:.2f} and "
                        f"{v['GN']['std']:.2f} points, against {v['BN']['standard_error']:.2f} points, the standard error "
                        f"of one accuracy measured on {len(s['labels']):,} digits",
        "mcnemar": f"{sum(t['p'] < 0.05 for t in tests)} of the {len(tests)} per-seed McNemar tests find a difference at "
                   f"p < 0.05",
        "first_epoch": f"after the first epoch {leader} is ahead of both others in {leads} of {n} seeds (mean "
                       + ", ".join(f"{sum(a) / n:.2f}% {name}" for name, a in first.items()) + ")",
    }


def norm_batch(r: dict) -> dict[str, str]:
    """BN against the images per normalisation group, LN and GN beside it."""
    rows = r["norm_batch"]["summary"]
    bn = {row["group"]: row for row in rows if row["norm"] == "B"}
    other = {row["norm"]: row for row in rows if row["norm"] != "B"}
    sizes = sorted(bn)
    epochs = r["norm_batch"]["settings"]["EPOCHS"]
    return {
        "norm_batch_running": f"after {epochs} epochs, BN tested with its running statistics reaches "
                              + ", ".join(f"{bn[k]['mean']:.2f}% at k = {k}" for k in sizes)
                              + f"; LN reaches {other['L']['mean']:.2f}% and GN {other['G']['mean']:.2f}%",
        "norm_batch_batch": "tested with the statistics of k test digits instead, it reaches "
                            + ", ".join(f"{bn[k]['batch_stat_mean']:.2f}% at k = {k}" for k in sizes),
        "norm_batch_p": "paired t-tests over seeds against k = 128 give p = "
                        + ", ".join(f"{runner.p_value(bn[k]['p_vs_whole_batch'])} (k = {k})" for k in sizes[:-1]),
    }


def gn_groups(r: dict) -> dict[str, str]:
    rows = r["gn_groups"]["summary"]
    return {"gn_groups": ", ".join(f"{row['mean']:.2f}% with {row['groups']} group{'s' if row['groups'] != 1 else ''}"
                                   for row in rows)
                         + " (means over seeds; paired t-tests against 2 groups: p = "
                         + ", ".join(runner.p_value(row["p_vs_2_groups"]) for row in rows if row["groups"] != 2) + ")"}


def bn_test(r: dict) -> dict[str, str]:
    rows = r["bn_test"]["summary"]
    bn = [row for row in rows if row["norm"] == "B"]
    running = next(row for row in bn if row["evaluation"].endswith("running statistics"))
    recomputed = next(row for row in bn if "recomputed" in row["evaluation"])
    batch = {row["test_batch"]: row["test_acc"] for row in bn if row["evaluation"].startswith("train mode")}
    last = bn_test_module.INVARIANCE[-1]
    changed = {row["norm"]: row["changed"] for row in rows if row["test_batch"] == last and row["changed"] is not None}
    return {
        "bn_test": f"with its running statistics BN reaches {running['test_acc']:.2f}%; with the statistics of each test "
                   "batch, " + ", ".join(f"{acc:.2f}% at {k:,}" for k, acc in batch.items())
                   + f"; with statistics recomputed over the clean training digits, {recomputed['test_acc']:.2f}%",
        "bn_test_invariance": "in eval mode, " + ", ".join(f"{c} of {NAMES[n + 'N']}'s" for n, c in changed.items())
                              + f" predictions change between test batches of {bn_test_module.INVARIANCE[0]} and "
                              f"{last:,} digits",
    }


def l1(r: dict) -> dict[str, str]:
    rows = r["l1"]["summary"]
    return {"l1": ", ".join(f"{row['test_acc']:.2f}% with lambda {row['l1_lambda']:g}" for row in rows)}


def durations_table(r: dict) -> str:
    """How long each committed experiment took, from its JSON, on this project's 2-core CPU."""
    rows = []
    for name in EXPERIMENTS:
        if name in r:
            e = r[name]
            rows.append([f"`python -m experiments {name}`", len(e["runs"]), e["settings"]["EPOCHS"],
                         e["environment"]["jobs"], f"{e['seconds'] / 60:.1f}"])
    return utils.markdown_table(["experiment", "runs", "epochs per run", "runs at once (one thread each)", "minutes"], rows)


def sentences() -> dict[str, str]:
    """Every generated sentence of the README, by key."""
    r = load()
    out = study(r)
    for name in EXPERIMENTS:
        if name in r:
            out.update(globals()[name](r))
    return out


if __name__ == "__main__":
    for key, sentence in sentences().items():
        print(f"{key}: {sentence}\n")
