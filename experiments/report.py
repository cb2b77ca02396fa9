"""Every number in README.md and STUDY.md, generated from the committed results: `python -m experiments.report`
rewrites the generated blocks of both files, and tests/test_readme.py checks that they are as generated.

A generated block in those files is the text between `<!-- generated: NAME -->` and `<!-- /generated -->`; `blocks()`
makes each NAME's text from the committed JSON (results/) and the code. Everything outside
the blocks is written by hand and carries no number that a result could change. Publishing a full notebook run
calls `write()`, so that the README follows the results it publishes.
"""

import importlib
import json
import math
import re
import statistics
import sys
from pathlib import Path

import torch

import records
import store
from experiments import EXPERIMENTS, main, runner, verify
from model import Net, count_macs, count_parameters

ROOT = records.ROOT
DOCUMENTS = ("README.md", "STUDY.md")
BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- /generated -->)", re.S)
NAMES = {"BN": "BatchNorm + L1", "LN": "LayerNorm", "GN": "GroupNorm"}


def load(root: Path = ROOT) -> dict:
    """results/history.json under "history", each experiment's and benchmark's JSON under its name."""
    results = {"history": records.load_history(root / "results" / "history.json")}
    for name in EXPERIMENTS + ["speed", "step", "verify"]:
        path = root / "results" / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    return results


def not_yet(name: str) -> str:
    return (f"Not run yet at the protocol's length: `python -m experiments {name}` makes results/{name}.json from the "
            "run store, training the runs it does not hold (see the compute table).")


def experiment_tables(r: dict, name: str) -> str:
    if name not in r:
        return not_yet(name)
    return "\n\n".join(importlib.import_module(f"experiments.{name}").tables(r[name]))


def notebook_run(r: dict) -> dict[str, str]:
    """The committed notebook run, from results/history.json alone (what a full run publishes together)."""
    runs = r["history"]
    env = runs["BN"]["environment"]
    final = {name: run["history"][-1]["test_acc"] for name, run in runs.items()}
    minutes = sum(e["seconds"] for run in runs.values() for e in run["history"]) / 60
    return {
        "notebook_run": f"In the committed notebook run (seed 1) {NAMES['BN']} ends at {final['BN']:.2f}% test accuracy, "
                        f"{NAMES['LN']} at {final['LN']:.2f}% and {NAMES['GN']} at {final['GN']:.2f}%, each with "
                        f"{runs['BN']['params']:,} parameters; its {len(runs)} x {len(runs['BN']['history'])} epochs took "
                        f"{minutes:.1f} minutes on {env['device']} with {env['threads']} threads (torch {env['torch']}, "
                        f"Python {env['python']}, code at commit {env['git_commit'][:7]}).",
        "study_minutes": f"{minutes:.0f}",
        "results_table": records.results_table(runs),
    }


def model_blocks() -> dict[str, str]:
    rows = []
    what = {"B": "each channel over the batch and H, W (running statistics at test time)",
            "L": "each image over C, H, W (`GroupNorm(1, C)`)", "G": "each image over groups of C/2 channels and H, W",
            "I": "each image and channel over H, W (`GroupNorm(C, C)`)"}
    for norm in "BLGI":
        net = Net(norm)
        rows.append([norm, f"{count_parameters(net):,}", f"{count_macs(net):,}",
                     f"{sum(p.numel() for p in net.norms.parameters()):,}", what[norm]])
    net, shapes = Net("L"), []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape[1:]))) for m in net.norms]
    net(torch.zeros(1, 1, 28, 28))  # the [C, H, W] that each norm sees
    for h in hooks:
        h.remove()
    full = 2 * sum(math.prod(s) for s in shapes)
    return {
        "model_table": records.markdown_table(["norm", "parameters", "multiply-accumulates per image", "norm parameters",
                                             "what is normalised"], rows),
        "full_layernorm": f"The common `nn.LayerNorm([C, H, W])` would learn a scale and shift per activation: "
                          f"{full:,} parameters for this network's five norms ({full / count_parameters(net):.1f} times "
                          "the whole network)",
        "worked_example": records.worked_example_table(),
    }


