"""The machinery the experiments share (experiments/runner.py), their own rules, and each experiment run end to end
in its quick mode; their statistics are tested in tests/test_stats.py."""

import contextlib
import fnmatch
import importlib
import inspect
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import MNIST_ROOT, ROOT, needs_mnist
import settings
import store
import training
from experiments import DECLARED, EXPERIMENTS, PROTOCOL2, REGISTRY, VERDICTS, main, runner, shift
from experiments.interface import Answer, Experiment, Words


def test_an_experiment_starts_from_the_study_settings():
    assert runner.settings_for(False) == settings.defaults()
    assert runner.settings_for(True, EPOCHS=2)["EPOCHS"] == runner.QUICK["EPOCHS"]  # --quick wins
    assert runner.settings_for(False, EPOCHS=2)["EPOCHS"] == 2


# experiments/interface.py's Experiment, by kind: each constant's type, and the functions, whose parameters the test
# reads from the interface itself
CONSTANTS = {"NAME": str, "SHOWS": str, "SEEDS": tuple, "OVERRIDES": dict}
FUNCTIONS = ("runs", "summarise", "figure", "tables")


def test_the_interface_declares_what_its_test_checks():
    assert Experiment.__annotations__.keys() == CONSTANTS.keys()
    assert {name for name, value in vars(Experiment).items() if inspect.isfunction(value) and not name.startswith("_")} \
        == set(FUNCTIONS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_module_is_an_experiment(name):
    module = importlib.import_module(f"experiments.{name}")
    for constant, kind in CONSTANTS.items():
        assert isinstance(getattr(module, constant, None), kind), f"{name}.{constant} is not a {kind.__name__}"
    assert module.NAME == name and module.SHOWS and module.SEEDS
    assert all(type(seed) is int for seed in module.SEEDS) and set(module.OVERRIDES) <= set(settings.SETTINGS)
    for function in FUNCTIONS:
        assert follows(module, Experiment, function), \
            f"{name}.{function} is not {function}({', '.join(declared(Experiment, function))})"


def declared(interface: type, function: str) -> list[str]:
    """The parameters an interface of experiments/interface.py declares for `function`, less self."""
    return list(inspect.signature(getattr(interface, function)).parameters)[1:]


def follows(module, interface: type, function: str) -> bool:
    """Whether `module` gives `function` with the parameters `interface` declares."""
    found = getattr(module, function, None)
    return callable(found) and list(inspect.signature(found).parameters) == declared(interface, function)


def test_the_registry_names_each_experiment_once_for_every_reader():
    assert sorted(VERDICTS) == sorted(name for name, entry in REGISTRY.items() if entry.protocol == 1)
    assert set(DECLARED) <= set(REGISTRY) and {entry.protocol for entry in REGISTRY.values()} == {1, 2}


def test_no_experiment_module_reads_as_a_test_file(pytestconfig):
    # pytest's default python_files would take experiments/bn_test.py for a test module
    patterns = pytestconfig.getini("python_files")
    assert not [name for name in EXPERIMENTS if any(fnmatch.fnmatch(f"{name}.py", p) for p in patterns)]


@pytest.mark.parametrize("name", PROTOCOL2)
def test_every_protocol2_experiment_answers_in_the_readmes_words(name):
    module = importlib.import_module(f"experiments.{name}")
    for function in ("headline", "pick"):
        assert follows(module, Answer, function), f"{name}.{function}"


@pytest.mark.parametrize("name", VERDICTS)
def test_protocol1_words_beside_the_tables_follow_the_interface(name):
    module = importlib.import_module(f"experiments.{name}")
    for function in ("blocks", "pick"):
        assert not hasattr(module, function) or follows(module, Words, function), f"{name}.{function}"

def test_a_table_prints_a_p_value_to_three_decimals():
    assert runner.p_value(None) == "-" and runner.p_value(0.0004) == "< 0.001" and runner.p_value(0.25) == "0.250"


def test_time_to_target_is_the_first_epoch_that_reaches_it():
    history = [dict(epoch=1, test_acc=98.0), dict(epoch=2, test_acc=99.1), dict(epoch=3, test_acc=98.9),
               dict(epoch=4, test_acc=99.5)]
    assert main.time_to(history, 99.0) == 2
    assert main.time_to(history, 99.4) == 4
    assert main.time_to(history, 99.9) is None


def test_each_shift_grows_with_its_severity_and_is_the_old_shift_at_severity_one():
    import data
    torch = pytest.importorskip("torch")
    pixels = torch.zeros(1, 1, 28, 28)
    pixels[0, 0, 10:18, 13:15] = 1.0  # a stroke two pixels wide
    images = (pixels - data.MNIST_MEAN) / data.MNIST_STD
    back = lambda x: x * data.MNIST_STD + data.MNIST_MEAN
    assert torch.allclose(back(shift.shifted(images, "contrast", 1.0)), pixels * 0.5, atol=1e-6)
    assert torch.allclose(back(shift.shifted(images, "background", 1.0)), 0.3 + 0.7 * pixels, atol=1e-6)
    for name in shift.SHIFTS:
        assert torch.allclose(shift.shifted(images, name, 0.0), images, atol=1e-6)  # severity 0: no change
        moved = [float((back(shift.shifted(images, name, s)) - pixels).abs().sum()) for s in shift.SEVERITIES]
        assert 0 < moved[0] < moved[1] < moved[2], name
    thick, thin = (back(shift.shifted(images, n, 1.0)) for n in ("thicker strokes", "thinner strokes"))
    assert thick.sum() == 10 * 4  # the 8 x 2 stroke dilated to 10 x 4
    assert thin.sum() == 0  # and eroded away


def test_the_drift_verdict_needs_both_tests_after_holm():
    a, b = dict(p=0.001, p_wilcoxon=0.002), dict(p=0.001, p_wilcoxon=0.2)
    shift.verdicts([a, b])
    assert (a["verdict"], b["verdict"]) == ("differs", "inconclusive")
    assert a["p_holm"] == pytest.approx(0.002) and b["p_wilcoxon_holm"] == pytest.approx(0.2)


def test_lr_compares_each_variant_s_best_rate_with_the_shared_one_and_not_the_shared_with_itself():
    from experiments import lr
    shared = settings.defaults()["MAX_LR"]
    acc = {("BN", 0.005): [99.3, 99.3], ("BN", 0.01): [99.3, 99.4], ("BN", 0.02): [99.5, 99.5],  # BN's best is shared
           ("BN", 0.04): [99.4, 99.4], ("BN", 0.08): [99.2, 99.3], ("LN", 0.01): [99.0, 99.1], ("LN", 0.02): [99.2, 99.3],
           ("LN", 0.04): [99.6, 99.6], ("LN", 0.08): [99.5, 99.4], ("LN", 0.16): [99.3, 99.2]}
    runs = [dict(variant=v, max_lr=rate, seed=seed, record=dict(history=[dict(test_acc=a)]))
            for (v, rate), values in acc.items() for seed, a in zip((1, 2), values)]
    s = lr.summarise(runs, dict(MAX_LR=shared), None)
    assert shared == 0.02 and s["variants"]["BN"]["best"] == 0.02 and s["variants"]["BN"]["best_vs_shared"] is None
    ln = s["variants"]["LN"]["best_vs_shared"]
    assert s["variants"]["LN"]["best"] == 0.04 and ln["difference"] == pytest.approx(0.35) and ln["p_holm"] == ln["p"]
    table = lr.tables(dict(summary=s))[0]
    assert "| BN | 99.30 | 99.35 | 99.50 | 99.40 | 99.25 | - | 0.02 | - | - | the shared rate is its best |" in table
    assert "| LN | - | 99.05 | 99.25 | 99.60 | 99.45 | 99.25 | 0.04 |" in table


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """Every experiment's --quick run, in this process, all on one store: a run two experiments share trains once."""
    root = tmp_path_factory.mktemp("quick")
    os.environ.setdefault("MNIST_ROOT", str(MNIST_ROOT))
    results, printed = {}, {}
    for name in EXPERIMENTS:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            results[name] = runner.execute(importlib.import_module(f"experiments.{name}"), True, 2, root / "out",
                                           root / "store")
        printed[name] = out.getvalue()
    return results, root, printed


def test_a_long_evaluation_says_how_long_it_will_take_after_its_first_item(monkeypatch, capsys):
    now = [0.0]
    monkeypatch.setattr(runner, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    items = runner.progress(["none", "contrast", "noise"], "shifts evaluated on 30 stored models")
    next(items)
    now[0] += 40.0  # the first condition's evaluations took 40 s
    next(items)
    assert capsys.readouterr().out == ("shifts evaluated on 30 stored models 1/3, 40 s\n"
                                       "shifts evaluated on 30 stored models: 3 in all, about 2.0 minutes at the first's pace\n")
    assert list(items) == ["noise"]  # the estimate once, not after every item
    assert capsys.readouterr().out == ("shifts evaluated on 30 stored models 2/3, 40 s\n"
                                       "shifts evaluated on 30 stored models 3/3, 40 s\n")


@pytest.mark.slow
@needs_mnist
@pytest.mark.parametrize("name, line", [("bn_test", r"BN: stored models evaluated at test time 1/1, \d+ s"),
                                        ("shift", r"shifts evaluated on 3 stored models 16/16, \d+ s"),
                                        ("ghost_stats", r"ghost-batch sizes evaluated four ways 2/2, \d+ s")])
def test_evaluations_of_stored_models_say_how_far_they_are_and_how_long_they_took(quick_results, name, line):
    printed = quick_results[2][name]
    assert re.search(line, printed) and re.search(rf"{name}: summarised in \d+ s", printed)


@pytest.mark.slow
@needs_mnist
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_quick_run_writes_its_json_and_figure(quick_results, name):
    results, root, _ = quick_results
    assert json.loads((root / "out" / "results" / f"{name}.json").read_text()) == results[name]
    assert (root / "out" / "Images" / f"{name}.png").stat().st_size > 0
    assert results[name]["experiment"] == name and results[name]["settings"]["EPOCHS"] == runner.QUICK["EPOCHS"]
    assert {"torch", "python", "device", "threads", "git_commit"} <= set(results[name]["environment"])
    assert results[name]["runs"] and all(r["git_commit"] and (root / "store" / f"{r['key']}.safetensors").exists()
                                         for r in results[name]["runs"])
    assert all(table.startswith("| ") for table in importlib.import_module(f"experiments.{name}").tables(results[name]))


@pytest.mark.slow
@needs_mnist
def test_quick_cli_run_writes_under_runs_and_never_touches_committed_files(tmp_path):
    copy = tmp_path / "repo"  # the working tree, without its own runs/
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "runs", "__pycache__", ".pytest_cache", "data"))
    committed = {p: p.read_bytes() for folder in ("results", "Images") for p in (copy / folder).rglob("*") if p.is_file()}
    subprocess.run([sys.executable, "-m", "experiments", "gn_groups", "--quick"], cwd=copy, check=True, timeout=600,
                   env={**os.environ, "MNIST_ROOT": str(MNIST_ROOT)})
    quick = copy / "runs" / "quick"
    assert (quick / "results" / "gn_groups.json").exists() and (quick / "Images" / "gn_groups.png").exists()
    assert list((quick / "store").glob("*.safetensors"))
    assert {p: p.read_bytes() for p in committed} == committed
    assert not [p for folder in ("results", "Images") for p in (copy / folder).rglob("*") if p.is_file() and p not in committed]


