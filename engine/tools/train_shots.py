"""Train the shot classifier and write ``engine/data/shot_classifier_v2.json``.

Run ``python -m engine.tools.train_shots [--data DIR] [--out FILE] [--no-write]``. It compares three
model families (:mod:`engine.tools.shots_models`: extremely randomised trees on
:func:`engine.shots.shot_features`, a temporal CNN on :func:`engine.shots.pose_sequence`, a frame
MLP on single frames' :func:`engine.shots.features.frame_channels`) and the mean of the scores of
each pair of them by grouped cross-validation, calibrates the winner (temperature scaling on
out-of-fold scores), chooses ``shots.min_confidence``, fits the winner on all data and writes the
parameter file that :class:`engine.shots.ShotClassifier` loads. Seeded: the same data gives the
same file on the same torch build.

Data: ``../shared/data/real/keypoints/cricshot10_mediapipe33/<class>/<class>_NNNN.npy``, MediaPipe
Pose landmarks ``[T, 99]`` of CricShot10 clips (see that folder's ``SOURCES.md``). Classes:
``pull`` -> pull, ``cover`` -> cover_drive, the eight other folders (hook included) -> other. x is
multiplied by 4/3 (CricShot10 videos are 4:3) so that x and y share one scale.

Method:

* Views: every sequence as recorded plus :data:`N_AUG` run-time-like versions
  (:func:`engine.shots.augment.augment_sequence`), each with its mirror image, all with the
  sequence's label. Models are trained on each view's longest one-person run
  (:func:`engine.shots.pose_channels`); test views are scored as at run time, by
  :meth:`engine.shots.ShotClassifier.keypoint_scores`: every one-person run of at least
  :data:`engine.shots.classifier.MIN_RUN_FRAMES` frames, each averaged with its mirror image,
  mixed by frame count.
* Groups: blocks of :data:`GROUP_SIZE` consecutive file indices of a class, merged (union-find)
  with any two sequences of the class whose poses (33 landmarks resampled to 8 frames) are closer
  than half the class's median nearest-neighbour distance (near-duplicates cut from one clip:
  pull 20/21, cover 5/38, straight 1/35, ...). A group never straddles train and test.
* CV: stratified grouped 5-fold, repeated over shuffles. The test fold is scored twice: as
  recorded ("clean") and one augmented version ("run-time-like"). The candidate (a family, or the
  mean of two families' out-of-fold scores, packaged as ``model.type`` ``mean``) with the highest
  mean of the two 3-class balanced accuracies is packaged.
* Calibration: one temperature ``T`` (Guo et al. 2017) minimising the negative log-likelihood of
  the out-of-fold scores; the reported ECE (10 equal-width confidence bins) is cross-fitted: each
  fold's probabilities use a ``T`` fitted on the other folds.
* ``min_confidence``: the value in 0.34, 0.36, ... 0.80 that maximises the 3-class balanced
  accuracy of the run-time-like out-of-fold labels when a ``pull`` / ``cover_drive`` below it
  becomes ``other`` (:func:`engine.tools.shots_metrics.choose_min_confidence`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engine.shots import FEATURE_SET, SHOT_CLASSES, ShotClassifier, feature_names, mediapipe33_to_coco17, softmax
from engine.shots.augment import augment_sequence
from engine.shots.features import (
    CHANNELS,
    SEQUENCE_STEPS,
    consistent_runs,
    frame_channels,
    pose_sequence,
    shot_features,
)
from engine.shots.handedness import mirror_keypoints
from engine.tools.shots_metrics import (
    balanced_accuracy,
    choose_min_confidence,
    confusion,
    expected_calibration_error,
    fit_temperature,
    grouped_folds,
)
from engine.tools.shots_models import CNN_PARAMS, MLP_PARAMS, TREE_PARAMS, train_cnn, train_forest, train_frame_mlp

#: Default data folder, relative to the repository root (``../shared`` of the checkout).
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "keypoints" / "cricshot10_mediapipe33"
#: Default output: the packaged parameter file.
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "shot_classifier_v2.json"
#: Version written into the parameter file.
VERSION = "2.1.0"
#: CricShot10 folder -> class.
FOLDER_CLASS = {"pull": "pull", "cover": "cover_drive"}
#: Assumed frame aspect (width / height) of the CricShot10 videos (their previews are 320x240).
CRICSHOT10_ASPECT = 4.0 / 3.0
#: Consecutive file indices per CV group (before merging near-duplicates).
GROUP_SIZE = 5
#: Augmented versions per sequence (besides the sequence as recorded).
N_AUG = 6
#: CV figures are also reported separately for sequences whose longest one-person run has at
#: least this many frames (MediaPipe followed one person) and for the rest.
RUN_SPLIT = 10
FAMILIES = ("extra_trees", "temporal_cnn", "frame_mlp")
#: Hyper-parameters of each family (fixed, not searched).
FAMILY_PARAMS: dict[str, dict[str, Any]] = {"extra_trees": TREE_PARAMS, "temporal_cnn": CNN_PARAMS,
                                            "frame_mlp": MLP_PARAMS}
#: The models' own output classes: the CricShot10 folders (pull and cover first); every other folder is ``other``.
FINE_CLASSES = ("pull", "cover", "defense", "flick", "hook", "late_cut", "lofted", "square_cut", "straight", "sweep")
#: Class of each fine class (index into SHOT_CLASSES).
FINE_TO_CLASS = tuple(SHOT_CLASSES.index(FOLDER_CLASS.get(f, "other")) for f in FINE_CLASSES)


@dataclass(frozen=True)
class Dataset:
    """Model inputs of the labelled sequences, as recorded and augmented, each with its mirror.

    Attributes:
        trees: float64 ``[N, V, 2, F]`` :func:`shot_features` (view, orientation); NaN = missing.
        sequences: float64 ``[N, V, 2, SEQUENCE_STEPS * 28]`` flattened :func:`pose_sequence`.
        valid: bool ``[N, V]``: the view has 2 frames with a torso (view 0 always, else skipped).
        labels: int64 ``[N]`` index into :data:`engine.shots.SHOT_CLASSES`.
        folders: ``[N]`` CricShot10 folder (the fine shot type).
        groups: int64 ``[N]`` CV group id.
        names: ``[N]`` file names (``folder/file.npy``).
        skipped: Files without 2 frames showing shoulders and hips.
        keypoints: per sequence, the test views as keypoints: ``[(kp [T, 17, 2], t [T] or None)]``
            as recorded (view 0) and the first augmented version (view 1), scored at test time
            through :meth:`ShotClassifier.keypoint_scores` (every one-person run, as at run time).
        run_frames: int64 ``[N]`` frames in the longest one-person run of each sequence as recorded
            (:func:`engine.shots.consistent_runs`), or ``None``; CV figures are also reported
            for sequences with at least :data:`RUN_SPLIT` such frames and for the rest.
        frame_rows: per sequence, float64 ``[m, 28]`` :func:`frame_channels` of every frame with a
            torso of every view and orientation (the ``frame_mlp`` family's training rows).
    """

    trees: np.ndarray
    sequences: np.ndarray
    valid: np.ndarray
    labels: np.ndarray
    folders: np.ndarray
    groups: np.ndarray
    names: list[str]
    skipped: list[str]
    keypoints: list[list[tuple[np.ndarray, np.ndarray | None]]]
    run_frames: np.ndarray | None = None
    frame_rows: list[np.ndarray] | None = None

    def inputs(self, family: str) -> np.ndarray:
        """The input array of a model family."""
        return self.trees if family == "extra_trees" else self.sequences


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


def make_groups(items: list[tuple[str, str, int, np.ndarray]]) -> np.ndarray:
    """CV group id per item: index blocks of :data:`GROUP_SIZE` merged with near-duplicates (see module doc)."""
    n = len(items)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    folders = np.array([it[0] for it in items])
    q = np.linspace(0.0, 1.0, 8)
    poses = []
    for _, _, _, kp in items:
        u = np.linspace(0.0, 1.0, kp.shape[0])
        flat = kp.reshape(kp.shape[0], -1)
        poses.append(np.stack([np.interp(q, u, flat[:, j]) for j in range(flat.shape[1])], axis=1).ravel())
    for folder in np.unique(folders):
        idx = np.flatnonzero(folders == folder)
        for a in idx:
            for b in idx:
                if items[a][2] // GROUP_SIZE == items[b][2] // GROUP_SIZE:
                    parent[find(int(a))] = find(int(b))
        x = np.asarray([poses[i] for i in idx])
        d = np.sqrt(np.mean((x[:, None] - x[None]) ** 2, axis=2))
        np.fill_diagonal(d, np.inf)
        thr = 0.5 * float(np.median(d.min(axis=1)))
        for a, b in zip(*np.nonzero(d < thr), strict=True):
            parent[find(int(idx[a]))] = find(int(idx[b]))
    roots = [find(i) for i in range(n)]
    _, ids = np.unique(roots, return_inverse=True)
    return ids.astype(np.int64)


def _view_inputs(kp: np.ndarray, t: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    out = []
    for k in (kp, mirror_keypoints(kp)):
        f, s = shot_features(k, t), pose_sequence(k, t)
        if f is None or s is None:
            return None
        out.append((f, s.ravel()))
    return np.stack([out[0][0], out[1][0]]), np.stack([out[0][1], out[1][1]])


def build_dataset(root: Path, n_aug: int = N_AUG, seed: int = 0) -> Dataset:
    """Inputs of every sequence under ``root`` (:func:`load_cricshot10`): as recorded and ``n_aug`` augmented."""
    items = load_cricshot10(root)
    groups_all = make_groups(items)
    rng = np.random.default_rng(seed)
    n_tree, n_seq = len(feature_names()), SEQUENCE_STEPS * len(CHANNELS)
    trees, seqs, valid, labels, folders, groups, names, skipped = [], [], [], [], [], [], [], []
    keypoints, frame_rows = [], []
    for (folder, name, _, kp), group in zip(items, groups_all, strict=True):
        first = _view_inputs(kp, None)
        if first is None:
            skipped.append(f"{folder}/{name}")
            continue
        tv, sv, ok = [first[0]], [first[1]], [True]
        test_views: list[tuple[np.ndarray, np.ndarray | None]] = [(kp, None)]
        rows = [frame_channels(kp), frame_channels(mirror_keypoints(kp))]
        for _ in range(n_aug):
            aug = augment_sequence(kp, rng)
            if len(test_views) < 2:
                test_views.append(aug)
            rows += [frame_channels(aug[0]), frame_channels(mirror_keypoints(aug[0]))]
            res = _view_inputs(*aug)
            ok.append(res is not None)
            tv.append(res[0] if res is not None else np.full((2, n_tree), np.nan))
            sv.append(res[1] if res is not None else np.full((2, n_seq), np.nan))
        trees.append(tv)
        seqs.append(sv)
        valid.append(ok)
        labels.append(SHOT_CLASSES.index(FOLDER_CLASS.get(folder, "other")))
        folders.append(folder)
        groups.append(group)
        names.append(f"{folder}/{name}")
        keypoints.append(test_views)
        all_rows = np.concatenate(rows)
        frame_rows.append(all_rows[np.isfinite(all_rows[:, 0])])
    run_frames = np.array([consistent_runs(v[0][0])[0].size for v in keypoints], np.int64)
    return Dataset(np.asarray(trees), np.asarray(seqs), np.asarray(valid), np.asarray(labels, np.int64),
                   np.asarray(folders), np.asarray(groups, np.int64), names, skipped, keypoints, run_frames,
                   frame_rows)


# --------------------------------------------------------------------------------------------------
# training, scoring, calibration
# --------------------------------------------------------------------------------------------------


def _params(family: str, model: dict[str, Any], temperature: float = 1.0) -> dict[str, Any]:
    n = {"extra_trees": len(feature_names()), "temporal_cnn": SEQUENCE_STEPS * len(CHANNELS),
         "frame_mlp": len(CHANNELS)}.get(family, 0)
    return {"version": VERSION, "classes": list(SHOT_CLASSES), "fine_classes": list(FINE_CLASSES),
            "fine_to_class": list(FINE_TO_CLASS), "feature": {"name": FEATURE_SET, "n_features": n},
            "model": {"type": family}, "calibration": {"temperature": temperature}, **model}


def fine_class_weights(fine: np.ndarray) -> np.ndarray:
    """``[K]`` sample weight per fine class: each of the 3 classes weighs 1/3 in all.

    A class's weight is shared equally by its fine classes present (pull 1/3; each of the 8 other
    shot types 1/24).
    """
    counts = np.bincount(fine, minlength=len(FINE_CLASSES)).astype(np.float64)
    coarse = np.asarray(FINE_TO_CLASS)
    w = np.zeros(len(FINE_CLASSES))
    for c in range(len(SHOT_CLASSES)):
        members = np.flatnonzero((coarse == c) & (counts > 0))
        w[members] = fine.size / (len(SHOT_CLASSES) * members.size * counts[members])
    return w


def fit_family(data: Dataset, rows: np.ndarray, family: str, seed: int) -> ShotClassifier:
    """Train ``family`` on every valid view and orientation of the sequences ``rows`` (bool ``[N]``).

    ``frame_mlp``: on every frame with a torso of those views (:attr:`Dataset.frame_rows`).
    """
    fine = np.array([FINE_CLASSES.index(f) for f in data.folders[rows]], np.int64)
    if family == "frame_mlp":
        if data.frame_rows is None:
            msg = "the dataset has no frame rows"
            raise ValueError(msg)
        picked = [data.frame_rows[i] for i in np.flatnonzero(rows)]
        xs = np.concatenate(picked)
        ys = np.repeat(fine, [r.shape[0] for r in picked])
    else:
        x = data.inputs(family)[rows]  # [n, V, 2, F]
        ok = data.valid[rows]
        xs = x[ok].reshape(-1, x.shape[-1])
        ys = np.repeat(np.broadcast_to(fine[:, None], ok.shape)[ok], 2)
    kw: dict[str, Any] = {"n_classes": len(FINE_CLASSES), "class_weight": fine_class_weights(ys)}
    if family == "extra_trees":
        model = train_forest(xs, ys, seed=seed, **TREE_PARAMS, **kw)
    elif family == "temporal_cnn":
        model = train_cnn(xs, ys, seed=seed, **CNN_PARAMS, **kw)
    else:
        model = train_frame_mlp(xs, ys, seed=seed, **MLP_PARAMS, **kw)
    return ShotClassifier(_params(family, model), "<training>")


def view_scores(clf: ShotClassifier, data: Dataset, rows: np.ndarray, view: int) -> np.ndarray:
    """``[n, C]`` uncalibrated scores of test view ``view`` (0 or 1) by :meth:`ShotClassifier.keypoint_scores`.

    Exactly the run-time path: every one-person run of the view, each averaged over both
    orientations. NaN rows where the view has no run with 2 torso frames.
    """
    out = np.full((int(np.count_nonzero(rows)), len(SHOT_CLASSES)), np.nan)
    for j, i in enumerate(np.flatnonzero(rows)):
        kp, t = data.keypoints[i][view]
        s = clf.keypoint_scores(kp, t)
        if s is not None and data.valid[i, view]:
            out[j] = s
    return out


def cross_validate(data: Dataset, family: str, *, k: int = 5, seeds: tuple[int, ...] = (0, 1)) -> dict[str, Any]:
    """Grouped stratified k-fold CV of one family, repeated over ``seeds`` (see module doc).

    Returns :func:`summarise_scores` of the out-of-fold scores, plus ``scores`` (per view, one
    ``[N, 3]`` array per seed) and ``fold_ids`` (the fold of each sequence, per seed).
    """
    views = ("clean", "runtime_like")
    scores: dict[str, list[np.ndarray]] = {v: [] for v in views}
    fold_ids = []
    for seed in seeds:
        fold = grouped_folds(data.labels, data.groups, k, seed)
        s = {v: np.full((data.labels.size, 3), np.nan) for v in views}
        for f in range(k):
            te = fold == f
            clf = fit_family(data, ~te, family, seed * 100 + f)
            s["clean"][te] = view_scores(clf, data, te, 0)
            s["runtime_like"][te] = view_scores(clf, data, te, 1)
        fold_ids.append(fold)
        for v in views:
            scores[v].append(s[v])
    return {"family": family, "folds": k, "seeds": list(seeds), "scores": scores, "fold_ids": fold_ids,
            **summarise_scores(data, fold_ids, scores, k)}


def summarise_scores(data: Dataset, fold_ids: list[np.ndarray], scores: dict[str, list[np.ndarray]],
                     k: int) -> dict[str, Any]:
    """CV figures of out-of-fold scores (``scores[view][i]``: ``[N, 3]`` of the shuffle with folds ``fold_ids[i]``).

    Returns per test view (``clean``, ``runtime_like``): 3-class and pull-vs-cover balanced
    accuracies (mean, sd over shuffles), summed confusion matrices, per-folder predicted-label
    counts, ECE before and after (cross-fitted) temperature scaling; plus the out-of-fold scores
    of the first shuffle (``oof``) and a temperature fitted on all out-of-fold scores.
    """
    y, pc = data.labels, data.labels < 2
    out: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in scores}
    for view, per_seed in scores.items():
        for fold, s in zip(fold_ids, per_seed, strict=True):
            ok = np.isfinite(s).all(axis=1)
            cal = np.zeros_like(s)
            for f in range(k):  # cross-fitted temperature
                tr_ok, te_ok = ok & (fold != f), ok & (fold == f)
                cal[te_ok] = softmax(s[te_ok], fit_temperature(s[tr_ok], y[tr_ok]))
            pred = s.argmax(axis=1)
            runs[view].append({
                "three_class": balanced_accuracy(y[ok], pred[ok], [0, 1, 2]),
                "pull_vs_cover": balanced_accuracy(y[ok & pc], s[ok & pc, :2].argmax(axis=1), [0, 1]),
                "confusion": confusion(y[ok], pred[ok], 3),
                "ece_raw": expected_calibration_error(softmax(s[ok]), y[ok]),
                "ece_calibrated": expected_calibration_error(cal[ok], y[ok]),
                "folder_counts": {str(fd): np.bincount(pred[ok & (data.folders == fd)], minlength=3).tolist()
                                  for fd in np.unique(data.folders)},
                "n": int(ok.sum()), "scores": s, "calibrated": cal,
                **_by_run_length(data, ok, s),
            })
    for view, rs in runs.items():
        out[view] = {
            **{f"{m}_{a}": float(getattr(np, a)([r[m] for r in rs])) for m in ("three_class", "pull_vs_cover",
                                                                                "ece_raw", "ece_calibrated")
               for a in ("mean", "std")},
            "confusion": sum(r["confusion"] for r in rs).tolist(),
            "folder_counts": {fd: np.sum([r["folder_counts"][fd] for r in rs], axis=0).tolist()
                              for fd in rs[0]["folder_counts"]},
            "n_per_seed": rs[0]["n"],
            **{f"{m}_{a}": float(getattr(np, a)([r[m] for r in rs])) for m in _BY_RUN_KEYS if m in rs[0]
               for a in ("mean", "std")},
            **{f"{m}_n": rs[0][f"{m}_n"] for m in ("run_long", "run_short") if f"{m}_n" in rs[0]},
        }
    out["oof"] = {view: (rs[0]["scores"], rs[0]["calibrated"]) for view, rs in runs.items()}
    s_all = np.concatenate([np.concatenate(v) for v in scores.values()])
    y_all = np.tile(y, sum(len(v) for v in scores.values()))
    ok = np.isfinite(s_all).all(axis=1)
    out["temperature"] = fit_temperature(s_all[ok], y_all[ok])
    return out


_BY_RUN_KEYS = tuple(f"{m}_{q}" for m in ("run_long", "run_short") for q in ("three_class", "pull_vs_cover"))


def _by_run_length(data: Dataset, ok: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    """Balanced accuracies of sequences whose longest one-person run has ``>= RUN_SPLIT`` frames, and of the rest.

    Keys ``run_long_*`` and ``run_short_*``; ``*_n`` counts pull, cover drive and other.
    """
    if data.run_frames is None:
        return {}
    y, pc, pred = data.labels, data.labels < 2, s.argmax(axis=1)
    out: dict[str, Any] = {}
    long_run = data.run_frames >= RUN_SPLIT
    for name, m in (("run_long", ok & long_run), ("run_short", ok & ~long_run)):
        out[f"{name}_three_class"] = balanced_accuracy(y[m], pred[m], [0, 1, 2])
        out[f"{name}_pull_vs_cover"] = balanced_accuracy(y[m & pc], s[m & pc, :2].argmax(axis=1), [0, 1])
        out[f"{name}_n"] = [int(np.sum(m & (y == c))) for c in range(3)]
    return out


def _round_tree(tree: dict[str, list]) -> dict[str, list]:
    feat = tree["feature"]
    return {
        "feature": feat,
        "threshold": [float(f"{v:.5g}") if f >= 0 else 0 for f, v in zip(feat, tree["threshold"], strict=True)],
        "left": tree["left"],
        "right": tree["right"],
        "missing_left": [int(m) for m in tree["missing_left"]],
        "value": [None if f >= 0 else [round(v, 3) for v in row] for f, row in zip(feat, tree["value"], strict=True)],
    }


def _member_params(data: Dataset, family: str, seed: int) -> dict[str, Any]:
    """Parameters of ``family`` fitted on all of ``data`` (temperature 1; no CV report)."""
    clf = fit_family(data, np.ones(data.labels.size, bool), family, seed)
    model: dict[str, Any] = {"trees": [_round_tree(t) for t in clf.params["trees"]]} if family == "extra_trees" else {
        k: clf.params[k] for k in ("cnn", "mlp") if k in clf.params}
    params = _params(family, model)
    names = {"extra_trees": feature_names(), "frame_mlp": list(CHANNELS)}.get(
        family, [f"{c}@{i}" for i in range(SEQUENCE_STEPS) for c in CHANNELS])
    params["feature"] |= {"names": names,
                          "description": "engine.shots.features (pose_seq_v2) of the right-hander-frame keypoints; "
                          "scores of the sequence and its mirror image are averaged"}
    params["model"] |= {"seed": seed, **FAMILY_PARAMS[family], "class_weight": "balanced"}
    return params


def fit_params(data: Dataset, candidate: str, cv: dict[str, Any], min_confidence: dict[str, Any],
               *, seed: int = 0) -> dict[str, Any]:
    """The parameter file's content: ``candidate`` fitted on all of ``data`` plus its description and CV report.

    ``candidate`` is a family or ``"a+b"``, the mean of two families' scores (``model.type`` ``mean``).
    """
    families = candidate.split("+")
    members = [_member_params(data, f, seed) for f in families]
    temperature = round(cv["chosen"]["temperature"], 4)
    if len(members) == 1:
        params = members[0]
        params["calibration"] = {"temperature": temperature}
    else:
        params = _params("mean", {"members": members}, temperature)
        params["model"] |= {"members": families}
    counts = {c: int(np.sum(data.labels == i)) for i, c in enumerate(SHOT_CLASSES)}
    params["calibration"] |= {"method": "temperature scaling on out-of-fold scores of the grouped CV",
                              "ece_clean_raw": cv["chosen"]["clean"]["ece_raw_mean"],
                              "ece_clean_calibrated": cv["chosen"]["clean"]["ece_calibrated_mean"]}
    params["min_confidence"] = min_confidence
    params["created"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    params["produced_by"] = "python -m engine.tools.train_shots"
    params["training_data"] = {
        "source": "CricShot10 MediaPipe-33 keypoints (MujtabaJunaid/Cricket-Shot-Pose-Estimation "
        "data/processed, commit 13dfd6db), mapped to COCO-17",
        "classes": counts,
        "folders_as_other": sorted(set(data.folders.tolist()) - set(FOLDER_CLASS)),
        "augmentation": f"mirror image of every view; {N_AUG} engine.shots.augment.augment_sequence versions",
        "aspect_assumed": CRICSHOT10_ASPECT,
        "skipped": data.skipped,
    }
    params["cv"] = {name: {k: v for k, v in r.items() if k not in ("oof", "scores", "fold_ids")}
                    for name, r in cv.items() if name != "chosen"}
    params["cv"]["chosen"] = candidate
    return params


def _format_confusion(matrix: list[list[int]], names: list[str]) -> str:
    width = max(len(n) for n in names) + 2
    lines = [" " * width + "".join(f"{n:>{width}}" for n in names) + "   <- predicted"]
    for name, row in zip(names, matrix, strict=True):
        lines.append(f"{name:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def _report(cv: dict[str, Any]) -> str:
    lines = [f"\n== {cv['family']} (grouped {cv['folds']}-fold x {len(cv['seeds'])} shuffles)"]
    for view in ("clean", "runtime_like"):
        r = cv[view]
        lines.append(
            f"{view}: 3-class {r['three_class_mean']:.3f} +- {r['three_class_std']:.3f}, pull vs cover "
            f"{r['pull_vs_cover_mean']:.3f} +- {r['pull_vs_cover_std']:.3f}, ECE raw {r['ece_raw_mean']:.3f} "
            f"-> calibrated {r['ece_calibrated_mean']:.3f} (n={r['n_per_seed']} per shuffle)"
        )
        for m, words in (("run_long", f">= {RUN_SPLIT}"), ("run_short", f"< {RUN_SPLIT}")):
            if f"{m}_n" in r:
                lines.append(
                    f"  longest one-person run {words} frames (pull, cover, other = {r[f'{m}_n']}): 3-class "
                    f"{r[f'{m}_three_class_mean']:.3f} +- {r[f'{m}_three_class_std']:.3f}, pull vs cover "
                    f"{r[f'{m}_pull_vs_cover_mean']:.3f} +- {r[f'{m}_pull_vs_cover_std']:.3f}")
        lines.append(_format_confusion(r["confusion"], list(SHOT_CLASSES)))
        lines.append("per folder (pull, cover_drive, other): " + ", ".join(
            f"{fd} {c}" for fd, c in r["folder_counts"].items()))
    lines.append(f"temperature fitted on all out-of-fold scores: {cv['temperature']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: build the views, cross-validate the families and their pairs, fit the winner, write the file."""
    parser = argparse.ArgumentParser(prog="python -m engine.tools.train_shots", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cricshot10_mediapipe33 folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="parameter file to write")
    parser.add_argument("--folds", type=int, default=5, help="CV folds")
    parser.add_argument("--seeds", type=int, default=2, help="CV repetitions with different shuffles")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES, help="families to compare")
    parser.add_argument("--no-write", action="store_true", help="only report the cross-validation")
    args = parser.parse_args(argv)
    out, t0 = sys.stdout, time.monotonic()
    data = build_dataset(args.data)
    counts = ", ".join(f"{c}={int(np.sum(data.labels == i))}" for i, c in enumerate(SHOT_CLASSES))
    out.write(f"data: {len(data.names)} sequences ({counts}) in {np.unique(data.groups).size} groups; "
              f"skipped {data.skipped}; views built in {time.monotonic() - t0:.0f} s\n")
    results = {}
    for family in args.families:
        results[family] = cross_validate(data, family, k=args.folds, seeds=tuple(range(args.seeds)))
        out.write(_report(results[family]) + f"\n({time.monotonic() - t0:.0f} s)\n")
        out.flush()
    for a, b in itertools.combinations(list(results), 2):  # candidates too: the mean of two families' scores
        ra, rb = results[a], results[b]
        mean = {v: [(x + y) / 2.0 for x, y in zip(ra["scores"][v], rb["scores"][v], strict=True)] for v in ra["scores"]}
        results[f"{a}+{b}"] = {"family": f"{a}+{b} (mean of scores)", "folds": args.folds, "seeds": ra["seeds"],
                               "scores": mean, "fold_ids": ra["fold_ids"],
                               **summarise_scores(data, ra["fold_ids"], mean, args.folds)}
        out.write(_report(results[f"{a}+{b}"]) + "\n")
    chosen = max(results, key=lambda f: results[f]["clean"]["three_class_mean"]
                 + results[f]["runtime_like"]["three_class_mean"])
    cv = results | {"chosen": results[chosen]}
    _, cal = cv["chosen"]["oof"]["runtime_like"]
    ok = np.isfinite(cv["chosen"]["oof"]["runtime_like"][0]).all(axis=1)
    thr, stats = choose_min_confidence(cal[ok], data.labels[ok])
    hooks = np.asarray(cv["chosen"]["clean"]["folder_counts"].get("hook", [0, 0, 0]))
    prec, recall = stats.get("precision", float("nan")), stats.get("pull_cover_recall", 0.0)
    out.write(f"\nchosen: {chosen}; min_confidence {thr:.2f} (run-time-like OOF after abstaining: 3-class "
              f"{stats['balanced_accuracy']:.3f}, precision of kept pull/cover {prec:.3f}, pull/cover recall "
              f"{recall:.3f}); "
              f"hooks labelled pull {hooks[0]}/{hooks.sum()} (clean, summed over shuffles)\n")
    if args.no_write:
        return 0
    params = fit_params(data, chosen, cv, {"value": thr, **stats, "chosen_by": "max 3-class balanced accuracy "
                                                          "of the run-time-like out-of-fold labels after abstaining"})
    ShotClassifier(params, str(args.out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(params, separators=(",", ":")) + "\n", encoding="utf-8")
    out.write(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) after {time.monotonic() - t0:.0f} s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
