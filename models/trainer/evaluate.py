"""Held-out metrics with bootstrap confidence intervals.

Rows of one subject are correlated, so the bootstrap resamples subjects (with all their rows),
not rows: a row bootstrap would report intervals that are too narrow. Resamples in which one
class is absent have no AUROC and are left out of its interval (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from tqdm import tqdm

METRICS = ("auroc", "accuracy", "f1")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def point_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUROC of the positive-class probability, accuracy and F1 of ``p >= threshold``."""
    pred = (p >= threshold).astype(np.int64)
    return {
        "auroc": float(roc_auc_score(y, p)),
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0.0)),
    }


def fast_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Same as :func:`point_metrics` without scikit-learn's input validation, which costs more
    than the arithmetic when run thousands of times in the bootstrap. AUROC is the
    Mann-Whitney statistic with average ranks for ties; NaN when one class is absent.
    """
    pred = p >= threshold
    pos = y == 1
    n_pos = int(pos.sum())
    n_neg = len(y) - n_pos
    tp = int((pred & pos).sum())
    fp = int((pred & ~pos).sum())
    denom = 2 * tp + fp + (n_pos - tp)
    if n_pos and n_neg:
        ranks = rankdata(p)
        auroc = (float(ranks[pos].sum()) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    else:
        auroc = float("nan")
    return {
        "auroc": auroc,
        "accuracy": float((pred == pos).mean()),
        "f1": 2 * tp / denom if denom else 0.0,
    }


def _subject_index(subjects: np.ndarray) -> list[np.ndarray]:
    _, inverse = np.unique(subjects, return_inverse=True)
    return [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)]


def bootstrap(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    subjects: np.ndarray,
    n: int,
    seed: int,
    level: float = 0.95,
    threshold: float = 0.5,
    progress: bool | None = None,
) -> tuple[dict[str, dict[str, Estimate]], dict[str, Estimate]]:
    """Metrics of every model in ``scores`` on the same resamples, and paired AUROC differences.

    Returns ``(per_model, deltas)``: ``per_model[name][metric]`` and, when there are two or more
    models, ``deltas[other]`` = AUROC of the first model minus that of ``other``. Pairing (the same
    resample for both models) is what makes the interval of a difference meaningful.
    """
    groups = _subject_index(subjects)
    rng = np.random.default_rng(seed)
    names = list(scores)
    samples: dict[str, dict[str, list[float]]] = {m: {k: [] for k in METRICS} for m in names}
    delta_samples: dict[str, list[float]] = {o: [] for o in names[1:]}
    for _ in tqdm(range(n), desc="bootstrap", disable=None if progress is None else not progress):
        pick = rng.integers(len(groups), size=len(groups))
        idx = np.concatenate([groups[g] for g in pick])
        yb = y[idx]
        both = 0 < yb.sum() < len(yb)
        aucs = {}
        for m in names:
            got = fast_metrics(yb, scores[m][idx], threshold)
            samples[m]["accuracy"].append(got["accuracy"])
            samples[m]["f1"].append(got["f1"])
            if both:
                aucs[m] = got["auroc"]
                samples[m]["auroc"].append(aucs[m])
        if both:
            for o in names[1:]:
                delta_samples[o].append(aucs[names[0]] - aucs[o])
    alpha = (1.0 - level) / 2.0

    def interval(point: float, xs: list[float]) -> Estimate:
        if not xs:
            return Estimate(point, float("nan"), float("nan"))
        lo, hi = np.quantile(np.asarray(xs), [alpha, 1.0 - alpha])
        return Estimate(point, float(lo), float(hi))

    per_model = {}
    for m in names:
        point = point_metrics(y, scores[m], threshold)
        per_model[m] = {k: interval(point[k], samples[m][k]) for k in METRICS}
    deltas = {
        o: interval(per_model[names[0]]["auroc"].value - per_model[o]["auroc"].value, xs)
        for o, xs in delta_samples.items()
    }
    return per_model, deltas