@pytest.mark.parametrize("out_dir, store_dir", [(".", "runs/quick/store"), ("results", "runs/quick/store"),
                                                ("Images/x", "runs/quick/store"), ("link", "runs/quick/store"),
                                                ("runs/quick", "results/runs"), ("runs/quick", "link/results/runs")])
def test_quick_run_refuses_committed_places_before_anything(tmp_path, monkeypatch, out_dir, store_dir):
    from experiments import l1
    (tmp_path / "link").symlink_to(ROOT)  # the repository by another name
    place = lambda path: tmp_path / path if path.startswith("link") else ROOT / path
    monkeypatch.setattr(runner, "settings_for", lambda *a, **k: pytest.fail("got past the check of the places"))
    option = "--store" if store_dir.endswith("results/runs") else "--out-dir"
    with pytest.raises(ValueError, match=f"^--quick with {option} .*: that is (the repository root|in results/|in Images/)"):
        runner.execute(l1, True, 1, place(out_dir), place(store_dir))
    runner.check_places(False, ROOT, ROOT / "results" / "runs")  # the full study's places


@pytest.mark.parametrize("out_dir", ["results", "results/runs", "Images", "Images/x", "link/results", "link/Images"])
def test_a_full_run_and_replot_refuse_an_out_dir_in_the_committed_folders(tmp_path, monkeypatch, out_dir):
    from experiments import l1
    (tmp_path / "link").symlink_to(ROOT)  # the repository by another name
    path = tmp_path / out_dir if out_dir.startswith("link") else ROOT / out_dir
    monkeypatch.setattr(runner, "settings_for", lambda *a, **k: pytest.fail("execute got past the check of the places"))
    monkeypatch.setattr(runner, "load_results", lambda *a: pytest.fail("replot got past the check of the places"))
    for command in (lambda: runner.execute(l1, False, 1, path, store.STORE), lambda: runner.replot(l1, path)):
        with pytest.raises(ValueError, match=f"^--out-dir {re.escape(str(path))}: that is in (results|Images)/"):
            command()
    runner.check_places(False, tmp_path / "link", tmp_path / "link" / "results" / "runs")  # the full study's, by a link
    runner.check_places(False, tmp_path / "out", tmp_path / "store", keep=tmp_path / "kept")  # anywhere outside


