"""Every number in README.md and STUDY.md, generated from the committed results: `python -m experiments.report`
rewrites the generated blocks of both files, and tests/test_readme.py checks that they are as generated.

A generated block in those files is the text between `<!-- generated: NAME -->` and `<!-- /generated -->`; `blocks()`
makes each NAME's text from the committed JSON (results/) and the code, and records.render puts it in place. Everything
outside the blocks is written by hand and carries no number that a result could change. Publishing a full notebook
run (publish.py) rewrites the blocks made from its history alone (records.notebook_blocks), so that the README follows
the results it publishes; no other block reads the history.
"""

import importlib
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import torch

import records
import store
import training
from checks import NORM_NAMES
from experiments import EXPERIMENTS, PROTOCOL2, REGISTRY, main, runner, stats, study, verify
from model import Net, count_macs, count_parameters

ROOT = records.ROOT


def load(root: Path = ROOT) -> dict:
    """results/history.json under "history", each experiment's and benchmark's JSON under its name."""
    results = {"history": records.load_history(root / "results" / "history.json")}
    for name in EXPERIMENTS + ["speed", "step", "verify", "threads", "cost"]:
        path = root / "results" / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    return results


def not_yet(name: str) -> str:
    return (f"Not run yet at the protocol's length: `python -m experiments {name}` makes results/{name}.json from the "
            "run store, training the runs it does not hold (see the compute table).")


def experiment_tables(results: dict, name: str) -> str:
    """An experiment's tables; for Protocol 2's, its figure too (shown once it is published)."""
    if name not in results:
        return not_yet(name)
    module = importlib.import_module(f"experiments.{name}")
    figure = [f"![{module.SHOWS}](Images/{name}.png)"] if name in PROTOCOL2 else []
    return "\n\n".join(module.tables(results[name]) + figure)


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
    for hook in hooks:
        hook.remove()
    full = 2 * sum(math.prod(s) for s in shapes)
    return {
        "model_table": records.markdown_table(["norm", "parameters", "multiply-accumulates per image", "norm parameters",
                                             "what is normalised"], rows),
        "full_layernorm": f"The common `nn.LayerNorm([C, H, W])` would learn a scale and shift per activation: "
                          f"{full:,} parameters for this network's five norms ({full / count_parameters(net):.1f} times "
                          "the whole network)",
        "worked_example": records.worked_example_table(),
    }


def said(comparison: dict, a: str, b: str) -> str:
    """One comparison in words: "A - B +0.030 points [-0.050, +0.110], inconclusive"."""
    return f"{a} - {b} {runner.interval(comparison)} points, {comparison['verdict']}"


def verdict(found: list[dict], family: str, comparison: str) -> str:
    """A comparison's verdict under the study-wide correction (experiments/study.py)."""
    return next(row["study_verdict"] for row in found if (row["family"], row["comparison"]) == (family, comparison))


def pairs_said(found: list[dict], family: str) -> str:
    """Which pairs of a main-style family are equivalent, differ or neither, study-wide, in words."""
    rows = [row for row in found if row["family"] == family]
    named = lambda kind: [row["comparison"].replace(" - ", " and ") for row in rows if row["study_verdict"].startswith(kind)]
    parts = [f"{', '.join(named(kind))} are shown {word}"
             for kind, word in (("equivalent", "equivalent"), ("differs", "to differ")) if named(kind)]
    rest = len(named("inconclusive"))
    return (", ".join(parts) or "no pair is shown equivalent or different") + (
        f", and the other {rest} pairs are inconclusive" if rest and parts else "")


