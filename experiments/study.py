"""Every verdict of the study under its own family's correction and under one study-wide correction (PROTOCOL.md,
"Study-wide correction and intervals"), from the committed results and the run store; nothing is trained or
evaluated here. experiments/report.py renders it into STUDY.md.

- Families: each experiment's table is one (the main comparisons' time-to-target tables apart from their pairs),
  and the two trends (norm_batch, gn_groups) are one more.
- Tests: every comparison's paired t-test; its equivalence test (TOST) where its family can conclude equivalence
  (not lr, whose own rates are choices, nor shift, which tests differences); shift's Wilcoxon test; each trend's
  one-sample t-test. The study-wide correction is Holm over all of them at once.
- Bootstrap: every comparison its family calls equivalent gets a percentile 90% interval of the mean paired difference
  that resamples the seeds and, within each, the 10,000 test digits (the same digits for both models). Only the digits
  exactly one of the two models gets right move the difference, so each seed's resample draws how many of its
  10,000 draws land on those digits (a multinomial), which is the digit-level bootstrap exactly and fast. An
  equivalence stands only if this interval also lies inside the margin; where the digits' predictions are not kept
  (time to target, ghost_stats's test-time ways), none can be drawn and the equivalence does not stand.
"""

import functools
import json

import numpy as np

import records
import store
from checks import NORM_NAMES, norm_name
from experiments import VERDICTS, gn_groups, runner, stats

def walk(node, path: tuple = ()):
    """Every comparison (a dict with a "verdict" and a "p") under `node`, with its path."""
    if isinstance(node, dict):
        if "verdict" in node and "p" in node:
            yield path, node
            return
        for key, value in node.items():
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, path + (index,))


def label(name: str, result: dict, path: tuple, comparison: dict) -> str:
    """A comparison's name in the table, from the row of the experiment's `result` it sits in."""
    if path[0] in ("pairs", "targets"):
        return f"{comparison['a']} - {comparison['b']}" + (f", first epoch at {comparison['target']}%" if path[0] == "targets" else "")
    if name == "lr":
        return f"{path[1]}: best rate - shared"
    if name == "bn_test":
        return f"{path[1]}: recomputed - running statistics"
    row = result["summary"][path[0]][path[1]]
    if name == "shift":
        return f"{row['shift']}, severity {row['severity']:.2g}: {path[-1]}"
    if name == "ghost_stats":
        return f"k = {row['k']}: {path[-1]} - running"
    if name == "norm_batch" and row["norm"] == "B":
        return f"k = {row['k']} - whole batch"
    if name == "norm_batch":
        return f"{norm_name(row['norm'], result['settings']['GROUPS'])} - BN, whole batch"
    if name == "gn_groups":
        same = gn_groups.AS_NORM.get(row["groups"])  # the norm that these groups are
        groups = {1: "1 group", "C": "1 per channel"}.get(row["groups"], f"{row['groups']} groups")
        return f"{groups} ({NORM_NAMES[same]}) - 2 groups" if same else f"{groups} - 2 groups"
    if name == "l1":
        return f"lambda {row['l1_lambda']:g} - 0"
    return " ".join(map(str, path))


@functools.cache
def labels(settings: str) -> str:
    """The test digits' labels for an experiment's settings (as JSON), read once."""
    return runner.test_labels(json.loads(settings))


def counts_from_store(result: dict, row: dict, reference: dict, select) -> list[tuple[int, int]]:
    """Per seed, (digits only `row`'s model gets right, digits only the reference's), from the stored predictions
    of the runs `select(run, row)` picks among `result`'s runs."""
    runs_store = store.Store()
    digits = lambda text: np.frombuffer(text.encode(), dtype=np.uint8)  # a string of classes, one byte per digit
    predictions = lambda chosen: {run["seed"]: digits(runs_store.read(runs_store.file(run["key"]))[0]["predictions"])
                                  for run in result["runs"] if select(run, chosen)}
    ours, theirs = predictions(row), predictions(reference)
    truth = digits(labels(json.dumps(result["settings"], sort_keys=True)))
    out = []
    for seed in sorted(ours):
        right_a, right_b = ours[seed] == truth, theirs[seed] == truth
        out.append((int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())))
    return out


def digit_counts(name: str, result: dict, path: tuple, comparison: dict) -> list[tuple[int, int]] | None:
    """Per seed (only A right, only B right) for a comparison of accuracies, where the predictions are kept."""
    summary = result["summary"]
    if path[0] == "pairs":
        return [(m["only_a"], m["only_b"]) for m in comparison["mcnemar"]]
    if name == "bn_test":
        return [(x["mcnemar"]["only_a"], x["mcnemar"]["only_b"]) for x in summary["bn"][path[1]]["rows"]]
    if name == "norm_batch":
        whole = next(r for r in summary["rows"] if r["norm"] == "B" and r["k"] == result["settings"]["BATCH_SIZE"])
        return counts_from_store(result, summary["rows"][path[1]], whole,
                                 lambda run, row: (run["norm"], run["k"]) == (row["norm"], row["k"]))
    if name == "gn_groups":
        two = next(r for r in summary["rows"] if r["groups"] == 2)
        return counts_from_store(result, summary["rows"][path[1]], two, lambda run, row: run["groups"] == row["groups"])
    return None


