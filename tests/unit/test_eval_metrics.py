"""The metric formulas on embeddings whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from zlt.eval import metrics as m


def _rand(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def test_identical_images_give_style_similarity_one_and_diversity_zero():
    one = _rand(1)
    same = np.repeat(one, 6, axis=0) * np.array([[1.0], [2.0], [0.5], [3.0], [1.0], [7.0]])  # scale is ignored
    assert m.style_similarity(same, same) == pytest.approx(1.0)
    assert m.memorisation(same, same) == pytest.approx(1.0)
    assert m.diversity([same[:3], same[3:]]) == pytest.approx(0.0, abs=1e-12)


def test_style_similarity_is_the_mean_over_all_pairs():
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    t = np.array([[1.0, 0.0], [1.0, 1.0]])
    # cos pairs: (1, 1/sqrt2), (0, 1/sqrt2)
    assert m.style_similarity(g, t) == pytest.approx((1 + 2 / np.sqrt(2)) / 4)
    assert m.memorisation(g, t) == pytest.approx(1.0)


def test_opposite_images_have_maximal_diversity_and_negative_similarity():
    a = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert m.diversity([a]) == pytest.approx(2.0)
    assert m.style_similarity(a[:1], a[1:]) == pytest.approx(-1.0)


def test_prompt_alignment_pairs_row_i_with_row_i():
    imgs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert m.prompt_alignment(imgs, imgs) == pytest.approx(1.0)
    assert m.prompt_alignment(imgs, imgs[::-1]) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        m.prompt_alignment(imgs, imgs[:1])


def test_diversity_needs_two_seeds():
    assert m.diversity([_rand(1), _rand(1, seed=1)]) is None


def test_kid_and_fid_are_near_zero_for_one_distribution_and_grow_with_a_shift():
    a, b = _rand(400, 8, 1), _rand(400, 8, 2)
    kid_same, std = m.kid(a, b, subsets=20, subset_size=200)
    kid_shift, _ = m.kid(a, b + 3.0, subsets=20, subset_size=200)
    assert abs(kid_same) < 0.05 and std >= 0
    assert kid_shift > 10 * max(abs(kid_same), 1e-3)
    assert m.fid(a, a) == pytest.approx(0.0, abs=1e-6)
    assert m.fid(a, b + 3.0) == pytest.approx(8 * 9, rel=0.15)  # |mu shift|^2 = 8 dims x 3^2


def test_distribution_metrics_are_left_out_below_50_training_images():
    out = m.distribution_metrics(_rand(10), _rand(49, seed=3))
    assert out["kid_clip"] is None and out["fid_clip"] is None and "49 images" in out["kid_note"]
    out = m.distribution_metrics(_rand(10), _rand(60, seed=3))
    assert out["kid_clip"] is not None and out["kid_clip_std"] is not None and out["fid_clip"] is not None
