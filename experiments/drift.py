"""Test digits that drift, on fresh models (PROTOCOL2.md 3): BN, LN and GN at the shared rate, seeds 11-22, never
looked at under Protocol 1; seven shifts (Protocol 1's five pixel-wise ones, Gaussian blur, elastic distortion) at
severities 1/3, 2/3 and 1; nothing is trained here beyond those models.

BatchNorm is evaluated with its running statistics, re-estimated (update_bn, batches of 128, no labels) on the first
16, 128, 1,024 or all 10,000 of the same shift's validation digits (the last 10,000 training digits: trained on in
their clean form, never scored), and with each test batch of 128's statistics; LN and GN as they are. The family
"drift" is the 14 primary comparisons at full severity (BN running, and BN re-estimated on 10,000, against LN, for
each shift), each an exact sign-flip test on counts of correct digits; everything else is secondary.
"""

from statistics import mean

import records
import store
import training
from experiments import main, primary, runner, shift

NAME = "drift"
SHOWS = "drift on fresh models (seeds 11-22): seven shifts, BN running, re-estimated and per batch against LN and GN"
SEEDS = tuple(range(11, 23))
OVERRIDES: dict = {}
SHIFTS = shift.SHIFTS + shift.MORE_SHIFTS  # feasibility.SHIFTS, the declared ones (a test holds them equal)
SEVERITIES = shift.SEVERITIES
ADAPT = (16, 128, 1024, 10_000)  # unlabelled shifted validation digits BatchNorm re-estimates on
RUNNING, ADAPTED, PER_BATCH = "BN running", "BN re-estimated", "BN per test batch"
WAYS = (RUNNING, *(f"{ADAPTED} on {n:,}" for n in ADAPT), PER_BATCH, "LN", "GN")
PRIMARY_WAYS = {RUNNING: RUNNING, ADAPTED: f"{ADAPTED} on {ADAPT[-1]:,}"}  # the declared label -> its way here
IN_WORDS = {RUNNING: "BatchNorm with its running statistics (BN running)",
            ADAPTED: f"BatchNorm with statistics re-estimated on {ADAPT[-1]:,} unlabelled shifted digits (BN re-estimated)"}


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    return [r for r in main.runs(settings, seeds) if r["variant"] in ("BN", "LN", "GN")]


def evaluate(models: dict[str, list], images, labels, validation, batch: int) -> dict[str, list]:
    """Each way's (accuracy, predictions) per model on `images`; `validation` are the same shift's validation digits."""
    bn = models["BN"]
    out = {RUNNING: [runner.accuracy(m, images, labels) for m in bn]}
    for n in ADAPT:
        out[f"{ADAPTED} on {n:,}"] = [runner.accuracy(runner.recomputed_statistics(m, validation[:n], batch), images, labels)
                                      for m in bn]
    out[PER_BATCH] = [runner.batch_statistics(m, batch, images, labels) for m in bn]
    out.update({norm: [runner.accuracy(m, images, labels) for m in models[norm]] for norm in ("LN", "GN")})
    return out


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    _, held = training.loaders(trained[0]["spec"], "cpu")
    _, validation = training.loaders(dict(trained[0]["spec"], split="validation"), "cpu")
    models = {v: [runs_store.model(r["spec"]) for r in sorted((r for r in trained if r["variant"] == v),
                                                                key=lambda r: r["seed"])] for v in ("BN", "LN", "GN")}
    conditions = [("none", 0.0)] + [(s, v) for s in SHIFTS for v in SEVERITIES]
    rows = []
    for name, severity in runner.progress(conditions, f"shifts evaluated on {sum(map(len, models.values()))} stored models"):
        result = evaluate(models, shift.shifted(held.images, name, severity), held.labels,
                          shift.shifted(validation.images, name, severity), settings["BATCH_SIZE"])
        clean = result if name == "none" else clean
        acc = {w: [a for a, _ in result[w]] for w in WAYS}
        changed = {w: max(int((p != p0).sum()) for (_, p), (_, p0) in zip(result[w], clean[w])) for w in WAYS}
        rows.append(dict(shift=name, severity=severity, acc=acc, changed=changed))
    full = {row["shift"]: row for row in rows if row["severity"] == 1.0}
    tests = [primary.comparison(f"{label} - LN, {name}", full[name]["acc"][way], full[name]["acc"]["LN"],
                                "exact permutation")
             for name in SHIFTS for label, way in PRIMARY_WAYS.items()]
    secondary = [primary.comparison(f"{way} - {norm}, {row['shift']} at {shift.severity(row['severity'])}",
                                    row["acc"][way], row["acc"][norm])
                 for row in rows[1:] for way in (RUNNING, PRIMARY_WAYS[ADAPTED], PER_BATCH) for norm in ("LN", "GN")
                 if not (row["severity"] == 1.0 and norm == "LN" and way in PRIMARY_WAYS.values())]
    return dict(rows=rows, seeds=len(models["BN"]), ways=list(WAYS), primary=primary.decide("drift", tests),
                secondary=secondary)