@pytest.mark.parametrize("arguments, option", [(["--keep", "results/runs"], "--keep"), (["--keep", "link/results/runs"], "--keep"),
                                               (["--keep", "results/runs/x"], "--keep"), (["--out-dir", "Images"], "--out-dir")])
def test_verify_never_writes_into_the_committed_files(tmp_path, monkeypatch, arguments, option):
    from experiments import __main__ as cli, verify
    (tmp_path / "link").symlink_to(ROOT)
    place = tmp_path / arguments[1] if arguments[1].startswith("link") else ROOT / arguments[1]
    monkeypatch.setattr(verify, "main", lambda *a: pytest.fail("verify started with a committed place to write"))
    monkeypatch.setattr(sys, "argv", ["python -m experiments", "verify", "--store", str(tmp_path), arguments[0], str(place)])
    with pytest.raises(ValueError, match=f"^{option} {re.escape(str(place))}: that is in (results|Images)/"):
        cli.main()


def test_an_experiment_s_json_and_figure_are_replaced_together_or_not_at_all(tmp_path, monkeypatch, fake_experiment):
    out, store_dir = tmp_path / "out", tmp_path / "store"
    with contextlib.redirect_stdout(io.StringIO()):
        runner.execute(fake_experiment(1.0), False, 1, out, store_dir)
    files = [out / "results" / "fake.json", out / "Images" / "fake.png"]
    before = {path: path.read_bytes() for path in files}
    replace, replaced = Path.replace, []

    def fail_on_the_second(self, target):  # the JSON is in place, the figure's replacement fails
        replaced.append(target)
        if len(replaced) == 2:
            raise OSError("disk full")
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", fail_on_the_second)
    with pytest.raises(OSError, match="disk full"), contextlib.redirect_stdout(io.StringIO()):
        runner.execute(fake_experiment(2.0), False, 1, out, store_dir)
    assert replaced[:2] == files  # both were being replaced, the JSON first
    assert {path: path.read_bytes() for path in files} == before
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == [Path("Images/fake.png"), Path("results/fake.json")]