def said(c: dict, a: str, b: str) -> str:
    """One comparison in words: "A - B +0.030 points [-0.050, +0.110], inconclusive"."""
    return f"{a} - {b} {runner.interval(c)} points, {c['verdict']}"


def main_blocks(r: dict) -> dict[str, str]:
    """The README's headline in plain words: the four means, and what the paired tests say of every pair, with what
    "equivalent" means where it first appears; the intervals and p-values are in STUDY.md's main tables."""
    if "main" not in r:
        return {"headline": notebook_run(r)["notebook_run"] + " The ten-seed comparison is not committed yet."}
    s = r["main"]["summary"]
    means = ", ".join(f"{name} {x['mean']:.2f}%" for name, x in s["variants"].items())
    by_verdict = {kind: [f"{p['a']} and {p['b']}" for p in s["pairs"] if p["verdict"].startswith(kind)]
                  for kind in ("equivalent", "differs", "inconclusive")}
    margin = f"{s['margin']:.2f}"
    if len(by_verdict["equivalent"]) == len(s["pairs"]):
        said_of_pairs = (f"Every pair is equivalent within +-{margin} points: the 90% interval of their difference, "
                         f"paired by seed, lies inside +-{margin}, so whatever difference there is, is too small to "
                         "matter here.")
    else:
        parts = [f"equivalent within +-{margin} points (the 90% interval of their difference lies inside "
                 f"+-{margin}): {', '.join(by_verdict['equivalent'])}" if by_verdict["equivalent"] else "",
                 f"differ: {', '.join(by_verdict['differs'])}" if by_verdict["differs"] else "",
                 f"inconclusive (neither shown): {', '.join(by_verdict['inconclusive'])}"
                 if by_verdict["inconclusive"] else ""]
        said_of_pairs = "Of the pairs, " + "; ".join(p for p in parts if p) + "."
    return {"headline": f"Over {len(s['seeds'])} seeds of {r['main']['settings']['EPOCHS']} epochs, at one shared "
                        f"learning rate, the mean test accuracies are {means}, each network with "
                        f"{r['history']['BN']['params']:,} parameters. {said_of_pairs} {own_rate_said(r)} The intervals "
                        "and tests are in STUDY.md."}


def own_rate_said(r: dict) -> str:
    """The main comparison at each norm's own rate, in one sentence: how many pairs are equivalent, differ or neither."""
    if "own_rate" not in r:
        return "Each norm at its own rate is still to be run (PROTOCOL.md B)."
    pairs = r["own_rate"]["summary"]["pairs"]
    count = lambda kind: sum(p["verdict"].startswith(kind) for p in pairs)
    return (f"With each norm at its own learning rate, chosen on validation, {count('equivalent')} of the "
            f"{len(pairs)} pairs are equivalent, {count('differs')} differ and {count('inconclusive')} are "
            "inconclusive.")


GOAL = (99.55, 99.50)  # PROTOCOL.md B: the accuracy goal, a variant's mean over seeds and its lowest seed (%)


def accuracies(result: dict, variant: str) -> dict[int, float]:
    """A main-style experiment's test accuracy of one variant, by seed."""
    return {run["seed"]: run["test_acc"] for run in result["runs"] if run["variant"] == variant}


def goal_met(acc: dict[int, float]) -> str:
    met = statistics.mean(acc.values()) >= GOAL[0] and min(acc.values()) >= GOAL[1]
    return "met" if met else "not met"


def replication_block(r: dict) -> dict[str, str]:
    """The main comparison's seeds 1-5 (committed before the margin was set) and 6-10 (the replication) apart, and
    whether each variant meets the accuracy goal over all ten."""
    if "main" not in r:
        return {"main_replication": "The main comparison is not committed yet."}
    rows = []
    for v in r["main"]["summary"]["variants"]:
        acc = accuracies(r["main"], v)
        mean = lambda seeds: statistics.mean(acc[s] for s in seeds)
        rows.append([v, f"{mean(range(1, 6)):.2f}", f"{mean(range(6, 11)):.2f}", f"{mean(acc):.2f}",
                     f"{min(acc.values()):.2f}", goal_met(acc)])
    return {"main_replication": records.markdown_table(
        ["variant", "mean, seeds 1-5 (%)", "mean, seeds 6-10 (%)", "mean, seeds 1-10 (%)", "lowest seed (%)",
         f"goal: mean >= {GOAL[0]:.2f}, every seed >= {GOAL[1]:.2f}"], rows)}