def figure(results: dict):
    """Test error (mean over seeds, log scale) of each way against severity, one panel per shift; the worst seed's
    error as a faint line of the same colour."""
    summary = results["summary"]
    fig, axes = shift.severity_panels(summary["rows"], SHIFTS, summary["ways"],
                                      lambda row, way: 100 - sum(row["acc"][way]) / len(row["acc"][way]),
                                      lambda row, way: 100 - min(row["acc"][way]), width=20)
    axes[0].set_ylabel("test error (%): mean (marked), worst seed (faint)")
    fig.suptitle(f"Shifted test digits, fresh models ({summary['seeds']} seeds each)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8)
    fig.subplots_adjust(bottom=0.3, top=0.85)
    return fig


def tables(results: dict) -> list[str]:
    """Every way's mean and worst seed at every shift and severity (with the most predictions any model changes
    against the clean digits: 0 is invariant), then the primary tests, then the secondary comparisons."""
    summary = results["summary"]
    means = [[row["shift"], shift.severity(row["severity"])]
             + [f"{sum(a) / len(a):.2f} / {min(a):.2f} ({row['changed'][w]})" for w, a in row["acc"].items()]
             for row in summary["rows"]]
    return [records.markdown_table(["shift", "severity"] + [f"{w}: mean / worst seed (%) (most predictions changed)"
                                                            for w in summary["ways"]], means),
            primary.primary_table("drift", summary["primary"]),
            primary.secondary_table(summary["secondary"])]


def by_way(summary: dict) -> dict[str, dict[str, list[dict]]]:
    """The primary tests of each declared way, sorted into those shown below LN, above it, and inconclusive."""
    out = {}
    for label in PRIMARY_WAYS:
        tests = [c for c in summary["primary"] if c["comparison"].startswith(f"{label} - LN")]
        shown = [c for c in tests if c["verdict"] == "differs"]
        out[label] = dict(below=[c for c in shown if c["difference"] < 0], above=[c for c in shown if c["difference"] > 0],
                          tests=tests)
    return out


def shift_of(c: dict) -> str:
    return c["comparison"].split(", ")[-1]


def against_ln(label: str, found: dict[str, list[dict]], named: str | None = None) -> str:
    """One way's primary verdicts in words: under which shifts it is shown below or above LN, by how much; the way
    called `named` where given, else by its label."""
    n = len(found["tests"])
    listed = lambda tests: ", ".join(f"{shift_of(c)} {c['difference']:+.1f}" for c in tests)
    shown = ([f"below LN under {len(found['below'])} of {n} shifts ({listed(found['below'])} points)"] if found["below"] else []) \
        + ([f"above LN under {len(found['above'])} of {n} ({listed(found['above'])})"] if found["above"] else [])
    named = named or label
    if not shown:
        return f"{named} is not shown to differ from LN under any of the {n} shifts"
    rest = n - len(found["below"]) - len(found["above"])
    return f"{named} is shown " + " and ".join(shown) + (f", inconclusive under the other {rest}" if rest else "")


def over_shifts(rows: list[dict], way: str) -> list[float]:
    """Each seed's accuracy under `way`, averaged over the shifts of `rows`."""
    return [mean(seed) for seed in zip(*(row["acc"][way] for row in rows), strict=True)]


def headline(results: dict) -> str:
    summary = results["summary"]
    full = [row for row in summary["rows"] if row["severity"] == 1.0]
    worst = min(full, key=lambda row: mean(row["acc"][RUNNING]))
    adapt = [over_shifts(full, f"{ADAPTED} on {n:,}") for n in ADAPT]
    ln = over_shifts(full, "LN")
    return (f"**Drifting test digits.** On {summary['seeds']} fresh models per norm, at full severity of {len(full)} "
            "shifts (exact sign-flip tests on counts of correct digits): "
            + "; ".join(against_ln(label, found, IN_WORDS[label]) for label, found in by_way(summary).items())
            + f". Worst case: under the {worst['shift']} shift, BN running keeps {mean(worst['acc'][RUNNING]):.1f}% (worst seed "
            f"{min(worst['acc'][RUNNING]):.1f}%) where LN keeps {mean(worst['acc']['LN']):.1f}% (worst seed "
            f"{min(worst['acc']['LN']):.1f}%). Exploratory: averaged over the {len(full)} shifts, BN re-estimated on "
            f"{' / '.join(f'{n:,}' for n in ADAPT)} unlabelled shifted digits reaches "
            f"{' / '.join(f'{mean(a):.1f}%' for a in adapt)} (worst seed {' / '.join(f'{min(a):.1f}%' for a in adapt)}), "
            f"LN {mean(ln):.1f}% (worst seed {min(ln):.1f}%).")


def pick(results: dict) -> dict:
    ways = by_way(results["summary"])
    running, adapted = ways[RUNNING], ways[ADAPTED]
    n = len(running["tests"])
    parts = ([f"LayerNorm rather than BatchNorm with its running statistics (shown below LN under "
              f"{len(running['below'])} of {n} shifts)"] if running["below"] else [])
    parts += ([f"BatchNorm with statistics re-estimated on unlabelled shifted digits (shown above LN under "
               f"{len(adapted['above'])} of {n})"] if adapted["above"] else [])
    return dict(situation=f"Test digits that drift ({n} shifts, fresh models)", pick="; ".join(parts) or "none is shown better",
                why="; ".join(against_ln(label, found) for label, found in ways.items()) + " (exact tests, Holm within the family)",
                norms="BLG")
