"""Cross-validation metrics of the shot classifier's training (:mod:`engine.tools.train_shots`).

Pure numpy: stratified grouped folds, balanced accuracy, confusion counts, temperature scaling
(Guo et al. 2017), expected calibration error and the ``shots.min_confidence`` threshold search.
Class indices follow :data:`engine.shots.SHOT_CLASSES` (0 pull, 1 cover drive, 2 other).
"""

from __future__ import annotations

import numpy as np

from engine.shots import softmax

__all__ = ["balanced_accuracy", "choose_min_confidence", "confusion", "expected_calibration_error",
           "fit_temperature", "grouped_folds"]


def grouped_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Stratified grouped fold number per sample: each class's groups are shuffled and dealt out."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(labels.shape[0], np.int64)
    for c in np.unique(labels):
        names = np.unique(groups[labels == c])
        rng.shuffle(names)
        for i, name in enumerate(names):
            fold[groups == name] = i % k
    return fold


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes: list[int]) -> float:
    """Mean per-class recall over ``classes`` (samples of other classes ignored)."""
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes if np.any(y_true == c)]))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """``[n, n]`` counts, rows = true class, columns = predicted class."""
    m = np.zeros((n, n), np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the mean negative log-likelihood of ``softmax(scores / T)`` (grid 0.1-10)."""
    grid = np.exp(np.linspace(np.log(0.1), np.log(10.0), 161))
    nll = [-np.mean(np.log(softmax(scores, t)[np.arange(y.size), y] + 1e-12)) for t in grid]
    return float(grid[int(np.argmin(nll))])


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE: sum over equal-width confidence bins of ``|bin| / N * |accuracy - mean confidence|``."""
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(np.mean(pred[which == b] == y[which == b]) - conf[which == b].mean()) * np.mean(which == b)
                     for b in range(bins) if np.any(which == b)))


def choose_min_confidence(p: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]]:
    """Threshold in 0.34, 0.36 ... 0.80 maximising the 3-class balanced accuracy after abstaining.

    A ``pull`` / ``cover_drive`` below the threshold counts as ``other`` (as at run time); ties go to
    the higher threshold.

    Args:
        p: ``[N, 3]`` calibrated out-of-fold probabilities (run-time-like view).
        y: ``[N]`` true classes.

    Returns:
        ``(threshold, {"balanced_accuracy", "precision", "pull_cover_recall"})``: the thresholded
        3-class balanced accuracy, the precision of the remaining pull / cover-drive labels and
        the share of true pulls and cover drives still labelled correctly.
    """
    pred0, conf = p.argmax(axis=1), p.max(axis=1)
    best: tuple[float, dict[str, float]] = (0.0, {"balanced_accuracy": -1.0})
    for thr in np.round(np.arange(0.34, 0.8001, 0.02), 2):
        pred = np.where((pred0 < 2) & (conf < thr), 2, pred0)
        kept = pred < 2
        stats = {
            "balanced_accuracy": balanced_accuracy(y, pred, [0, 1, 2]),
            "precision": float(np.mean(pred[kept] == y[kept])) if kept.any() else 1.0,
            "pull_cover_recall": float(np.mean(pred[y < 2] == y[y < 2])),
        }
        if stats["balanced_accuracy"] >= best[1]["balanced_accuracy"]:
            best = (float(thr), stats)
    return best