def rows(results: dict) -> list[dict]:
    """Every comparison of the committed results with its family, tests and both verdicts."""
    out = []
    for name in VERDICTS:
        if name not in results:
            continue
        summary = results[name]["summary"]
        for path, comparison in walk(summary):
            family = f"{name} ({'time to target' if path[0] == 'targets' else 'pairs'})" if path[0] in (
                "pairs", "targets") else name
            # a comparison with a method invariant to its shift is no test (PROTOCOL.md C): it stays out of every family
            tests = {} if comparison["verdict"] == "invariant" else {"t": (comparison["p"], comparison["p_holm"])}
            if tests and comparison.get("p_wilcoxon") is not None:
                tests["Wilcoxon"] = (comparison["p_wilcoxon"], comparison["p_wilcoxon_holm"])
            if tests and name not in ("lr", "shift") and comparison.get("p_equivalence") is not None:
                tests["equivalence"] = (comparison["p_equivalence"], comparison["p_equivalence_holm"])
            row = dict(family=family, comparison=label(name, results[name], path, comparison), difference=comparison["difference"],
                       ci=comparison["ci"], margin=1.0 if path[0] == "targets" else stats.MARGIN, tests=tests,
                       family_verdict=comparison["verdict"], bootstrap=None)
            if comparison["verdict"].startswith("equivalent"):
                counts = None if path[0] == "targets" else digit_counts(name, results[name], path, comparison)
                row["bootstrap"] = stats.bootstrap(counts) if counts else "not available"
            out.append(row)
    trends = [(name, results[name]["summary"]["trend"]) for name in ("norm_batch", "gn_groups") if name in results]
    for (name, trend), adjusted in zip(trends, stats.holm([trend["p"] for _, trend in trends])):
        over = "log2 k, k = 2-128" if name == "norm_batch" else "log2 groups, 1-8"
        out.append(dict(family="trends", comparison=f"{name}: slope of accuracy on {over}", difference=trend["slope"],
                        ci=trend["ci"], margin=None, tests={"t": (trend["p"], adjusted)},
                        family_verdict="differs" if adjusted is not None and adjusted < stats.ALPHA else "inconclusive",
                        bootstrap=None))
    study_wide(out)
    return out


def verdict(found: list[dict], family: str, comparison: str) -> str:
    """A comparison's verdict under the study-wide correction, from `found` (the rows of `rows`)."""
    return next(row["study_verdict"] for row in found if (row["family"], row["comparison"]) == (family, comparison))


def stands(row: dict, field: str) -> bool:
    """An equivalence stands under `field`'s correction if that TOST is below ALPHA and the bootstrap's interval
    lies inside the margin."""
    interval = row["bootstrap"]
    return (row["tests"]["equivalence"][1 if field == "family" else 2] < stats.ALPHA and isinstance(interval, list)
            and -row["margin"] < interval[0] and interval[1] < row["margin"])


def study_wide(out: list[dict]) -> None:
    """Holm over every test of every family at once; each row's verdict under it, and its family verdict with the
    bootstrap's condition on equivalence (PROTOCOL.md: "equivalent" needs both). A row without tests (invariant)
    keeps its verdict."""
    tests = [(row, kind) for row in out for kind in row["tests"]]
    for (row, kind), adjusted in zip(tests, stats.holm([row["tests"][kind][0] for row, kind in tests])):
        row["tests"][kind] = row["tests"][kind] + (adjusted,)  # (raw, family Holm, study-wide Holm)
    for row in (row for row in out if not row["tests"]):
        row["study_verdict"] = row["family_verdict"]
    for row in (row for row in out if row["tests"]):
        differs = lambda column: all(row["tests"][kind][column] is not None and row["tests"][kind][column] < stats.ALPHA
                                     for kind in ("t", "Wilcoxon") if kind in row["tests"])
        if row["family_verdict"].startswith("equivalent") and not stands(row, "family"):
            row["family_verdict"] = stats.without_bootstrap(row["family_verdict"])
        row["study_verdict"] = ("differs" if differs(2) else
                                row["family_verdict"] if "equivalence" in row["tests"] and stands(row, "study")
                                and row["family_verdict"].startswith("equivalent") else "inconclusive")


def tests_said(row: dict) -> str:
    """Each test's p: raw, Holm in its family, Holm study-wide."""
    return "; ".join(f"{kind} {' / '.join(runner.p_value(p) for p in ps)}" for kind, ps in row["tests"].items())


def table(out: list[dict]) -> str:
    body = [[row["family"], row["comparison"],
             runner.interval(row), tests_said(row),
             "-" if row["bootstrap"] is None else row["bootstrap"] if isinstance(row["bootstrap"], str)
             else f"[{row['bootstrap'][0]:+.3f}, {row['bootstrap'][1]:+.3f}]",
             row["family_verdict"], row["study_verdict"]] for row in out]
    return records.markdown_table(["family", "comparison", "difference [95% interval]",
                                   "p: raw / Holm in family / Holm study-wide",
                                   "bootstrap 90% interval (seeds and digits)", "verdict in its family",
                                   "verdict study-wide"], body)


def counts(out: list[dict]) -> str:
    """How many verdicts of each kind, in the families and study-wide, in one sentence."""
    kinds = ("differs", "equivalent", "inconclusive", "invariant")
    words = {"differs": "differ"}  # how many "differ"
    said = lambda field: ", ".join(f"{sum(row[field].startswith(k) for row in out)} {words.get(k, k)}" for k in kinds)
    return (f"{len(out)} comparisons and trends, {sum(len(row['tests']) for row in out)} tests (an invariant "
            "comparison is none). Within their families: "
            f"{said('family_verdict')}; under the one study-wide correction: {said('study_verdict')}.")


def blocks(found: list[dict]) -> dict[str, str]:
    """STUDY.md's count of the verdicts and its table of every verdict, from `found` (the rows of `rows`)."""
    return {"study_counts": counts(found), "study_table": table(found)}