def main_blocks(results: dict, found: list[dict]) -> dict[str, str]:
    """The README's answer in plain words: how close the four variants are, at the shared rate and at their own, and
    which pairs the study-wide correction shows equivalent or different, with what "equivalent" means; the intervals
    and p-values are in STUDY.md."""
    if "main" not in results:
        return {"headline": records.notebook_blocks(results["history"])["notebook_run"]
                + " The ten-seed comparison is not committed yet."}
    summary = results["main"]["summary"]
    means = [x["mean"] for x in summary["variants"].values()]
    margin = f"{summary['margin']:.2f}"
    text = (f"With batches of {results['main']['settings']['BATCH_SIZE']} images, BatchNorm, LayerNorm and GroupNorm (and BatchNorm with L1) give this "
            f"{count_parameters(Net('B')):,}-parameter network mean test accuracies between {min(means):.2f}% and "
            f"{max(means):.2f}% over {len(summary['seeds'])} seeds at one shared learning rate")
    if "own_rate" in results:
        own = [x["mean"] for x in results["own_rate"]["summary"]["variants"].values()]
        text += f", and between {min(own):.2f}% and {max(own):.2f}% with each at its own rate (chosen on validation)"
    text += (f". Under one correction over all the study's tests, at the shared rate, {pairs_said(found, 'main (pairs)')}"
             + (f"; at their own rates, {pairs_said(found, 'own_rate (pairs)')}" if "own_rate" in results else "") + ". "
             f"Equivalent within +-{margin} points means the 90% interval of the difference (paired by seed, counting "
             f"the test digits' sampling too) lies inside +-{margin}: a difference may exist, but it is smaller than "
             f"that; inconclusive means these seeds can show neither.")
    return {"headline": text}


GOAL = (99.55, 99.50)  # PROTOCOL.md B: the accuracy goal, a variant's mean over seeds and its lowest seed (%)


def accuracies(result: dict, variant: str) -> dict[int, float]:
    """A main-style experiment's test accuracy of one variant, by seed."""
    return {run["seed"]: run["test_acc"] for run in result["runs"] if run["variant"] == variant}


def goal_met(acc: dict[int, float]) -> str:
    met = statistics.mean(acc.values()) >= GOAL[0] and min(acc.values()) >= GOAL[1]
    return "met" if met else "not met"


def replication_block(results: dict) -> dict[str, str]:
    """The main comparison's seeds 1-5 (committed before the margin was set) and 6-10 (the replication) apart, and
    whether each variant meets the accuracy goal over all ten."""
    if "main" not in results:
        return {"main_replication": "The main comparison is not committed yet."}
    rows = []
    for variant in results["main"]["summary"]["variants"]:
        acc = accuracies(results["main"], variant)
        mean = lambda seeds: statistics.mean(acc[s] for s in seeds)
        rows.append([variant, f"{mean(range(1, 6)):.2f}", f"{mean(range(6, 11)):.2f}", f"{mean(acc):.2f}",
                     f"{min(acc.values()):.2f}", goal_met(acc)])
    return {"main_replication": records.markdown_table(
        ["variant", "mean, seeds 1-5 (%)", "mean, seeds 6-10 (%)", "mean, seeds 1-10 (%)", "lowest seed (%)",
         f"goal: mean >= {GOAL[0]:.2f}, every seed >= {GOAL[1]:.2f}"], rows)}


def rates_block(results: dict) -> dict[str, str]:
    """The README's first table: each variant at the shared rate and at its own, its mean and lowest seed, and the
    accuracy goal met or not at each (PROTOCOL.md B)."""
    if "main" not in results or "own_rate" not in results:
        return {"rates_table": not_yet("own_rate")}
    from experiments.own_rate import RATES
    settings, rows = results["main"]["settings"], []
    for variant in results["main"]["summary"]["variants"]:
        spec = main.variants(settings)[variant]
        words = NORM_NAMES[spec["norm"]] + (" + L1" if spec.get("l1_lambda") else "") + (
            f", {settings['GROUPS']} groups" if spec["norm"] == "G" else "")
        row = [f"{variant} ({words})"]
        for result in (results["main"], results["own_rate"]):
            acc = accuracies(result, variant)
            row += [f"{statistics.mean(acc.values()):.2f}", f"{min(acc.values()):.2f}", goal_met(acc)]
        rows.append(row[:4] + [f"{RATES[variant]:g}"] + row[4:])
    return {"rates_table": records.markdown_table(
        ["variant", f"shared rate {settings['MAX_LR']:g}: mean (%)", "lowest seed (%)", "goal", "own rate", "mean (%)",
         "lowest seed (%)", "goal"], rows)}