def rates_block(r: dict) -> dict[str, str]:
    """The README's first table: each variant at the shared rate and at its own, its mean and lowest seed, and the
    accuracy goal met or not at each (PROTOCOL.md B)."""
    if "main" not in r or "own_rate" not in r:
        return {"rates_table": not_yet("own_rate")}
    from experiments.own_rate import RATES
    shared, rows = r["main"]["settings"]["MAX_LR"], []
    for v in r["main"]["summary"]["variants"]:
        row = [f"{v} ({main.NAMES[v]})"]
        for result in (r["main"], r["own_rate"]):
            acc = accuracies(result, v)
            row += [f"{statistics.mean(acc.values()):.2f}", f"{min(acc.values()):.2f}", goal_met(acc)]
        rows.append(row[:4] + [f"{RATES[v]:g}"] + row[4:])
    return {"rates_table": records.markdown_table(
        ["variant", f"shared rate {shared:g}: mean (%)", "lowest seed (%)", "goal", "own rate", "mean (%)",
         "lowest seed (%)", "goal"], rows)}


def pick(r: dict) -> str:
    """The README's advice, one bullet per question, each with the experiment and the test behind it; a question
    whose experiment is not committed says so and advises nothing."""
    out = []
    if "main" in r:
        s = r["main"]["summary"]
        pairs = {(p["a"], p["b"]): p for p in s["pairs"]}
        norms = [pairs[k] for k in (("BN", "LN"), ("BN", "GN"), ("LN", "GN")) if k in pairs]
        kinds = {p["verdict"] for p in norms}
        if kinds == {"inconclusive"}:
            verdict = ("no pair of BN, LN and GN differs, and none is shown equivalent within "
                       f"+-{s['margin']:.2f} points either: pick on the grounds below, not on accuracy")
        else:
            verdict = "; ".join(said(p, p["a"], p["b"]) for p in norms)
        l1 = pairs.get(("BN", "BN+L1"))
        targets = [t for t in s["targets"] if t["verdict"] == "differs"]
        speed = ("; time to target: " + "; ".join(f"first epoch at {t['target']}%, {said(t, t['a'], t['b'])} epochs"
                                                   for t in targets)) if targets else ""
        out.append(f"- **Batches of 128 images, as here**: {verdict} (main comparison, {len(s['seeds'])} seeds). "
                   + (f"L1 on BatchNorm: {said(l1, 'BN', 'BN+L1')}" if l1 else "") + speed + ".")
    else:
        out.append("- **Batches of 128 images, as here**: " + not_yet("main"))
    if "bn_test" in r:
        b = r["bn_test"]["summary"]
        first = next(iter(b["bn"].values()))
        one = sum(x["batch_statistics"]["1"] for x in first["rows"]) / len(first["rows"])
        c = first["recomputed_vs_running"]
        out.append(f"- **BatchNorm at test time**: in eval mode every model's predictions are the same at test batches of "
                   f"1 and 1,000 ({b['invariance']['changed']} changed over {b['invariance']['models']} models); left in "
                   f"train mode with one test digit at a time it falls to {one:.2f}%. Statistics recomputed over the "
                   f"training digits against the stored running ones: {said(c, 'recomputed', 'running')} (bn_test).")
    else:
        out.append("- **BatchNorm at test time**: " + not_yet("bn_test"))
    if "shift" in r:
        rows = r["shift"]["summary"]["rows"][1:]
        better = lambda column: [x["shift"] for x in rows if x["against"][column]["verdict"] == "differs"
                                 and x["against"][column]["difference"] > 0]
        worse = lambda column: [x["shift"] for x in rows if x["against"][column]["verdict"] == "differs"
                                and x["against"][column]["difference"] < 0]
        re_est = "BN, re-estimated on the shifted digits"
        out.append(f"- **Test digits that drift** ({len(rows)} shifts, shift): against BatchNorm with its running "
                   f"statistics, re-estimating them on the shifted digits is better under {len(better(re_est))} and "
                   f"worse under {len(worse(re_est))}; LayerNorm is better under {len(better('LN'))} and worse under "
                   f"{len(worse('LN'))}; GroupNorm better under {len(better('GN'))} and worse under {len(worse('GN'))} "
                   "(paired over seeds, Holm; the rest inconclusive). STUDY.md names each shift.")
    else:
        out.append("- **Test digits that drift**: " + not_yet("shift"))
    if "gn_groups" in r:
        rows = [x for x in r["gn_groups"]["summary"]["rows"] if "against_2_groups" in x]
        from experiments.gn_groups import NAMES as GROUP_NAMES
        out.append("- **GroupNorm's groups**, against 2: " + "; ".join(
            f"{GROUP_NAMES.get(x['groups'], x['groups'])}: {runner.interval(x['against_2_groups'])} points, "
            f"{x['against_2_groups']['verdict']}" for x in rows) + f" (gn_groups, {len(rows[0]['seeds'])} seeds).")
    else:
        out.append("- **GroupNorm's groups**: " + not_yet("gn_groups"))
    if "ghost_stats" in r:
        g = r["ghost_stats"]["summary"]
        parts = []
        for row in g["rows"]:
            means = ", ".join(f"{way} {mean:.2f}%" for way, mean in row["mean"].items())
            parts.append(f"at k = {row['k']}: {means}")
        out.append(f"- **BatchNorm trained on ghost batches of one or two images** (ghost_stats, {g['seeds']} seeds, "
                   f"test accuracy): {'; '.join(parts)}. " + (
                       "At k = 1 only each test digit's own statistics restore the models (Holm-corrected, paired over "
                       "seeds): trained on groups of one image, BatchNorm has become a per-image normalisation and "
                       "works only when it is tested as one. " if k1_mechanism_holds(g) else "")
                   + "STUDY.md gives each comparison with its test.")
    if "norm_batch" in r:
        rows = [x for x in r["norm_batch"]["summary"]["rows"] if "against_whole_batch" in x]
        name = lambda x: f"k = {x['k']}" if x["norm"] == "B" else runner.LABELS[x["norm"]]
        out.append("- **One or a few images per normalisation group** (norm_batch, BatchNorm without L1 on ghost batches "
                   f"of k images, {len(rows[0]['seeds'])} seeds, running statistics), against BatchNorm on the whole "
                   "batch of 128: " + "; ".join(f"{name(x)}: {runner.interval(x['against_whole_batch'])} points, "
                                                f"{x['against_whole_batch']['verdict']}" for x in rows) + ".")
    else:
        out.append("- **One or a few images per normalisation group**: " + not_yet("norm_batch"))
    if "lr" in r:
        s = r["lr"]["summary"]
        def best(v: str, x: dict) -> str:
            c = x["best_vs_shared"]
            return f"{v} {x['best']:g}" + ("" if c is None else f" ({said(c, format(x['best'], 'g'), format(s['shared'], 'g'))})")
        differ = [v for v, x in s["variants"].items() if x["best_vs_shared"] and x["best_vs_shared"]["verdict"] == "differs"]
        out.append(f"- **Each norm's own learning rate** (lr, validation, {len(s['seeds'])} seeds; STUDY.md lists the "
                   "rates each variant ran): the best peak rate of "
                   + "; ".join(best(v, x) for v, x in s["variants"].items()) + ". " + (
                       f"No variant's best rate is shown to differ from the shared {s['shared']:g} (paired over seeds, "
                       "Holm); each interval says how large a gap these seeds could miss."
                       if not differ else f"{', '.join(differ)} differ from the shared rate.")
                   + " The main comparison is also run with each variant at its own rate (own_rate).")
    else:
        out.append("- **Each norm's own learning rate**: " + not_yet("lr"))
    return "\n".join(out)