def test_a_misspelt_experiment_is_refused_at_once_naming_the_valid_ones(monkeypatch, capsys):
    from experiments import __main__ as cli
    monkeypatch.setattr(cli, "summary", lambda module: pytest.fail("runs counted before the arguments were parsed"))
    monkeypatch.setattr(sys, "argv", ["python -m experiments", "mian"])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    assert re.search(r"invalid choice: 'mian' \(choose from 'main', .*'scarce', 'verify'\)", capsys.readouterr().err)


@pytest.mark.slow  # a fresh Python that imports torch
def test_a_misspelt_experiment_is_refused_by_the_command_within_seconds():
    start = time.perf_counter()  # the whole command, imports and all, on a loaded machine
    refused = subprocess.run([sys.executable, "-m", "experiments", "mian"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert time.perf_counter() - start < 15 and refused.returncode == 2
    assert "invalid choice: 'mian'" in refused.stderr and "'own_rate'" in refused.stderr


def test_help_lists_each_experiment_with_its_stored_runs(monkeypatch, capsys):
    from experiments import __main__ as cli
    monkeypatch.setattr(sys, "argv", ["python -m experiments", "--help"])
    with pytest.raises(SystemExit):
        cli.main()
    listed = " ".join(capsys.readouterr().out.split())
    assert re.search(r" main BN, [^;]+; uses 40 runs of 20 epochs, \d+ of them stored own_rate ", listed)


def test_printed_tables_say_which_correction_their_verdicts_come_from(tmp_path, fake_experiment):
    corrected, plain = "| pair | p (Holm) | verdict |\n|---|---|---|\n| A - B | 0.010 | differs |", "| trend | p (uncorrected) |"
    experiment = fake_experiment(1.0, (corrected, plain))
    for command in (lambda: runner.execute(experiment, False, 1, tmp_path, tmp_path / "store"),
                    lambda: runner.replot(experiment, tmp_path)):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            command()
        assert f"{corrected}\n{runner.CORRECTION}\n\n{plain}\n" in out.getvalue()
        assert out.getvalue().count("verdicts above: Holm within their family") == 1
    assert "STUDY.md" in runner.CORRECTION and "not study-wide" in runner.CORRECTION


def test_notebook_l1_lambda_is_the_one_chosen_on_validation():
    results = json.loads((ROOT / "results" / "l1.json").read_text())
    assert results["settings"]["MAX_LR"] == settings.defaults()["MAX_LR"]
    assert results["summary"]["chosen"] == settings.defaults()["L1_LAMBDA"]


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"), ("{", "not valid JSON"), ('{"experiment": "main", "summary": {}, "settings": {}}',
                                                        "not the results of experiment 'l1'"), ("[1]", "not the results"),
    ('{"experiment": "l1", "summary": {"x": 1}, "settings": {}}', r"l1\.json holds results of experiment 'l1' that this "
                                                                 r"version cannot draw \(KeyError: 'rows'\)")])