def link(name: str) -> str:
    """A link to an experiment's section of STUDY.md."""
    return f"[{name}](STUDY.md#{REGISTRY[name].section})"


def pick(results: dict, found: list[dict]) -> str:
    """The README's advice: one row per situation, a recommendation in plain words, why (Protocol 1's study-wide
    verdicts, Protocol 2's primary ones), the STUDY.md section with the evidence, and what the norms it names cost."""
    rows = []
    if "main" in results:
        core = [row for row in found if row["family"] in ("main (pairs)", "own_rate (pairs)")
                and "+" not in row["comparison"]]  # BN, LN and GN against each other
        differ = [row for row in core if row["study_verdict"] == "differs"]
        def spread(name: str) -> float:
            means = [x["mean"] for v, x in results[name]["summary"]["variants"].items() if v in ("BN", "LN", "GN")]
            return max(means) - min(means)
        rates = [name for name in ("main", "own_rate") if name in results]
        equivalent = [f"{row['comparison'].replace(' - ', ' and ')} {'at the shared rate' if row['family'].startswith('main') else 'at their own rates'}"
                      for row in core if row["study_verdict"].startswith("equivalent")]
        rows.append([f"Batches of about {results['main']['settings']['BATCH_SIZE']} images, as here",
                     "no norm is shown better than another" if not differ else "see the evidence",
                     "their mean accuracies differ by at most " + " and ".join(
                         f"{spread(name):.2f} points {'at the shared learning rate' if name == 'main' else 'at their own rates'}"
                         for name in rates) + "; no pair is shown to differ; shown equivalent within +-0.10: "
                     + (", ".join(equivalent) or "none") + "; every other pair is inconclusive" if not differ else
                     f"{len(differ)} pairs differ", ", ".join(link(name) for name in rates), "BLG"])
    for name in PROTOCOL2:
        if name in results:
            row = importlib.import_module(f"experiments.{name}").pick(results[name])
            rows.append([row["situation"], row["pick"], row["why"], link(name), row["norms"]])
    if "norm_batch" in results:
        nb = {(x["norm"], x["k"]): x for x in results["norm_batch"]["summary"]["rows"]}
        k2 = verdict(found, "norm_batch", "k = 2 - whole batch")
        trend = next(row for row in found if row["comparison"].startswith("norm_batch: slope"))
        rows.append(["One or two images per normalisation group (ghost batches within a batch of "
                     f"{results['norm_batch']['settings']['BATCH_SIZE']})",
                     "LayerNorm or GroupNorm, not BatchNorm",
                     f"BatchNorm over groups of one image ends at {nb[('B', 1)]['mean']:.0f}% accuracy; over two it is "
                     f"{-nb[('B', 2)]['against_whole_batch']['difference']:.2f} points below the whole batch ({k2}); and "
                     f"from 2 to {results['norm_batch']['settings']['BATCH_SIZE']} images accuracy rises with the group ({trend['study_verdict']}: "
                     f"{trend['difference']:+.3f} points per doubling). LayerNorm and GroupNorm do not depend on the batch",
                     link("norm_batch"), "LG"])
    if "shift" in results and "drift" not in results:  # Protocol 1's drift, until Protocol 2's fresh models answer
        drift = results["shift"]["summary"]
        strongest = [row for row in drift["rows"] if row["severity"] == 1.0]
        ways = drift["ways"]
        adapted_ahead = sum(min(row["mean"][ways[1]], row["mean"][ways[2]]) > max(row["mean"]["LN"], row["mean"]["GN"])
                            for row in strongest)
        worst = min(strongest, key=lambda row: row["mean"][ways[0]])
        lowest = sum(row["mean"][ways[0]] < min(row["mean"]["LN"], row["mean"]["GN"]) for row in strongest)
        tested = [row for row in found if row["family"] == "shift" and row["tests"]]
        shown = sum(row["study_verdict"] == "differs" for row in tested)
        rows.append(["Test digits that drift (contrast, background, noise, stroke width)",
                     "no norm is shown better" if not shown else "see the evidence",
                     f"{shown} of the {len(tested)} declared comparisons differ: with ten seeds the declared rank test "
                     "cannot reach its corrected threshold (STUDY.md says why). Seen, not tested: BatchNorm with its "
                     f"running statistics ends below LayerNorm and GroupNorm in {lowest} of the {len(strongest)} shifts "
                     f"at full severity (to {worst['mean'][ways[0]]:.0f}% under the strongest "
                     f"{worst['shift']} shift, where LayerNorm keeps {worst['mean']['LN']:.0f}% on average and "
                     f"{min(worst['acc']['LN']):.0f}% on its worst seed), and BatchNorm whose "
                     "statistics come from unlabelled shifted digits, or from each test batch, ends above both LayerNorm "
                     f"and GroupNorm in {adapted_ahead} of the {len(strongest)} shifts at full severity", link("shift"),
                     "BLG"])
    if "gn_groups" in results:
        gn = [row for row in found if row["family"] == "gn_groups"]
        instance = next(row for row in gn if NORM_NAMES["I"] in row["comparison"])
        others = [row for row in gn if row is not instance]
        rows.append(["How many groups for GroupNorm", "GroupNorm, not with one group per channel; among 1 "
                     "(LayerNorm) to 8 groups none is shown better",
                     f"InstanceNorm (one group per channel) is {-instance['difference']:.2f} points below 2 groups "
                     f"({instance['study_verdict']}); 1, 4 and 8 groups against 2: "
                     + ", ".join(sorted({row["study_verdict"] for row in others})), link("gn_groups"), "LG"])
    if "l1" in results and "main" in results:
        l1 = results["l1"]["summary"]
        rows_l1 = {row["l1_lambda"]: row for row in l1["rows"]}
        final = lambda row: sum(w[-1] for w in row["weights_l1"]) / len(row["weights_l1"])
        rows.append(["L1 on BatchNorm's weights", "not for accuracy",
                     f"at lambda = {l1['chosen']:g} (chosen on validation), BatchNorm with and without L1 at the shared "
                     f"rate: {verdict(found, 'main (pairs)', 'BN - BN+L1')}; L1 shrinks the penalised weights' sum of "
                     f"abs(w) from {final(rows_l1[0.0]):,.0f} to {final(rows_l1[l1['chosen']]):,.0f}", link("l1"), ""])
    if "lr" in results:
        lr = results["lr"]["summary"]
        better = [v for v in lr["variants"] if lr["variants"][v]["best_vs_shared"]
                  and verdict(found, "lr", f"{v}: best rate - shared") == "differs"]
        rows.append(["Each norm's learning rate", f"no norm is shown to need another rate than {lr['shared']:g}"
                     if not better else "each its own", "best on validation: " + ", ".join(
                         f"{v} {y['best']:g}" for v, y in lr["variants"].items())
                     + f"; none is shown better than {lr['shared']:g} (a test of a difference only: nothing shows the "
                       "rates equivalent)" if not better else
                     f"{', '.join(better)} do better at their own rates", link("lr"), ""])
    if "bn_test" in results:
        bn = results["bn_test"]["summary"]
        first = next(iter(bn["bn"].values()))
        one = sum(x["batch_statistics"]["1"] for x in first["rows"]) / len(first["rows"])
        recomputed = verdict(found, "bn_test", f"{next(iter(bn['bn']))}: recomputed - running statistics")
        rows.append(["BatchNorm at test time", "eval mode (its running statistics)",
                     f"in eval mode no prediction changes with the test batch ({bn['invariance']['changed']} over "
                     f"{bn['invariance']['models']} models); left in train mode with one test digit at a time it falls "
                     f"to {one:.1f}%; statistics recomputed over the training digits: {recomputed} to the running ones",
                     link("bn_test"), ""])
    return records.markdown_table(["situation", "pick", "why (the verdicts: Protocol 1's study-wide, Protocol 2's within "
                                   "its family)", "evidence",
                                   "its cost: ms per training step at batch 8 / 32 / 128, one CPU thread"],
                                  [row[:4] + [cost(results, row[4])] for row in rows])