def l1_blocks(r: dict) -> dict[str, str]:
    if "l1" not in r:
        return {"l1_mechanism": not_yet("l1")}
    s = r["l1"]["summary"]
    rows = {row["l1_lambda"]: row for row in s["rows"]}
    chosen, none = rows[s["chosen"]], rows[0.0]
    mean = lambda values: sum(values) / len(values)
    final = lambda row: mean([w[-1] for w in row["weights_l1"]])
    return {"l1_mechanism": (
        f"Chosen on validation: lambda = {s['chosen']:g}, the best mean of the non-zero lambdas ({chosen['mean']:.2f}% "
        f"against {none['mean']:.2f}% without L1; {chosen['against_0']['verdict']} with {len(chosen['seeds'])} seeds). "
        f"Of the {s['penalised']:,} weights L1 penalises, {s['before_norm']:,} ({s['before_norm'] / s['penalised']:.0%}) "
        f"are in convolutions that feed a norm. At lambda = {s['chosen']:g} the penalised weights' sum of abs(w) ends at {final(chosen):.0f} "
        f"against {final(none):.0f} without L1 (mean over seeds), and "
        f"{mean(chosen['near_zero']):.1%} of the weights end below {s['zero']:g} against "
        f"{mean(none['near_zero']):.1%}; at the larger lambdas, " + ", ".join(
            f"{lam:g}: {mean(row['near_zero']):.0%}" for lam, row in rows.items() if lam > s["chosen"]) + ".")}


