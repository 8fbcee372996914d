"""The evaluation metrics, as pure functions of CLIP embeddings (numpy arrays, one row per image or text).

Every function L2-normalises its inputs itself, so callers may pass raw projected CLIP features. Definitions and
their formulas are in docs/eval.md; the names here are the keys of eval/report.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# KID/FID on fewer training images than this are not reported (FID is strongly biased on small sets, and the
# KID estimate's spread makes it useless for telling checkpoints apart).
MIN_IMAGES_FOR_KID = 50


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, d) array of embeddings, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _clip01(v: float) -> float:
    # cosine of a vector with itself is 1 up to rounding; keep reported values in [-1, 1]
    return float(min(1.0, max(-1.0, v)))


def style_similarity(generated: np.ndarray, training: np.ndarray) -> float:
    """Mean cosine similarity over every (generated, training) image pair."""
    g, t = normalize(generated), normalize(training)
    return _clip01(float((g @ t.T).mean()))


def memorisation(generated: np.ndarray, training: np.ndarray) -> float:
    """The highest cosine similarity of any generated image to its nearest training image."""
    g, t = normalize(generated), normalize(training)
    return _clip01(float((g @ t.T).max()))


def prompt_alignment(images: np.ndarray, texts: np.ndarray) -> float:
    """Mean cosine similarity of each image with the embedding of its own prompt (row i with row i)."""
    i, t = normalize(images), normalize(texts)
    if i.shape != t.shape:
        raise ValueError(f"{i.shape[0]} images but {t.shape[0]} prompt embeddings")
    return _clip01(float(np.sum(i * t, axis=1).mean()))


def diversity(groups: Sequence[np.ndarray]) -> float | None:
    """Mean pairwise cosine distance (1 - cos) between the images of one prompt (its seeds), averaged over prompts.

    None when no prompt has two images (one seed): there is nothing to compare."""
    per_prompt = []
    for emb in groups:
        e = normalize(emb)
        n = e.shape[0]
        if n < 2:
            continue
        sims = e @ e.T
        iu = np.triu_indices(n, k=1)
        per_prompt.append(float(np.clip(1.0 - sims[iu], 0.0, 2.0).mean()))
    return float(np.mean(per_prompt)) if per_prompt else None


def per_image(generated: np.ndarray, training: np.ndarray, texts: np.ndarray,
              groups: Sequence[np.ndarray]) -> dict[str, list[float]]:
    """The values the row metrics average, one per image (diversity: one per prompt), rounded to 6 decimals: what
    the spread over prompts x seeds is measured on (zlt.eval.spread)."""
    g, t = normalize(generated), normalize(training)
    sims = g @ t.T
    out = {"style_similarity": sims.mean(axis=1), "memorisation": sims.max(axis=1),
           "prompt_alignment": np.sum(g * normalize(texts), axis=1)}
    per_prompt = []
    for emb in groups:
        e = normalize(emb)
        if e.shape[0] >= 2:
            s = e @ e.T
            per_prompt.append(float(np.clip(1.0 - s[np.triu_indices(e.shape[0], k=1)], 0.0, 2.0).mean()))
    res = {k: [round(float(min(1.0, max(-1.0, x))), 6) for x in v] for k, v in out.items()}
    res["diversity"] = [round(x, 6) for x in per_prompt]
    return res


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def kid(generated: np.ndarray, training: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance computed on the given features: the unbiased MMD^2 with the cubic polynomial
    kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets. Returns (mean, std over subsets)."""
    g, t = np.asarray(generated, np.float64), np.asarray(training, np.float64)
    m = min(subset_size, g.shape[0], t.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 images on each side")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = g[rng.choice(g.shape[0], m, replace=False)]
        y = t[rng.choice(t.shape[0], m, replace=False)]
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        off = m * (m - 1)
        mmd = (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2.0 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def fid(generated: np.ndarray, training: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the two feature sets:
    |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)."""
    g, t = np.asarray(generated, np.float64), np.asarray(training, np.float64)
    if g.shape[0] < 2 or t.shape[0] < 2:
        raise ValueError("FID needs at least 2 images on each side")
    mu1, mu2 = g.mean(0), t.mean(0)
    s1, s2 = np.cov(g, rowvar=False), np.cov(t, rowvar=False)
    # symmetric form, so eigvalsh applies and no complex sqrtm is needed
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(root1 @ s2 @ root1)
    trace_term = np.trace(s1) + np.trace(s2) - 2.0 * np.sqrt(np.clip(cross, 0, None)).sum()
    return float(max(0.0, np.sum((mu1 - mu2) ** 2) + trace_term))


def distribution_metrics(generated: np.ndarray, training: np.ndarray) -> dict[str, Any]:
    """KID (mean, std) and FID on CLIP image features, or the reason they are left out."""
    if training.shape[0] < MIN_IMAGES_FOR_KID:
        why = f"the training set has {training.shape[0]} images; KID/FID need >= {MIN_IMAGES_FOR_KID}"
        return {"kid_clip": None, "kid_clip_std": None, "fid_clip": None, "kid_note": why}
    mean, std = kid(generated, training)
    return {"kid_clip": mean, "kid_clip_std": std, "fid_clip": fid(generated, training), "kid_note": None}