def cost(results: dict, norms: str) -> str:
    """What each of `norms` (the letters a row's pick is between) costs per training step (benchmarks/cost.py); "-"
    where the pick is no norm."""
    if "cost" not in results:
        return "not measured yet"
    ms = {(r["norm"], r["batch"]): r["ms"] for r in results["cost"]["rows"]}
    return "; ".join(f"{NORM_NAMES[norm]} {' / '.join(f'{ms[(norm, b)]:.1f}' for b in (8, 32, 128))}"
                     for norm in norms) or "-"


def l1_blocks(results: dict) -> dict[str, str]:
    if "l1" not in results:
        return {"l1_mechanism": not_yet("l1")}
    summary = results["l1"]["summary"]
    rows = {row["l1_lambda"]: row for row in summary["rows"]}
    chosen, none = rows[summary["chosen"]], rows[0.0]
    mean = lambda values: sum(values) / len(values)
    final = lambda row: mean([w[-1] for w in row["weights_l1"]])
    return {"l1_mechanism": (
        f"Chosen on validation: lambda = {summary['chosen']:g}, the best mean of the non-zero lambdas ({chosen['mean']:.2f}% "
        f"against {none['mean']:.2f}% without L1; {chosen['against_0']['verdict']} with {len(chosen['seeds'])} seeds). "
        f"Of the {summary['penalised']:,} weights L1 penalises, {summary['before_norm']:,} ({summary['before_norm'] / summary['penalised']:.0%}) "
        f"are in convolutions that feed a norm. At lambda = {summary['chosen']:g} the penalised weights' sum of abs(w) ends at {final(chosen):.0f} "
        f"against {final(none):.0f} without L1 (mean over seeds), and "
        f"{mean(chosen['near_zero']):.1%} of the weights end below {summary['zero']:g} against "
        f"{mean(none['near_zero']):.1%}; at the larger lambdas, " + ", ".join(
            f"{lam:g}: {mean(row['near_zero']):.0%}" for lam, row in rows.items() if lam > summary["chosen"]) + ".")}