def k1_comparisons(g: dict) -> tuple[dict, list[dict]]:
    """ghost_stats at k = 1: the test digits' own statistics, and the two recomputed ones, each against running."""
    against = next(row for row in g["rows"] if row["k"] == 1)["against"]
    return against["statistics of k test digits"], [against["recomputed in groups of k"],
                                                      against["recomputed over whole batches"]]


def k1_mechanism_holds(g: dict) -> bool:
    """The test digits' own statistics restore the k = 1 models (the corrected test says so) and neither recomputed
    statistics comes near: each one's upper 95% bound lies below the own statistics' lower bound."""
    own, recomputed = k1_comparisons(g)
    return own["verdict"] == "differs" and own["difference"] > 0 and all(c["ci"][1] < own["ci"][0] for c in recomputed)


def ghost_blocks(r: dict) -> dict[str, str]:
    """What restores BatchNorm trained on ghost batches, in words, and the mechanism only where the tests support it:
    the test digits' own statistics restore the k = 1 models and neither recomputed statistics comes near."""
    if "ghost_stats" not in r:
        return {"ghost_mechanism": not_yet("ghost_stats")}
    g = r["ghost_stats"]["summary"]
    out = []
    for row in g["rows"]:
        ways = list(row["acc"])
        out.append(f"At k = {row['k']}, against the running statistics ({row['mean'][ways[0]]:.2f}%): " + "; ".join(
            f"{w} {row['mean'][w]:.2f}% ({runner.interval(row['against'][w])} points, {row['against'][w]['verdict']})"
            for w in ways[1:]) + ".")
    own, recomputed = k1_comparisons(g)
    if k1_mechanism_holds(g):
        out.append(
            "So at k = 1 the models need each test digit normalised by its own statistics, as in training, where "
            "BatchNorm over one image is a per-image, per-channel normalisation (InstanceNorm's). Statistics shared by "
            "many digits do not restore them, whether recomputed in groups of one (what the running average estimates, "
            "without its lag) or over whole batches (with the spread of the images' means that the running variance "
            f"lacks): their gains end at {max(c['ci'][1] for c in recomputed):+.1f} points at most (upper 95% bounds), "
            f"where the digits' own statistics give {own['ci'][0]:+.1f} at least. What breaks these models is any "
            "statistics but each image's own, not the running average.")
    else:
        out.append(f"With {g['seeds']} seeds these tests do not yet separate the explanations at k = 1: the mechanism "
                   "is left open.")
    return {"ghost_mechanism": " ".join(out)}


