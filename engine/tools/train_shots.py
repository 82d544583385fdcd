"""Train the shot classifier and write ``engine/data/shot_classifier_v1.json``.

Run ``python -m engine.tools.train_shots [--data DIR] [--out FILE]``. It prints cross-validated balanced
accuracy (pull vs cover drive, and 3-class) with confusion matrices, then fits the final model on
all the data and writes the parameter file that :class:`engine.shots.ShotClassifier` loads.
Only numpy is needed (the trees are implemented here; scikit-learn is not used).

Data: ``../shared/data/real/keypoints/cricshot10_mediapipe33/<class>/<class>_NNNN.npy``, MediaPipe
Pose landmarks ``[T, 99]`` of CricShot10 clips (see that folder's ``SOURCES.md``). Classes:
``pull`` -> pull, ``cover`` -> cover_drive, every other folder -> other. x is multiplied by 4/3
(CricShot10 previews are 4:3) so that x and y share one scale; the features are in torso lengths,
so only the aspect matters, not the size.

Method:

* Features: :func:`engine.shots.shot_features` (pose at 4 normalised times, ankle gap, nose height,
  front-arm descriptors) of each sequence *and* of its mirror image, both with the sequence's
  label (a left-hander's shot is the mirror image of a right-hander's; the data has both and no
  handedness label). At inference the two orientations' probabilities are averaged, so the
  class does not depend on the handedness. NaN features are filled with the training medians.
* Model: extremely randomised trees (Geurts et al. 2006; as scikit-learn's
  ``ExtraTreesClassifier``): each node tries ``sqrt(F)`` random features with one uniform random
  threshold each and keeps the best weighted Gini split; classes weighted to balance them.
  Hyper-parameters are fixed (:data:`TREE_PARAMS`); they were set by hand during development,
  not searched, so there is no inner loop to nest.
* Cross-validation: stratified *grouped* k-fold. Consecutive file indices of a class may come
  from the same match, so blocks of 5 consecutive indices form a group and never straddle train
  and test; a sequence and its mirror image are always on the same side. Scores are averaged
  over several shuffles.

This is a script, so it writes its report to stdout; import :func:`load_cricshot10`,
:func:`build_dataset`, :func:`train_forest` and :func:`cross_validate` to use the pieces.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engine.shots import (
    FEATURE_SET,
    SHOT_CLASSES,
    ShotClassifier,
    feature_names,
    mediapipe33_to_coco17,
    mirror_keypoints,
    shot_features,
)

#: Default data folder, relative to the repository root (``../shared`` of the checkout).
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "keypoints" / "cricshot10_mediapipe33"
#: Default output: the packaged parameter file.
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "shot_classifier_v1.json"
#: Version written into the parameter file.
VERSION = "1.0.0"
#: CricShot10 folder -> class.
FOLDER_CLASS = {"pull": "pull", "cover": "cover_drive"}
#: Assumed frame aspect (width / height) of the CricShot10 videos (their previews are 320x240).
CRICSHOT10_ASPECT = 4.0 / 3.0
#: Consecutive file indices per CV group.
GROUP_SIZE = 5
#: Fixed model hyper-parameters.
TREE_PARAMS: dict[str, Any] = {"n_trees": 64, "max_depth": 6, "min_samples_leaf": 3, "max_features": "sqrt"}


@dataclass(frozen=True)
class Dataset:
    """Feature vectors of the labelled sequences.

    Attributes:
        features: float64 ``[N, F]`` of the sequences as recorded (NaN where unmeasurable).
        mirrored: float64 ``[N, F]`` of their mirror images.
        labels: int64 ``[N]`` index into :data:`engine.shots.SHOT_CLASSES`.
        groups: ``[N]`` CV group names (``folder:block``).
        names: ``[N]`` file names (``folder/file.npy``).
        skipped: File names without 2 frames showing shoulders and hips.
    """

    features: np.ndarray
    mirrored: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    names: list[str]
    skipped: list[str]


def load_cricshot10(root: Path) -> list[tuple[str, str, int, np.ndarray]]:
    """Read every ``<folder>/<folder>_NNNN.npy`` under ``root``.

    Returns:
        ``(folder, file name, index, keypoints)`` per file, sorted; keypoints float64
        ``[T, 17, 2]`` COCO order, x multiplied by :data:`CRICSHOT10_ASPECT` (isotropic units).

    Raises:
        FileNotFoundError: ``root`` has no ``.npy`` files.
    """
    out = []
    for path in sorted(Path(root).glob("*/*.npy")):
        folder = path.parent.name
        try:
            index = int(path.stem.rsplit("_", 1)[-1])
        except ValueError:
            index = 0
        kp = mediapipe33_to_coco17(np.load(path))
        kp[..., 0] *= CRICSHOT10_ASPECT
        out.append((folder, path.name, index, kp))
    if not out:
        msg = f"no CricShot10 .npy files under {root}"
        raise FileNotFoundError(msg)
    return out


def build_dataset(root: Path) -> Dataset:
    """Features of every sequence under ``root`` (see :func:`load_cricshot10`) and its mirror image."""
    feats, mirrored, labels, groups, names, skipped = [], [], [], [], [], []
    for folder, name, index, kp in load_cricshot10(root):
        f = shot_features(kp)
        fm = shot_features(mirror_keypoints(kp))
        if f is None or fm is None:
            skipped.append(f"{folder}/{name}")
            continue
        feats.append(f)
        mirrored.append(fm)
        labels.append(SHOT_CLASSES.index(FOLDER_CLASS.get(folder, "other")))
        groups.append(f"{folder}:{index // GROUP_SIZE}")
        names.append(f"{folder}/{name}")
    return Dataset(
        features=np.asarray(feats, np.float64),
        mirrored=np.asarray(mirrored, np.float64),
        labels=np.asarray(labels, np.int64),
        groups=np.asarray(groups),
        names=names,
        skipped=skipped,
    )


# --------------------------------------------------------------------------------------------------
# Extremely randomised trees (numpy)
# --------------------------------------------------------------------------------------------------


def _gini(counts: np.ndarray) -> np.ndarray:
    """Weighted Gini impurity times weight: ``W * (1 - sum p^2)`` per row of class weights."""
    total = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = total - np.square(counts).sum(axis=-1) / total
    return np.where(total > 0, g, 0.0)


def _build_tree(
    x: np.ndarray, onehot_w: np.ndarray, rng: np.random.Generator, max_depth: int, min_leaf: int, n_try: int
) -> dict[str, list]:
    """One extremely randomised tree; returns parallel node lists (see ShotClassifier)."""
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    value: list[list[float]] = []

    def new_node(idx: np.ndarray) -> int:
        counts = onehot_w[idx].sum(axis=0)
        feature.append(-1)
        threshold.append(0.0)
        left.append(-1)
        right.append(-1)
        value.append((counts / counts.sum()).tolist())
        return len(feature) - 1

    root = new_node(np.arange(x.shape[0]))
    stack = [(root, np.arange(x.shape[0]), 0)]
    n_features = x.shape[1]
    while stack:
        node, idx, depth = stack.pop()
        counts = onehot_w[idx].sum(axis=0)
        if depth >= max_depth or idx.size < 2 * min_leaf or np.count_nonzero(counts) <= 1:
            continue
        cand = rng.choice(n_features, size=min(n_try, n_features), replace=False)
        xs = x[np.ix_(idx, cand)]  # [n, k]
        lo, hi = xs.min(axis=0), xs.max(axis=0)
        valid = hi > lo
        if not valid.any():
            continue
        thr = lo + rng.random(cand.size) * (hi - lo)
        go_left = xs <= thr  # [n, k]
        n_left = go_left.sum(axis=0)
        left_counts = go_left.T.astype(np.float64) @ onehot_w[idx]  # [k, C]
        right_counts = counts[None, :] - left_counts
        score = _gini(left_counts) + _gini(right_counts)
        ok = valid & (n_left >= min_leaf) & (idx.size - n_left >= min_leaf)
        if not ok.any():
            continue
        score = np.where(ok, score, np.inf)
        best = int(np.argmin(score))
        mask = go_left[:, best]
        li, ri = idx[mask], idx[~mask]
        a, b = new_node(li), new_node(ri)
        feature[node] = int(cand[best])
        threshold[node] = float(thr[best])
        left[node], right[node] = a, b
        stack.append((a, li, depth + 1))
        stack.append((b, ri, depth + 1))
    return {"feature": feature, "threshold": threshold, "left": left, "right": right, "value": value}


def train_forest(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    n_trees: int = 64,
    max_depth: int = 6,
    min_samples_leaf: int = 3,
    max_features: str | int = "sqrt",
    n_classes: int = len(SHOT_CLASSES),
) -> dict[str, Any]:
    """Fit extremely randomised trees with balanced class weights.

    Args:
        x: float64 ``[N, F]`` training features (NaN filled with the column medians first).
        y: int64 ``[N]`` class indices in ``[0, n_classes)``.
        seed: Random seed (the result is deterministic given the seed).
        n_trees: Number of trees.
        max_depth: Maximum depth (root = 0).
        min_samples_leaf: Minimum samples in each leaf.
        max_features: Features tried per node: ``"sqrt"`` or a number.
        n_classes: Number of classes.

    Returns:
        ``{"fill": [F], "trees": [...]}`` in the :class:`engine.shots.ShotClassifier` format.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.int64)
    with np.errstate(all="ignore"):
        fill = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(np.isfinite(x), x, fill)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    class_w = np.where(counts > 0, y.size / (n_classes * np.maximum(counts, 1.0)), 0.0)
    onehot_w = np.eye(n_classes)[y] * class_w[y][:, None]
    n_try = int(math.sqrt(x.shape[1])) if max_features == "sqrt" else int(max_features)
    rng = np.random.default_rng(seed)
    trees = [_build_tree(x, onehot_w, rng, max_depth, min_samples_leaf, max(1, n_try)) for _ in range(n_trees)]
    return {"fill": fill.tolist(), "trees": trees}