def k1_comparisons(summary: dict) -> tuple[dict, list[dict]]:
    """ghost_stats at k = 1: the test digits' own statistics, and the two recomputed ones, each against running."""
    against = next(row for row in summary["rows"] if row["k"] == 1)["against"]
    return against["statistics of k test digits"], [against["recomputed in groups of k"],
                                                      against["recomputed over whole batches"]]


def k1_mechanism_holds(summary: dict) -> bool:
    """The test digits' own statistics restore the k = 1 models (the corrected test says so) and neither recomputed
    statistics comes near: each one's upper 95% bound lies below the own statistics' lower bound."""
    own, recomputed = k1_comparisons(summary)
    return own["verdict"] == "differs" and own["difference"] > 0 and all(c["ci"][1] < own["ci"][0] for c in recomputed)


def ghost_blocks(results: dict) -> dict[str, str]:
    """What restores BatchNorm trained on ghost batches, in words, and the mechanism only where the tests support it:
    the test digits' own statistics restore the k = 1 models and neither recomputed statistics comes near."""
    if "ghost_stats" not in results:
        return {"ghost_mechanism": not_yet("ghost_stats")}
    summary = results["ghost_stats"]["summary"]
    out = []
    for row in summary["rows"]:
        ways = list(row["acc"])
        out.append(f"At k = {row['k']}, against the running statistics ({row['mean'][ways[0]]:.2f}%): " + "; ".join(
            f"{w} {row['mean'][w]:.2f}% ({runner.interval(row['against'][w])} points, {row['against'][w]['verdict']})"
            for w in ways[1:]) + ".")
    own, recomputed = k1_comparisons(summary)
    if k1_mechanism_holds(summary):
        out.append(
            "So at k = 1 the models need each test digit normalised by its own statistics, as in training, where "
            "BatchNorm over one image is a per-image, per-channel normalisation (InstanceNorm's). Statistics shared by "
            "many digits do not restore them, whether recomputed in groups of one (what the running average estimates, "
            "without its lag) or over whole batches (with the spread of the images' means that the running variance "
            f"lacks): their gains end at {max(c['ci'][1] for c in recomputed):+.1f} points at most (upper 95% bounds), "
            f"where the digits' own statistics give {own['ci'][0]:+.1f} at least. What breaks these models is any "
            "statistics but each image's own, not the running average.")
    else:
        out.append(f"With {summary['seeds']} seeds these tests do not yet separate the explanations at k = 1: the mechanism "
                   "is left open.")
    return {"ghost_mechanism": " ".join(out)}


