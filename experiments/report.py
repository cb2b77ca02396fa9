"""The numbers in the README's prose, computed from the committed results: `python -m experiments.report` prints them,
and tests/test_readme.py checks that each sentence stands in the README as printed here.

Each function takes the loaded results and returns {key: sentence}; `sentences()` gathers them all. Only numbers that
no table shows are here: the experiments' own numbers are in their tables, printed by each experiment's `tables()`.
"""

import json
import re

import utils
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
    """Five seeds: the means and the paired tests, and who leads after the first epoch (the tables hold the rest)."""
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
    runs = {name: sorted((x for x in r["seeds"]["runs"] if x["variant"] == name), key=lambda x: x["seed"]) for name in v}
    first = {name: [x["history"][0]["test_acc"] for x in chosen] for name, chosen in runs.items()}
    leader = max(first, key=lambda name: sum(first[name]))
    leads = sum(all(first[leader][i] > first[o][i] for o in first if o != leader) for i in range(n))
    return {
        "intro_seeds": f"Over {n} seeds the means are {v['BN']['mean']:.2f}% (BN), {v['LN']['mean']:.2f}% (LN) and "
                       f"{v['GN']['mean']:.2f}% (GN): {verdict}",
        "first_epoch": f"after the first epoch {leader} is ahead of both others in {leads} of {n} seeds (mean "
                       + ", ".join(f"{sum(a) / n:.2f}% {name}" for name, a in first.items()) + ")",
    }


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
    return {**study(r), **(seeds(r) if "seeds" in r else {})}


if __name__ == "__main__":
    for key, sentence in sentences().items():
        print(f"{key}: {sentence}\n")