def _classifier(model: dict[str, Any]) -> ShotClassifier:
    params = {
        "version": VERSION,
        "classes": list(SHOT_CLASSES),
        "feature": {"name": FEATURE_SET, "n_features": len(model["fill"])},
        **model,
    }
    return ShotClassifier(params, "<training>")


# --------------------------------------------------------------------------------------------------
# Cross-validation
# --------------------------------------------------------------------------------------------------


def grouped_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Stratified grouped fold number per sample: each class's groups are shuffled and dealt out."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(labels.shape[0], np.int64)
    for c in np.unique(labels):
        names = np.unique(groups[labels == c])
        rng.shuffle(names)
        for i, name in enumerate(names):
            fold[(groups == name) & (labels == c)] = i % k
    return fold


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes: list[int]) -> float:
    """Mean per-class recall over ``classes`` (samples of other classes ignored)."""
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes if np.any(y_true == c)]))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """``[n, n]`` counts, rows = true class, columns = predicted class."""
    m = np.zeros((n, n), np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def cross_validate(
    data: Dataset, *, k: int = 5, seeds: tuple[int, ...] = (0, 1, 2), params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Grouped stratified k-fold CV of the whole training routine, repeated over ``seeds``.

    Per fold the forest is trained on the training folds (sequences and mirror images) and
    predicts the test fold by averaging both orientations, exactly as at run time. Reported:

    * ``pull_vs_cover``: the 3-class model on the pull and cover-drive sequences, deciding between
      those two classes only (larger of the two probabilities): balanced accuracy, 2x2 confusion.
    * ``pull_vs_cover_2class``: a model trained on pull and cover drive only (the thesis' setting).
    * ``three_class``: balanced accuracy and 3x3 confusion of the 3-class model.

    Confusion matrices are summed over seeds; accuracies are the mean and standard deviation
    over seeds.
    """
    p = dict(TREE_PARAMS if params is None else params)
    y = data.labels
    pc = y < 2
    acc: dict[str, list[float]] = {"pull_vs_cover": [], "pull_vs_cover_2class": [], "three_class": []}
    conf = {"pull_vs_cover": np.zeros((2, 2), np.int64), "pull_vs_cover_2class": np.zeros((2, 2), np.int64),
            "three_class": np.zeros((3, 3), np.int64)}
    for seed in seeds:
        fold = grouped_folds(y, data.groups, k, seed)
        proba = np.zeros((y.size, 3))
        proba2 = np.zeros((y.size, 3))
        for f in range(k):
            tr, te = fold != f, fold == f
            xa = np.vstack([data.features[tr], data.mirrored[tr]])
            ya = np.concatenate([y[tr], y[tr]])
            clf = _classifier(train_forest(xa, ya, seed=seed * 100 + f, **p))
            proba[te] = 0.5 * (clf.predict_proba(data.features[te]) + clf.predict_proba(data.mirrored[te]))
            tr2, te2 = tr & pc, te & pc
            xa = np.vstack([data.features[tr2], data.mirrored[tr2]])
            ya = np.concatenate([y[tr2], y[tr2]])
            clf = _classifier(train_forest(xa, ya, seed=seed * 100 + f, **p))
            proba2[te2] = 0.5 * (clf.predict_proba(data.features[te2]) + clf.predict_proba(data.mirrored[te2]))
        pred3 = proba.argmax(axis=1)
        pvc = proba[pc, :2].argmax(axis=1)
        pvc2 = proba2[pc, :2].argmax(axis=1)
        acc["three_class"].append(balanced_accuracy(y, pred3, [0, 1, 2]))
        acc["pull_vs_cover"].append(balanced_accuracy(y[pc], pvc, [0, 1]))
        acc["pull_vs_cover_2class"].append(balanced_accuracy(y[pc], pvc2, [0, 1]))
        conf["three_class"] += confusion(y, pred3, 3)
        conf["pull_vs_cover"] += confusion(y[pc], pvc, 2)
        conf["pull_vs_cover_2class"] += confusion(y[pc], pvc2, 2)
    return {
        name: {
            "balanced_accuracy_mean": float(np.mean(v)),
            "balanced_accuracy_std": float(np.std(v)),
            "balanced_accuracy_per_seed": [float(a) for a in v],
            "confusion": conf[name].tolist(),
        }
        for name, v in acc.items()
    } | {"folds": k, "seeds": list(seeds), "grouping": f"{GROUP_SIZE} consecutive file indices per class"}


# --------------------------------------------------------------------------------------------------
# Script
# --------------------------------------------------------------------------------------------------


def _round_tree(tree: dict[str, list]) -> dict[str, list]:
    feat = tree["feature"]
    return {
        "feature": feat,
        "threshold": [float(f"{v:.5g}") if f >= 0 else 0 for f, v in zip(feat, tree["threshold"], strict=True)],
        "left": tree["left"],
        "right": tree["right"],
        "value": [None if f >= 0 else [round(v, 3) for v in row] for f, row in zip(feat, tree["value"], strict=True)],
    }


def fit_params(data: Dataset, cv: dict[str, Any] | None, *, seed: int = 0) -> dict[str, Any]:
    """The parameter file's content: the forest fitted on all of ``data`` plus its description."""
    xa = np.vstack([data.features, data.mirrored])
    ya = np.concatenate([data.labels, data.labels])
    model = train_forest(xa, ya, seed=seed, **TREE_PARAMS)
    counts = {c: int(np.sum(data.labels == i)) for i, c in enumerate(SHOT_CLASSES)}
    return {
        "version": VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "produced_by": "python -m engine.tools.train_shots",
        "classes": list(SHOT_CLASSES),
        "feature": {
            "name": FEATURE_SET,
            "n_features": len(feature_names()),
            "names": feature_names(),
            "description": (
                "engine.shots.shot_features on the right-hander-frame keypoints: each COCO keypoint "
                "relative to the hip midpoint in torso lengths at 4 normalised times, ankle gap mean/max, "
                "nose height, front-arm (left wrist - left shoulder) span/elevation/peak-r descriptors; "
                "predictions average the sequence and its mirror image"
            ),
        },
        "model": {"type": "extra_trees", "seed": seed, **TREE_PARAMS, "class_weight": "balanced"},
        "training_data": {
            "source": "CricShot10 MediaPipe-33 keypoints (MujtabaJunaid/Cricket-Shot-Pose-Estimation "
            "data/processed, commit 13dfd6db), mapped to COCO-17",
            "classes": counts,
            "folders_as_other": sorted({n.split("/")[0] for n in data.names} - set(FOLDER_CLASS)),
            "augmentation": "mirror image of every sequence, same label",
            "aspect_assumed": CRICSHOT10_ASPECT,
            "skipped": data.skipped,
        },
        "cv": cv,
        "fill": [float(f"{v:.6g}") for v in model["fill"]],
        "trees": [_round_tree(t) for t in model["trees"]],
    }


def _format_confusion(matrix: list[list[int]], names: list[str]) -> str:
    width = max(len(n) for n in names) + 2
    lines = [" " * width + "".join(f"{n:>{width}}" for n in names) + "   <- predicted"]
    for name, row in zip(names, matrix, strict=True):
        lines.append(f"{name:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: cross-validate, fit on everything, write the parameter file."""
    parser = argparse.ArgumentParser(prog="python -m engine.tools.train_shots", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cricshot10_mediapipe33 folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="parameter file to write")
    parser.add_argument("--folds", type=int, default=5, help="CV folds")
    parser.add_argument("--seeds", type=int, default=3, help="CV repetitions with different shuffles")
    parser.add_argument("--no-write", action="store_true", help="only report the cross-validation")
    args = parser.parse_args(argv)
    out = sys.stdout
    data = build_dataset(args.data)
    counts = ", ".join(f"{c}={int(np.sum(data.labels == i))}" for i, c in enumerate(SHOT_CLASSES))
    out.write(f"data: {len(data.names)} sequences ({counts}); skipped {len(data.skipped)}: {data.skipped}\n")
    cv = cross_validate(data, k=args.folds, seeds=tuple(range(args.seeds)))
    out.write(f"grouped stratified {args.folds}-fold CV x {args.seeds} shuffles ({cv['grouping']}):\n")
    for name, names in (
        ("pull_vs_cover", ["pull", "cover_drive"]),
        ("pull_vs_cover_2class", ["pull", "cover_drive"]),
        ("three_class", list(SHOT_CLASSES)),
    ):
        r = cv[name]
        out.write(
            f"\n{name}: balanced accuracy {r['balanced_accuracy_mean']:.3f} +- {r['balanced_accuracy_std']:.3f} "
            f"(per shuffle {', '.join(f'{a:.3f}' for a in r['balanced_accuracy_per_seed'])})\n"
        )
        out.write(_format_confusion(r["confusion"], names) + "\n")
    if args.no_write:
        return 0
    params = fit_params(data, cv)
    clf = ShotClassifier(params, str(args.out))
    train_pred = 0.5 * (clf.predict_proba(data.features) + clf.predict_proba(data.mirrored))
    train_acc = balanced_accuracy(data.labels, train_pred.argmax(axis=1), [0, 1, 2])
    params["training_balanced_accuracy_3class"] = train_acc
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(params, separators=(",", ":")) + "\n", encoding="utf-8")
    out.write(
        f"\nfinal model on all data: training-set 3-class balanced accuracy {train_acc:.3f} (not a score)\n"
        f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