def shift_blocks(results: dict, found: list[dict]) -> dict[str, str]:
    """Why PROTOCOL.md C's rule cannot conclude at its seeds: the exact rank test's floor against Holm's threshold."""
    if "shift" not in results:
        return {"shift_power": not_yet("shift")}
    tested = [row for row in found if row["family"] == "shift" and row["tests"]]
    seeds, family = results["shift"]["summary"]["seeds"], len(tested)
    t_only = sum(row["tests"]["t"][1] < stats.ALPHA for row in tested)
    return {"shift_power": (
        f"With {seeds} seeds the exact two-sided Wilcoxon test's smallest possible p is 2 / 2^{seeds} = {2 / 2 ** seeds:.5f}, "
        f"reached when every seed's difference has the same sign; Holm over the family's {family} tested comparisons needs "
        f"the smallest p below 0.05 / {family} = {stats.ALPHA / family:.5f}. So no comparison can meet PROTOCOL.md C's rule "
        "(both tests below 0.05 after Holm), whatever the size of its difference. That could have been computed when "
        "the protocol was written; it is reported here, not changed after the result. Outside the protocol, and not a "
        f"verdict: the paired t-tests alone are below 0.05 after Holm in {t_only} of the {family} comparisons.")}


def study_blocks(out: list[dict]) -> dict[str, str]:
    """Every verdict under its family's correction and the study-wide one (experiments/study.py)."""
    return {"study_counts": study.counts(out), "study_table": study.table(out)}


def verify_blocks(results: dict) -> dict[str, str]:
    """What `python -m experiments verify --publish` found: whether this project's machine replicates the study."""
    if "verify" not in results:
        return {"verify": "Not run yet: `python -m experiments verify --publish` writes results/verify.json.",
                "verify_table": ""}
    return {"verify": verify.verdict(results["verify"]), "verify_table": verify.table(results["verify"])}