def test_replot_names_a_missing_truncated_or_foreign_file(tmp_path, content, message):
    from experiments import l1
    path = tmp_path / "results" / "l1.json"
    if content is not None:
        path.parent.mkdir()
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        runner.replot(l1, tmp_path)
    assert not (tmp_path / "Images").exists()


def test_unreachable_scheduler_is_named():
    with pytest.raises(ValueError, match="no Dask scheduler answered"):
        with runner.executor(1, "tcp://127.0.0.1:9", timeout="1s"):
            pass


@pytest.mark.parametrize("address", ["", "tcp://", "127.0.0.1", "127.0.0.1:port", "http://127.0.0.1:8786", "tcp://:8786",
                                     "tcp://127.0.0.1:99999"])
def test_malformed_scheduler_is_named(address):
    with pytest.raises(ValueError, match=f"^--scheduler {address!r} is not a Dask scheduler address"):
        with runner.executor(1, address, timeout="1s"):
            pass


REMOTE = """import sys, cloudpickle
for name in ("experiments", "store", "training", "model", "utils", "data", "figures", "records", "settings"):
    sys.modules[name] = None  # a machine where this repository cannot be imported
print(repr(cloudpickle.loads(sys.stdin.buffer.read())()))"""


class Cluster:
    """A Dask client's stand-in: its scheduler runs the function sent in a fresh process that cannot import this
    repository; its workers answer `workers` ({address: what the function returned there})."""

    def __init__(self, workers: dict):
        self.workers = workers

    def run_on_scheduler(self, function):
        pytest.importorskip("cloudpickle")
        sent = __import__("cloudpickle").dumps(function)
        return eval(subprocess.run([sys.executable, "-c", REMOTE], input=sent, capture_output=True, check=True).stdout)

    def run(self, function):
        return self.workers