def verify_blocks(r: dict) -> dict[str, str]:
    """What `python -m experiments verify` found when the stored runs were retrained under the pinned environment."""
    if "verify" not in r:
        return {"verify": "Not run yet: `python -m experiments verify` writes results/verify.json.", "verify_table": ""}
    v = r["verify"]
    env = v["environment"]
    moved = [r for r in v["runs"] if not r["identical"]]
    drift = (f" The other {len(moved)} moved by at most {max(abs(r['acc'] - r['stored_acc']) for r in moved):.2f} "
             f"points of test accuracy ({max(r['predictions_differ'] for r in moved)} of the 10,000 predictions at "
             "most)." if moved else "")
    return {"verify": f"{v['identical']} of {len(v['runs'])} stored runs, retrained with torch {env['torch']} on "
                      f"{env['device']} ({env['cpu']}), one thread, are bit-identical to their records: the same weights, "
                      "predictions and every epoch's numbers." + drift,
            "verify_table": verify.table(v)}


def compute_table() -> str:
    """What every experiment needs of the run store, at its full settings: the runs it lists, how many the committed
    store holds, and its training time: the stored runs' own seconds, plus, for each missing run, the mean seconds of
    the stored runs on the same split (the validation split trains on 50,000 digits, the test split on 60,000). Runs
    shared between experiments count once in the total. Minutes on 2 cores (two runs at a time, one thread each) and on
    16 (a cluster, one run per core), from those seconds."""
    runs_store = store.Store()
    needed, rows = {}, []
    for name in EXPERIMENTS:
        module = importlib.import_module(f"experiments.{name}")
        specs = {store.key(r["spec"]): r["spec"] for r in module.runs(runner.settings_for(False, **module.OVERRIDES),
                                                                      module.SEEDS)}
        needed.update({k: (name, spec) for k, spec in specs.items() if k not in needed})
        rows.append([name, specs])
    seconds = {k: runs_store.read(runs_store.file(spec))[0]["seconds"] for k, (_, spec) in needed.items()
               if runs_store.file(spec).exists()}
    by_split = {split: [seconds[k] for k, (_, spec) in needed.items() if k in seconds and spec["split"] == split]
                for split in ("test", "validation")}
    fallback = statistics.mean(seconds.values()) if seconds else float("nan")
    mean = {split: statistics.mean(v) if v else fallback for split, v in by_split.items()}
    estimate = lambda k, spec: seconds.get(k, mean[spec["split"]])
    minutes = lambda total: "-" if math.isnan(total) else f"{total / 60:.0f}"
    body = []
    for name, specs in rows:
        total = sum(estimate(k, spec) for k, spec in specs.items())
        body.append([f"`python -m experiments {name}`", len(specs), sum(k in seconds for k in specs),
                     minutes(total / 2), minutes(total / 16)])
    total = sum(estimate(k, spec) for k, (_, spec) in needed.items())
    body.append(["all, each run once", len(needed), len(seconds), minutes(total / 2), minutes(total / 16)])
    return records.markdown_table(["experiment", "runs (20 epochs each)", "in the committed store",
                                 "minutes on 2 cores", "minutes on 16 cores"], body)


def blocks(r: dict | None = None) -> dict[str, str]:
    """Every generated block, by name."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import speed
    import step

    r = r or load()
    out = {**notebook_run(r), **model_blocks(), **main_blocks(r), **replication_block(r), **rates_block(r), **l1_blocks(r), **verify_blocks(r), **ghost_blocks(r), "pick": pick(r), "durations": compute_table(),
           "speed": speed.table(r["speed"]), "step": step.table(r["step"])}
    out.update({f"{name}_tables": experiment_tables(r, name) for name in EXPERIMENTS})
    return out


def render(text: str, generated: dict[str, str]) -> str:
    """`text` with every generated block's body replaced by its text; an unknown block name is a ValueError."""
    def replace(match: re.Match) -> str:
        if match.group(2) not in generated:
            raise ValueError(f"no generator for the block {match.group(2)!r}; known: {sorted(generated)}")
        return match.group(1) + generated[match.group(2)] + "\n" + match.group(4)
    return BLOCK.sub(replace, text)


def write(root: Path = ROOT) -> list[Path]:
    """Rewrite the generated blocks of README.md and STUDY.md under `root` from its results; the changed files."""
    generated = blocks(load(root))
    changed = []
    for name in DOCUMENTS:
        path = root / name
        text = path.read_text()
        new = render(text, generated)
        if new != text:
            records.replace_file(path, lambda tmp: tmp.write_text(new))
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in write():
        print(f"rewrote {path.relative_to(ROOT)}")
