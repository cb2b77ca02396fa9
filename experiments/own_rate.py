"""The main comparison at each norm's own learning rate (PROTOCOL.md B): BN, BN + L1, LN and GN, ten seeds each, the
notebook's recipe except the OneCycle peak rate, which is each variant's best on validation (experiment lr), on the
test digits. The same tables, tests and figure as the main comparison at the shared rate, which stays beside it.
"""

import statistics

import records
import training
from checks import NORM_NAMES
from experiments import main, runner

NAME = "own_rate"
SHOWS = "BN, BN + L1, LN and GN each at its own peak learning rate (chosen on validation), ten seeds"  # its line in python -m experiments --help
SEEDS = tuple(range(1, 11))
OVERRIDES: dict = {}  # the notebook's settings, but for each variant's peak rate
# each variant's best peak rate on validation over seeds 1-5 (results/lr.json's "best"; a test holds them equal)
RATES = {"BN": 0.04, "BN+L1": 0.01, "LN": 0.08, "GN": 0.04}


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    """main.runs's order (seed by seed, BN + L1 last), each variant at its own rate."""
    chosen = main.variants(settings)
    return [dict(r, max_lr=RATES[r["variant"]], spec=training.run_spec(settings, seed=r["seed"],
                                                                      max_lr=RATES[r["variant"]], **chosen[r["variant"]]))
            for r in main.runs(settings, seeds)]


summarise, figure, tables = main.summarise, main.figure, main.tables


def blocks(results: dict, found: list[dict]) -> dict[str, str]:
    """The README's first table (rates_table): each variant at the shared rate and at its own, its mean and lowest
    seed, and the accuracy goal met or not at each (PROTOCOL.md B)."""
    if "main" not in results or "own_rate" not in results:
        return {"rates_table": runner.not_yet("own_rate")}
    settings, rows = results["main"]["settings"], []
    for variant in results["main"]["summary"]["variants"]:
        spec = main.variants(settings)[variant]
        words = NORM_NAMES[spec["norm"]] + (" + L1" if spec.get("l1_lambda") else "") + (
            f", {settings['GROUPS']} groups" if spec["norm"] == "G" else "")
        row = [f"{variant} ({words})"]
        for result in (results["main"], results["own_rate"]):
            acc = main.accuracies(result, variant)
            row += [f"{statistics.mean(acc.values()):.2f}", f"{min(acc.values()):.2f}", main.goal_met(acc)]
        rows.append(row[:4] + [f"{RATES[variant]:g}"] + row[4:])
    return {"rates_table": records.markdown_table(
        ["variant", f"shared rate {settings['MAX_LR']:g}: mean (%)", "lowest seed (%)", "goal", "own rate", "mean (%)",
         "lowest seed (%)", "goal"], rows)}
