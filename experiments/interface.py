"""What an experiment is: the names every module experiments/NAME.py gives, written once (`Experiment`), which
`python -m experiments NAME` (runner.execute and runner.replot), experiments/protocol.py and experiments/report.py
read. experiments/own_rate.py is the shortest whole example; tests/test_experiments.py holds every experiment to it.
Protocol 2's experiments (experiments.PROTOCOL2) also answer in the README's words (`Answer`); Protocol 1's say in
words what their tables show, beside them (`Words`). experiments/report.py only collects and renders what they say.

A new experiment is a module that follows `Experiment`, one line in experiments.REGISTRY (its protocol and the anchor
of its STUDY.md heading), and that heading in STUDY.md with the generated block NAME_tables under it.
"""

from typing import Protocol

from matplotlib.figure import Figure

import store


class Experiment(Protocol):
    """An experiment module: its runs, read from the run store or trained, then its numbers, figure and tables.

    runner.execute builds the settings (settings_for(quick, **OVERRIDES) with DATA, the digest of the MNIST files;
    DATA_ROOT left out), takes `runs(settings, SEEDS)` (the first seed only with --quick), reads or trains every
    run's spec, gives each row its "record", calls `summarise`, and writes results/NAME.json (settings, environment,
    summary and the rows as used) and Images/NAME.png from `figure`, then prints `tables`. runner.replot draws the
    figure and tables again from the JSON alone.
    """

    NAME: str
    """Its name: `python -m experiments NAME`, results/NAME.json and Images/NAME.png."""

    SHOWS: str
    """What it shows, in one line: its line in `python -m experiments --help`."""

    SEEDS: tuple[int, ...]
    """The seeds of its runs, in the order they train (--quick takes the first)."""

    OVERRIDES: dict
    """The settings (settings.SETTINGS's names) in which it differs from the notebook's defaults; {} for none."""

    def runs(self, settings: dict, seeds: tuple[int, ...]) -> list[dict]:
        """The runs it needs at `settings` and `seeds`, in the order they should train: each a dict of labels (JSON
        values its tables go by: variant, seed, ...) and its "spec" (training.run_spec). No two may be the same run."""

    def summarise(self, trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
        """Its numbers (the JSON's "summary"), from `trained`, the rows of `runs` each with its "record" (the stored
        run's record), and from the stored models in `runs_store` where it evaluates them again."""

    def figure(self, results: dict) -> Figure:
        """Its figure (Images/NAME.png), from its results JSON alone."""

    def tables(self, results: dict) -> list[str]:
        """Its tables in markdown, from its results JSON alone: what the command line prints, and STUDY.md's block
        NAME_tables once it is one of experiments.EXPERIMENTS."""


class Answer(Experiment, Protocol):
    """A Protocol 2 experiment, whose primary verdicts the README's first screen and pick table quote."""

    def headline(self, results: dict) -> str:
        """Its sentence on the README's first screen: its numbers and its primary verdicts, from its JSON alone."""

    def pick(self, results: dict) -> dict:
        """Its row of the README's pick table: situation, pick (what its verdicts show, nothing more), why (each
        primary comparison in words) and norms (the letters of the norms whose cost the row shows)."""


class Words(Protocol):
    """What a Protocol 1 experiment says in README.md and STUDY.md beside its tables: generated blocks, a row of the
    README's pick table, or both; a module gives those it has. Both read `results`, every committed result by name
    (report.load), and `found`, the rows of STUDY.md's table of every verdict (study.rows), since its words may quote
    another experiment's numbers and quote the verdicts under the study-wide correction."""

    def blocks(self, results: dict, found: list[dict]) -> dict[str, str]:
        """Its generated blocks, by name; until its results are committed, each says so (runner.not_yet)."""

    def pick(self, results: dict, found: list[dict]) -> dict | None:
        """Its row of the README's pick table, as Answer.pick's (situation, pick, why, norms), and evidence: the
        experiments whose STUDY.md sections hold it. None while what it rests on is not committed, or where a
        Protocol 2 row answers instead (report.PICK orders the rows)."""
