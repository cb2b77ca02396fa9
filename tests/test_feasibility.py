"""PROTOCOL2.md's primary tests can each reach their threshold at their declared n (experiments/feasibility.py)."""

from experiments import feasibility


def test_every_primary_test_can_reach_its_threshold():
    rows = feasibility.check()
    assert len(rows) == 26 and {r["family"]: sum(x["family"] == r["family"] for x in rows) for r in rows} == \
        {"none": 3, "batch": 4, "drift": 14, "scarce": 5}
    assert [r["comparison"] for r in rows if not r["reachable"]] == []
    assert len({(r["family"], r["comparison"]) for r in rows}) == len(rows)  # no comparison tested twice


def test_the_check_sees_a_test_that_cannot_reach():
    """Protocol 1 C's flaw: the exact test at 10 seeds (smallest p 2/1024) under Holm over 66 tests cannot reach."""
    flawed = feasibility.family("drift", 0.05, "exact permutation", 10, [(f"c{i}", 1.0) for i in range(66)])
    rows = feasibility.check(flawed)
    assert rows[0]["smallest_p"] == 2 / 1024 and rows[0]["threshold"] == 0.05 / 66 and not any(r["reachable"] for r in rows)


def test_the_detectable_effect_is_the_closed_form():
    """n = 10, two-sided 0.05, 80% power, sd 1: t's (2.262 + 0.883) / sqrt(10) = 0.995; the normal's 0.886."""
    assert abs(feasibility.detectable("paired t", 10, 0.05, 1.0) - 0.9946) < 1e-3
    assert abs(feasibility.detectable("exact permutation", 10, 0.05, 1.0) - 0.8860) < 1e-3