def test_a_cluster_that_cannot_train_this_repository_is_named_once():
    workers = {"tcp://10.0.0.2:40000": training.TRAINING_VERSION, "tcp://10.0.0.3:40000": training.TRAINING_VERSION + 1}
    with pytest.raises(ValueError, match=r"^--scheduler 'tcp://10\.0\.0\.1:8786': the cluster cannot train this "
                       r"repository's runs \(training version \d+\): the scheduler: ModuleNotFoundError: import of training "
                       r"halted; None in sys\.modules; worker tcp://10\.0\.0\.3:40000: training version \d+\. On every"):
        runner.check_cluster(Cluster(workers), "tcp://10.0.0.1:8786")


EXPERIMENT = """import signal, time
from experiments import runner
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal: a shell's background job ignores it
with runner.executor(2, None) as pool:
    runs = [pool.submit(time.sleep, 600) for _ in range(2)]
    print(*[p.pid for p in pool._processes.values()], flush=True)
    [run.result() for run in runs]"""


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_local_workers_do_not_outlive_a_stopped_experiment(signum):
    psutil = pytest.importorskip("psutil")
    experiment = subprocess.Popen([sys.executable, "-c", EXPERIMENT], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
    workers = [psutil.Process(int(pid)) for pid in experiment.stdout.readline().split()]
    try:
        assert len(workers) == 2
        experiment.send_signal(signum)
        deadline = time.monotonic() + 5
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(w) for w in workers)
        assert experiment.wait(timeout=10) != 0
    finally:
        experiment.kill()
        for worker in workers:
            if alive(worker):
                worker.kill()


def alive(process) -> bool:
    """Whether a psutil.Process is still running (a zombie has exited)."""
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


COMMITTED = sorted(p.stem for p in (ROOT / "results").glob("*.json") if p.stem in EXPERIMENTS)


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_experiment_reads_every_run_from_the_committed_store(name):
    """Running a committed experiment again trains nothing: each run it lists is in results/runs under the key this
    code gives it, and is the run its JSON says it used, made at a clean commit."""
    results = json.loads((ROOT / "results" / f"{name}.json").read_text())
    module = importlib.import_module(f"experiments.{name}")
    runs = module.runs(runner.settings_for(False, **module.OVERRIDES), module.SEEDS)
    assert [training.key(r["spec"]) for r in runs] == [r["key"] for r in results["runs"]]
    assert all(store.Store().file(r["spec"]).is_file() for r in runs)
    assert all(r["git_commit"] and "+" not in r["git_commit"] for r in results["runs"])
    assert "+" not in results["environment"]["git_commit"]


@pytest.mark.parametrize("name", COMMITTED)
def test_every_committed_table_with_verdicts_is_marked_as_holm_corrected(name):
    """runner.printed finds the tables whose verdicts are corrected by "(Holm)": each table that gives a verdict says it."""
    results = json.loads((ROOT / "results" / f"{name}.json").read_text())
    for table in importlib.import_module(f"experiments.{name}").tables(results):
        if re.search(r"\| (differs|equivalent|inconclusive)|: (differs|equivalent|inconclusive)", table):
            assert "(Holm)" in table


