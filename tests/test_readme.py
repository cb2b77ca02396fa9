"""README.md and STUDY.md carry their numbers in generated blocks, written by experiments/report.py from the committed
results: each block must be as generated, and what the documents show must be committed."""

import copy
import importlib
import json
import re
import shutil

import pytest

import publish
import records
from conftest import ROAD, ROOT, below_the_rest, drift_results, summarised
from experiments import EXPERIMENTS, REGISTRY, ghost_stats, main, report

GENERATED = report.blocks()
RESULTS = report.load()
FOUND = report.study.rows(RESULTS)


def results_and_rows() -> tuple[dict, list[dict]]:
    """The committed results and the study table's rows, a fresh copy each (tests change verdicts in them)."""
    return copy.deepcopy(RESULTS), copy.deepcopy(FOUND)
DOCUMENTS = {name: (ROOT / name).read_text() for name in records.DOCUMENTS}


@pytest.mark.parametrize("name", records.DOCUMENTS)
def test_generated_blocks_are_as_generated(name):
    # fails when a result, the code or a generator changed without `python -m experiments.report`
    assert records.render(DOCUMENTS[name], GENERATED) == DOCUMENTS[name]


def test_every_generated_block_is_shown_and_every_shown_block_is_known():
    shown = [m.group(2) for text in DOCUMENTS.values() for m in records.BLOCK.finditer(text)]
    assert sorted(shown) == sorted(set(shown)) and set(shown) == set(GENERATED)


def test_render_replaces_a_block_and_refuses_an_unknown_one_unless_partial():
    text = "a\n<!-- generated: x -->\nold\n<!-- /generated -->\nb"
    assert records.render(text, {"x": "new"}) == "a\n<!-- generated: x -->\nnew\n<!-- /generated -->\nb"
    with pytest.raises(ValueError, match="'x'"):
        records.render(text, {"y": "new"})
    assert records.render(text, {"y": "new"}, partial=True) == text


def test_generated_sentences_state_the_settings_their_results_record():
    results = report.load()
    history = {name: {**entry, "settings": {**entry["settings"], "SEED": 7}} for name, entry in results["history"].items()}
    assert "In the committed notebook run (seed 7) " in records.notebook_blocks(history)["notebook_run"]
    batch_64 = {**results["main"], "settings": {**results["main"]["settings"], "BATCH_SIZE": 64}}
    assert main.blocks({**results, "main": batch_64}, [])["headline"].startswith("With batches of 64 images, ")


def test_worked_example_prose_matches_the_code():
    assert records.worked_example_table() in DOCUMENTS["STUDY.md"]
    assert "0.957" in DOCUMENTS["STUDY.md"]  # population std of 2, 3, 0, 1, 1, 2: BN's first channel


def test_the_file_tables_notebook_road_is_the_notebooks_imports():
    road = DOCUMENTS["README.md"].split("**The notebook's road**", 1)[1].split("**The research road**", 1)[0]
    assert set(re.findall(r"^\| `(\w+)\.py` \|", road, re.M)) == ROAD


def test_every_figure_the_documents_show_is_committed_and_shown():
    shown = {p for text in DOCUMENTS.values() for p in re.findall(r"\]\((Images/[^)]+\.png)\)", text)}
    assert shown == {f"Images/{p.name}" for p in (ROOT / "Images").glob("*.png")}