def committed_runs() -> set[str] | None:
    """The names of the run files git holds (committed or staged): the committed store, so that runs training into
    it do not change the documents until they are committed; None outside a git checkout (every stored run counts)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--", "results/runs"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {Path(line).name for line in listed.splitlines()}


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
        specs = {training.key(run["spec"]): run["spec"] for run in module.runs(runner.settings_for(False, **module.OVERRIDES),
                                                                         module.SEEDS)}
        needed.update({k: (name, spec) for k, spec in specs.items() if k not in needed})
        rows.append([name, specs])
    held = committed_runs()
    seconds = {k: runs_store.read(runs_store.file(spec))[0]["seconds"] for k, (_, spec) in needed.items()
               if runs_store.file(spec).exists() and (held is None or runs_store.file(spec).name in held)}
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
    return records.markdown_table(["experiment", f"runs ({runner.settings_for(False)['EPOCHS']} epochs each)", "in the committed store",
                                 "minutes on 2 cores", "minutes on 16 cores"], body)


def threads_blocks(results: dict) -> dict[str, str]:
    """benchmarks/threads.py's finding in a sentence, and its table."""
    import threads

    if "threads" not in results:
        return {"threads": "Not measured yet: `python benchmarks/threads.py --out results/threads.json`.", "threads_table": ""}
    found = results["threads"]
    row = {r["way"]: r for r in found["rows"]}
    one, default = row["1 thread"], row["default"]
    return {"threads": f"Every command here trains with one CPU thread per process (`OMP_NUM_THREADS=1`, set before "
                       f"torch loads, unless you set it). On this project's {found['environment']['cpu']} with "
                       f"{found['cores']} cores, the notebook's three variants (an epoch of {found['train_digits']:,} "
                       f"digits each) took {one['seconds']['0']:.1f} s with one thread on a quiet machine and "
                       f"{one['seconds']['2']:.1f} s beside two busy processes; with the default {default['threads']} "
                       f"threads, {default['seconds']['0']:.1f} s and {default['seconds']['2']:.1f} s, since idle "
                       f"OpenMP threads spin (median of {found['repeats']}; benchmarks/threads.py).",
            "threads_table": threads.table(found)}


def protocol2_headline(results: dict) -> dict[str, str]:
    """README's first screen on Protocol 2, a list: each experiment's answer once it is published, what is still
    training, and what a step of each norm costs."""
    said = [importlib.import_module(f"experiments.{name}").headline(results[name]) for name in PROTOCOL2 if name in results]
    waiting = [name for name in PROTOCOL2 if name not in results]
    if waiting:
        said.append(f"**Still training:** {', '.join(waiting)} (`python -m experiments.protocol --list` shows what is "
                    "missing).")
    if "cost" in results:
        said.append(f"**What a norm costs.** Milliseconds per training step at batches of 8 / 32 / 128 images on this "
                    f"CPU, one thread: {cost(results, 'BLGN')} (benchmarks/cost.py, median of {results['cost']['rounds']} "
                    "rounds; measured, not tested).")
    return {"protocol2_headline": "\n".join(f"- {line}" for line in said)}


def protocol2_blocks() -> dict[str, str]:
    """PROTOCOL2.md's feasibility table."""
    from experiments import feasibility

    return {"feasibility": feasibility.table()}


def blocks(results: dict | None = None) -> dict[str, str]:
    """Every generated block, by name."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import speed
    import step

    results = results or load()
    found = study.rows(results)
    out = {**records.notebook_blocks(results["history"]), **model_blocks(), **main_blocks(results, found), **replication_block(results), **rates_block(results),
           **l1_blocks(results), **verify_blocks(results), **threads_blocks(results), **protocol2_blocks(), **protocol2_headline(results), **ghost_blocks(results), **study_blocks(found), **shift_blocks(results, found), "pick": pick(results, found),
           "durations": compute_table(),
           "speed": speed.table(results["speed"]), "step": step.table(results["step"])}
    out.update({f"{name}_tables": experiment_tables(results, name) for name in EXPERIMENTS})
    return out


def write(root: Path = ROOT) -> list[Path]:
    """Rewrite the generated blocks of README.md and STUDY.md under `root` from its results; the changed files."""
    generated = blocks(load(root))
    changed = []
    for name in records.DOCUMENTS:
        path = root / name
        text = path.read_text()
        new = records.render(text, generated)
        if new != text:
            records.replace_file(path, lambda tmp: tmp.write_text(new))
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in write():
        print(f"rewrote {path.relative_to(ROOT)}")