def test_the_protocol_lists_every_declared_run_once_and_keeps_the_published_ones():
    """PROTOCOL.md A, B and D: lr at seeds 1-5 over its 17 rates and the edge rule's BN at 0.08, own_rate, norm_batch
    and gn_groups at seeds 1-10; the runs the published tables use are among them, so nothing is trained twice.
    PROTOCOL2.md: N's validation sweep (4 rates x seeds 1-5), scarce data (5,000 digits, 10 seeds), real batches of 8
    and 32 (BN, LN, GN, 10 seeds; 128 is main's), drift's fresh models (seeds 11-22), cheapest arm first."""
    from experiments import drift, gn_groups, lr, no_norm, norm_batch, own_rate, protocol, real_batch, scarce

    specs = protocol.specs()
    declared = {training.key(s): s for s in specs}
    assert len(declared) == len(specs)
    first = [s for s in declared.values() if s["norm"] != "N" and s["train_limit"] is None and s["batch_size"] == 128
             and s["seed"] <= 10]
    by_split = lambda split: [s for s in first if s["split"] == split]
    assert len(by_split("validation")) == 18 * 5 and {s["seed"] for s in by_split("validation")} == set(range(1, 6))
    assert {s["seed"] for s in by_split("test")} == set(range(1, 11))
    assert {(s["norm"], s["l1_lambda"] > 0, s["max_lr"]) for s in by_split("test") if s["max_lr"] != 0.02} == {
        ("B", False, 0.04), ("B", True, 0.01), ("L", False, 0.08), ("G", False, 0.04)}
    for module in (lr, norm_batch, gn_groups, own_rate, no_norm, scarce, real_batch, drift):
        published = module.runs(runner.settings_for(False, **module.OVERRIDES), module.SEEDS)
        assert {training.key(r["spec"]) for r in published} <= set(declared)
    second = [s for s in declared.values() if s not in first]
    assert [len([s for s in second if test(s)]) for test in (
        lambda s: s["norm"] == "N" and s["split"] == "validation",
        lambda s: s["norm"] == "N" and s["split"] == "test" and s["train_limit"] is None,
        lambda s: s["train_limit"] == 5000,
        lambda s: s["batch_size"] in (8, 32),
        lambda s: s["seed"] >= 11)] == [20, 10, 50, 60, 36]
    assert len(second) == 176 and no_norm.RATE == 0.01  # N's validation sweep chose its rate: its test runs follow
    small = [(s["batch_size"], s["max_lr"], s["ema_decay"]) for s in second if s["batch_size"] != 128]
    assert set(small) == {(32, 0.005, 0.998 ** 0.25), (8, 0.00125, 0.998 ** 0.0625)}
    order = [s["batch_size"] for s in second if s["batch_size"] != 128]
    assert order == sorted(order, reverse=True)  # batch 32's runs before batch 8's
    arm = [("drift" if s["seed"] >= 11 else "batch") for s in second if s["seed"] >= 11 or s["batch_size"] != 128]
    assert arm == sorted(arm, reverse=True)  # drift's 36 runs (~3 CPU-hours) before the batches' 60 (~8)


def test_no_normalisations_rate_is_its_choice_on_validation():
    """PROTOCOL2.md 1: the most correct validation digits over seeds 1-5, then the lower rate, from the stored runs."""
    from experiments import no_norm, primary

    acc = no_norm.stored_sweep(store.Store())
    assert all(len(a) == 5 for a in acc.values())
    assert no_norm.RATE == primary.choose_rate({rate: primary.correct(a) for rate, a in acc.items()})


def test_each_variants_own_rate_is_its_best_on_validation():
    """PROTOCOL.md B trains each variant at the rate A chose: own_rate.RATES is the published lr table's best."""
    from experiments import own_rate

    chosen = json.loads((ROOT / "results" / "lr.json").read_text())["summary"]["variants"]
    assert own_rate.RATES == {variant: row["best"] for variant, row in chosen.items()}