def test_committed_notebook_shows_its_run():
    notebook = json.loads((ROOT / "S6_Normalization.ipynb").read_text())
    outputs = [o for c in notebook["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 8  # 2 comparisons, 3 curves, 3 grids
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert not any(o.get("name") == "stderr" for o in outputs)
    assert records.results_table(records.load_history(ROOT / "results" / "history.json")) in "".join(
        "".join(o["data"]["text/markdown"]) for o in outputs if "text/markdown" in o.get("data", {}))


@pytest.mark.slow  # copies the repository and regenerates both documents: about 15 s
def test_a_published_full_run_brings_its_numbers_into_the_documents(tmp_path):
    """Command one (a full run publishes) then command two (these tests) is green: publishing rewrites the generated
    blocks from the new history in the same step, so the documents match the results they sit beside. Every number of
    the history changes, so a block that reads it but is not the notebook's (records.notebook_blocks: the only ones
    publishing rewrites) would be left as it was, and fail here."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "runs", "__pycache__", ".pytest_cache", "data"))
    runs = records.load_history(ROOT / "results" / "history.json")
    runs["LN"]["history"][-1]["test_acc"] = 99.01  # a new run, as it might end on another machine
    for run in runs.values():
        run.update(params=run["params"] + 1, environment={**run["environment"], "threads": 3})
        for epoch in run["history"]:
            epoch["seconds"] *= 2
    run_dir = tmp_path / "run"
    records.write_json(run_dir / "results" / "history.json", runs)
    shutil.copytree(ROOT / "Images", run_dir / "Images")
    published = publish.publish(run_dir, copy, {name: run["history"] for name, run in runs.items()})
    assert {copy / "README.md", copy / "STUDY.md", copy / "results" / "history.json"} <= set(published)
    generated = report.blocks(report.load(copy))
    for name in records.DOCUMENTS:
        text = (copy / name).read_text()
        assert records.render(text, generated) == text
    assert "LayerNorm at 99.01%" in (copy / "STUDY.md").read_text()


def test_ghost_mechanism_is_stated_only_where_the_tests_support_it():
    results = json.loads((ROOT / "results" / "ghost_stats.json").read_text())
    one = next(row for row in results["summary"]["rows"] if row["k"] == 1)["against"]
    one["statistics of k test digits"].update(verdict="differs", difference=76.0, ci=[45.0, 107.0])
    for way in ("recomputed in groups of k", "recomputed over whole batches"):
        one[way].update(ci=[-6.0, 6.5])
    supported = ghost_stats.blocks(dict(ghost_stats=results), [])["ghost_mechanism"]
    assert "need each test digit normalised by its own statistics" in supported and "+6.5 points at most" in supported
    one["recomputed over whole batches"]["ci"] = [-6.0, 50.0]  # might restore most of the way: no mechanism
    assert "the mechanism is left open" in ghost_stats.blocks(dict(ghost_stats=results), [])["ghost_mechanism"]
    one["recomputed over whole batches"]["ci"] = [-6.0, 6.5]
    one["statistics of k test digits"]["verdict"] = "inconclusive"
    assert "the mechanism is left open" in ghost_stats.blocks(dict(ghost_stats=results), [])["ghost_mechanism"]


def test_the_replication_table_agrees_with_the_main_summary():
    """Seeds 1-10 in the replication table are the main comparison's means; the goal follows from the seeds."""
    committed = json.loads((ROOT / "results" / "main.json").read_text())
    lines = GENERATED["main_replication"].splitlines()[2:]
    assert len(lines) == len(committed["summary"]["variants"])
    for line, (variant, summary) in zip(lines, committed["summary"]["variants"].items()):
        cells = [c.strip() for c in line.strip("|").split("|")]
        acc = [r["test_acc"] for r in committed["runs"] if r["variant"] == variant]
        assert cells[0] == variant and cells[3] == f"{summary['mean']:.2f}" and cells[4] == f"{min(acc):.2f}"
        assert cells[5] == ("met" if summary["mean"] >= 99.55 and min(acc) >= 99.50 else "not met")


def test_the_headline_says_each_pairs_study_wide_verdict_in_words():
    r, found = results_and_rows()
    shared = [row for row in found if row["family"] == "main (pairs)"]
    kinds = [row["study_verdict"].split()[0] for row in shared]
    headline = main.blocks(r, found)["headline"]
    assert f"the other {kinds.count('inconclusive')} pairs are inconclusive" in headline
    for row in shared:
        row["study_verdict"] = "inconclusive"
    shared[0]["study_verdict"], shared[1]["study_verdict"] = "differs", "equivalent within +-0.10"
    pair = lambda row: row["comparison"].replace(" - ", " and ")
    headline = main.blocks(r, found)["headline"]
    assert (f"at the shared rate, {pair(shared[1])} are shown equivalent, {pair(shared[0])} are shown to differ, and "
            f"the other {len(shared) - 2} pairs are inconclusive") in headline
    assert "Equivalent within +-0.10 points means the 90% interval" in headline


def test_the_accuracy_goal_needs_the_mean_and_every_seed():
    assert main.goal_met({1: 99.55, 2: 99.55}) == "met"
    assert main.goal_met({1: 99.62, 2: 99.49}) == "not met"  # mean 99.555, one seed below 99.50
    assert main.goal_met({1: 99.54, 2: 99.54}) == "not met"


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


HEADINGS = {anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", DOCUMENTS["STUDY.md"], re.M)}


def test_every_link_into_study_md_lands_on_a_heading():
    links = re.findall(r"\]\(STUDY\.md#([^)]+)\)", DOCUMENTS["README.md"])
    assert links and set(links) <= HEADINGS, set(links) - HEADINGS


def test_every_experiments_section_is_a_heading_of_study_md():
    missing = {name: entry.section for name, entry in REGISTRY.items() if entry.section not in HEADINGS}
    assert not missing, missing


def test_the_pick_table_states_the_study_wide_verdict_not_the_family_one():
    r, found = results_and_rows()
    k2 = next(row for row in found if row["family"] == "norm_batch" and row["comparison"] == "k = 2 - whole batch")
    assert f"below the whole batch ({k2['study_verdict']})" in report.pick(r, found)
    k2["study_verdict"] = "inconclusive"  # as if the study-wide correction had not kept it
    assert "below the whole batch (inconclusive)" in report.pick(r, found)


@pytest.mark.parametrize("situation,family,comparison", [
    ("One or two images", "norm_batch", "k = 2 - whole batch"),
    ("How many groups", "gn_groups", "1 per channel (InstanceNorm) - 2 groups"),
    ("How many groups", "gn_groups", "4 groups - 2 groups"),
    ("L1 on BatchNorm", "main (pairs)", "BN - BN+L1"),
    ("BatchNorm at test time", "bn_test", "BN: recomputed - running statistics")])
def test_each_pick_row_quotes_the_study_wide_verdict_it_rests_on(situation, family, comparison):
    r, found = results_and_rows()
    row = next(row for row in found if (row["family"], row["comparison"]) == (family, comparison))
    row["study_verdict"] = "SOME-OTHER-VERDICT"
    line = next(line for line in report.pick(r, found).splitlines() if line.startswith(f"| {situation}"))
    assert "SOME-OTHER-VERDICT" in line


def test_the_first_pick_row_names_exactly_the_pairs_shown_equivalent_study_wide():
    r, found = results_and_rows()
    line = lambda: next(line for line in report.pick(r, found).splitlines() if line.startswith("| Batches of about"))
    assert "shown equivalent within +-0.10: BN and LN at their own rates;" in line()
    next(row for row in found if (row["family"], row["comparison"]) == ("main (pairs)", "LN - GN"))["study_verdict"] = \
        "equivalent within +-0.10"
    assert "shown equivalent within +-0.10: LN and GN at the shared rate, BN and LN at their own rates;" in line()


def test_the_pick_table_takes_protocol2s_rows_and_drifts_replaces_protocol1s():
    results, found = results_and_rows()
    results.update(drift=drift_results(-30.0, 2.0), no_norm=summarised("no_norm", below_the_rest("N")))
    table = report.pick(results, found)
    assert "| Whether to normalise at all" in table and "| Test digits that drift (7 shifts, fresh models)" in table
    assert "declared rank test" not in table  # Protocol 1's drift row, whose test could not conclude, gives way
    assert "no normalisation 3.2 / 7.4 / 25.6" in table  # the no-normalisation row's cost names it too


def test_the_still_training_line_names_protocol1s_rows_for_what_is_still_training_only():
    results, _ = results_and_rows()
    for name in ("drift", "real_batch"):
        results.pop(name, None)
    line = lambda: next(x for x in report.protocol2_headline(results)["protocol2_headline"].splitlines()
                        if x.startswith("- **Still training:**"))
    assert "Until they are in, Protocol 1's rows on ghost batches and drift, in the table below, say" in line()
    results["drift"] = drift_results(-30.0, 2.0)
    assert "Until it is in, Protocol 1's row on ghost batches, in the table below, says" in line()
    assert "drift" not in line().split("Until")[1]


def test_the_pick_table_takes_a_row_from_every_experiment_that_gives_one():
    gives = [name for name in EXPERIMENTS if hasattr(importlib.import_module(f"experiments.{name}"), "pick")]
    assert sorted(report.PICK) == sorted(gives)


def test_the_compute_table_counts_committed_runs_only(monkeypatch):
    """Runs training into the store (untracked files) leave the documents as they are until they are committed."""
    held = report.committed_runs()
    assert held and all((ROOT / "results" / "runs" / name).is_file() for name in held)
    total = lambda: int(report.compute_table().splitlines()[-1].split(" | ")[2])
    before = total()
    monkeypatch.setattr(report, "committed_runs", lambda: held - {next(p.name for p in sorted(
        (ROOT / "results" / "runs").glob("N-seed1-test-*.safetensors")))})
    assert total() == before - 1


def test_a_missing_runs_time_is_estimated_from_the_stored_runs_of_its_kind():
    """A batch of 8 costs several times a batch of 128: a missing run takes the mean of its kind (split, batch,
    training digits), then of its split, then of all."""
    spec = lambda split, batch, limit=None: dict(split=split, batch_size=batch, train_limit=limit)
    specs = {"a": spec("test", 128), "b": spec("test", 8), "c": spec("test", 8), "d": spec("validation", 128)}
    estimate = report.estimator({"a": 300.0, "b": 700.0, "c": 900.0}, specs)
    assert estimate("c", specs["c"]) == 900.0  # its own
    assert estimate("x", spec("test", 8)) == 800.0  # its kind
    assert estimate("x", spec("test", 8, 5000)) == estimate("x", spec("test", 32)) == pytest.approx(1900 / 3)  # its split
    assert estimate("x", spec("validation", 128)) == pytest.approx(1900 / 3)  # none of its split held: all


def test_no_equivalence_stands_where_the_bootstrap_cannot_be_drawn():
    """PROTOCOL.md's "equivalent" needs the digit-level bootstrap: times to a target (epochs) and ghost_stats's
    test-time ways (predictions not kept) have none, so their sections read as the study table does, never twice."""
    from experiments import ghost_stats, main

    r, found = results_and_rows()
    said = [main.tables(r[name])[-1] for name in ("main", "own_rate")] + ghost_stats.tables(r["ghost_stats"]) \
        + [ghost_stats.blocks(r, found)["ghost_mechanism"]]
    assert all("equivalent" not in text for text in said) and all("inconclusive (bootstrap)" in text for text in said)
    bootstrapless = [row for row in found if row["bootstrap"] == "not available" and row["tests"]]
    assert bootstrapless and all(not row["family_verdict"].startswith("equivalent") for row in bootstrapless)
