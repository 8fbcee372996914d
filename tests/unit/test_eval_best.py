"""The best-checkpoint rule on constructed reports (docs/eval.md)."""

from __future__ import annotations

from zlt.eval.best import Rule, pick_best


def row(step, style, align, memo, base=False):
    return {"step": step, "label": "base" if base else f"step {step}", "base": base,
            "metrics": {"style_similarity": style, "prompt_alignment": align, "memorisation": memo}}


def test_picks_highest_style_among_those_keeping_alignment_and_not_memorising():
    rows = [
        row(0, 0.50, 0.30, 0.60, base=True),
        row(1000, 0.70, 0.29, 0.70),
        row(2000, 0.80, 0.28, 0.80),   # best: 0.28 >= 0.27 (90% of 0.30), memo < 0.95
        row(3000, 0.88, 0.25, 0.85),   # higher style but alignment fell below 0.27
        row(4000, 0.90, 0.29, 0.97),   # memorises a training image
    ]
    pick = pick_best(rows)
    assert pick.step == 2000 and pick.passed
    assert "2 checkpoint(s) failed a guard" in pick.reason


def test_the_base_model_is_never_picked_even_when_it_scores_highest():
    rows = [row(0, 0.99, 0.30, 0.10, base=True), row(500, 0.60, 0.30, 0.50)]
    assert pick_best(rows).step == 500


def test_tie_goes_to_the_earlier_step():
    rows = [row(0, 0.5, 0.3, 0.5, base=True), row(750, 0.8, 0.3, 0.5), row(250, 0.8, 0.3, 0.5)]
    assert pick_best(rows).step == 250


def test_tolerance_and_memorisation_cap_are_settable():
    rows = [row(0, 0.5, 0.30, 0.5, base=True), row(1, 0.9, 0.20, 0.5), row(2, 0.7, 0.29, 0.5)]
    assert pick_best(rows).step == 2
    assert pick_best(rows, Rule(alignment_tolerance=0.5)).step == 1
    assert pick_best(rows, Rule(memorisation_max=0.4)).passed is False


def test_when_nothing_passes_the_least_broken_is_picked_and_the_reason_says_which_guard():
    rows = [row(0, 0.5, 0.30, 0.5, base=True), row(1, 0.9, 0.10, 0.5), row(2, 0.8, 0.26, 0.5)]
    pick = pick_best(rows)
    assert pick.step == 2 and not pick.passed
    assert "prompt alignment 0.2600 < 0.2700" in pick.reason


def test_no_trained_checkpoint():
    pick = pick_best([row(0, 0.5, 0.3, 0.5, base=True)])
    assert pick.step is None and not pick.passed


def test_the_verdict_says_when_the_base_beats_the_pick_and_when_the_runner_up_is_within_the_spread():
    from zlt.eval.spread import row_spread, verdict

    def r(step, values, base=False):
        out = row(step, sum(values) / len(values), 0.3, 0.5, base=base)
        out["per_image"] = {"style_similarity": values}
        return out

    rows = [r(0, [0.90, 0.91, 0.92, 0.93], base=True), r(10, [0.80, 0.815, 0.82, 0.83]),
            r(20, [0.801, 0.81, 0.821, 0.829])]
    v = verdict(rows, pick_best(rows).step)
    assert v["distinguishable_from_base"] is True and v["vs_base"]["difference"] < 0
    assert "the base model scores higher on style_similarity" in v["caveat"]
    assert v["distinguishable_from_runner_up"] is False and "not distinguishable from the runner-up step" in v["caveat"]
    assert row_spread(rows[0]["per_image"])["style_similarity"]["n"] == 4
    one = [r(0, [0.5], base=True), r(10, [0.6])]
    assert verdict(one, 10)["distinguishable_from_base"] is False  # one image: nothing can be told apart
