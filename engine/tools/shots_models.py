"""The two shot-classifier model families trained by :mod:`engine.tools.train_shots`.

* :func:`train_forest`: extremely randomised trees (Geurts et al. 2006; as scikit-learn's
  ``ExtraTreesClassifier``) in numpy, with native missing values: at every split the samples
  whose feature is NaN go to the side that gives the lower weighted Gini impurity, and the node
  stores that side (``missing_left``), as LightGBM / XGBoost do for missing values.
* :func:`train_cnn`: a small 1-D temporal CNN in torch (two kernel-3 ReLU convolutions, mean and
  max pooling over time, linear) on :func:`engine.shots.pose_sequence`, exported as plain lists
  for the numpy inference in :class:`engine.shots.ShotClassifier`.
* :func:`train_frame_mlp`: a one-hidden-layer perceptron in torch on single frames'
  :func:`engine.shots.features.frame_channels` (each frame labelled with its sequence's class);
  a sequence is scored by the mean of its frames' log-probabilities.

Each returns the model part of the JSON parameter file (``trees``, ``cnn`` or ``mlp``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.shots import SHOT_CLASSES
from engine.shots.features import CHANNELS, SEQUENCE_STEPS

__all__ = ["CNN_PARAMS", "MLP_PARAMS", "TREE_PARAMS", "train_cnn", "train_forest", "train_frame_mlp"]

#: Fixed tree hyper-parameters (set by hand, not searched: no inner loop to nest).
TREE_PARAMS: dict[str, Any] = {"n_trees": 60, "max_depth": 8, "min_samples_leaf": 5, "max_features": "sqrt"}
#: Fixed CNN hyper-parameters (set by hand, not searched).
CNN_PARAMS: dict[str, Any] = {"hidden": 24, "epochs": 30, "batch": 128, "lr": 3e-3, "weight_decay": 1e-3,
                              "dropout": 0.3}
#: Fixed frame-MLP hyper-parameters (set by hand, not searched).
MLP_PARAMS: dict[str, Any] = {"hidden": 64, "epochs": 15, "batch": 256, "lr": 3e-3, "weight_decay": 1e-3,
                              "dropout": 0.3, "n_nets": 5}


def _gini(counts: np.ndarray) -> np.ndarray:
    """Weighted Gini impurity times weight: ``W * (1 - sum p^2)`` per row of class weights."""
    total = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = total - np.square(counts).sum(axis=-1) / total
    return np.where(total > 0, g, 0.0)


def _best_split(
    xs: np.ndarray, w: np.ndarray, counts: np.ndarray, rng: np.random.Generator, min_leaf: int
) -> tuple[int, float, bool, np.ndarray] | None:
    """Best random split of samples ``xs [n, k]`` (candidate features) with class weights ``w [n, C]``.

    Returns ``(candidate column, threshold, missing_left, go_left mask)`` or ``None``.
    """
    nan = np.isnan(xs)
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanmin(np.where(nan, np.inf, xs), axis=0), np.nanmax(np.where(nan, -np.inf, xs), axis=0)
    valid = np.isfinite(lo) & np.isfinite(hi) & (hi > lo)
    if not valid.any():
        return None
    thr = np.where(valid, lo + rng.random(xs.shape[1]) * np.where(valid, hi - lo, 0.0), 0.0)
    le = ~nan & (xs <= thr)
    left_c = le.T.astype(np.float64) @ w  # [k, C]
    nan_c = nan.T.astype(np.float64) @ w
    right_c = counts[None, :] - left_c - nan_c
    score_l = _gini(left_c + nan_c) + _gini(right_c)  # NaN go left
    score_r = _gini(left_c) + _gini(right_c + nan_c)  # NaN go right
    miss_left = score_l < score_r
    score = np.where(miss_left, score_l, score_r)
    n_left = le.sum(axis=0) + np.where(miss_left, nan.sum(axis=0), 0)
    ok = valid & (n_left >= min_leaf) & (xs.shape[0] - n_left >= min_leaf)
    if not ok.any():
        return None
    best = int(np.argmin(np.where(ok, score, np.inf)))
    go_left = le[:, best] | (nan[:, best] & bool(miss_left[best]))
    return best, float(thr[best]), bool(miss_left[best]), go_left


def _build_tree(
    x: np.ndarray, onehot_w: np.ndarray, rng: np.random.Generator, max_depth: int, min_leaf: int, n_try: int
) -> dict[str, list]:
    """One extremely randomised tree; returns parallel node lists (see ShotClassifier)."""
    nodes: dict[str, list] = {"feature": [], "threshold": [], "left": [], "right": [], "missing_left": [],
                              "value": []}

    def new_node(idx: np.ndarray) -> int:
        counts = onehot_w[idx].sum(axis=0)
        for key, v in (("feature", -1), ("threshold", 0.0), ("left", -1), ("right", -1), ("missing_left", False)):
            nodes[key].append(v)
        nodes["value"].append((counts / counts.sum()).tolist())
        return len(nodes["feature"]) - 1

    root = new_node(np.arange(x.shape[0]))
    stack = [(root, np.arange(x.shape[0]), 0)]
    while stack:
        node, idx, depth = stack.pop()
        counts = onehot_w[idx].sum(axis=0)
        if depth >= max_depth or idx.size < 2 * min_leaf or np.count_nonzero(counts) <= 1:
            continue
        cand = rng.choice(x.shape[1], size=min(n_try, x.shape[1]), replace=False)
        split = _best_split(x[np.ix_(idx, cand)], onehot_w[idx], counts, rng, min_leaf)
        if split is None:
            continue
        col, thr, miss_left, mask = split
        li, ri = idx[mask], idx[~mask]
        a, b = new_node(li), new_node(ri)
        nodes["feature"][node], nodes["threshold"][node] = int(cand[col]), thr
        nodes["left"][node], nodes["right"][node], nodes["missing_left"][node] = a, b, miss_left
        stack.append((a, li, depth + 1))
        stack.append((b, ri, depth + 1))
    return nodes


def _class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, y.size / (n_classes * np.maximum(counts, 1.0)), 0.0)


def train_forest(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    n_trees: int = 60,
    max_depth: int = 8,
    min_samples_leaf: int = 5,
    max_features: str | int = "sqrt",
    n_classes: int = len(SHOT_CLASSES),
    class_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit extremely randomised trees with balanced class weights and native NaN handling.

    Args:
        x: float64 ``[N, F]`` training features, NaN = not measured (never filled).
        y: int64 ``[N]`` class indices in ``[0, n_classes)``.
        seed: Random seed (the result is deterministic given the seed).
        n_trees: Number of trees.
        max_depth: Maximum depth (root = 0).
        min_samples_leaf: Minimum samples in each leaf.
        max_features: Features tried per node: ``"sqrt"`` or a number.
        n_classes: Number of classes.
        class_weight: ``[n_classes]`` weight of each class's samples; ``None`` balances the classes.

    Returns:
        ``{"trees": [...]}`` in the :class:`engine.shots.ShotClassifier` format.
    """
    x = np.where(np.isinf(x), np.nan, np.asarray(x, np.float64))
    y = np.asarray(y, np.int64)
    cw = _class_weights(y, n_classes) if class_weight is None else np.asarray(class_weight, np.float64)
    onehot_w = np.eye(n_classes)[y] * cw[y][:, None]
    n_try = int(math.sqrt(x.shape[1])) if max_features == "sqrt" else int(max_features)
    rng = np.random.default_rng(seed)
    return {"trees": [_build_tree(x, onehot_w, rng, max_depth, min_samples_leaf, max(1, n_try))
                      for _ in range(n_trees)]}


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel (last axis) standardisation of float ``[..., C]`` with NaN = missing.

    Returns ``(z, mask, mean, std)``: ``z`` standardised with missing values 0, ``mask`` where
    ``x`` is finite, and the ``[C]`` mean and std over the measured values (0 and 1 for a channel
    never measured; a std below 1e-6 becomes 1), as stored in the parameter file.
    """
    mask = np.isfinite(x)
    c = x.shape[-1]
    with np.errstate(all="ignore"):
        mean = np.array([np.nanmean(x[..., j]) if mask[..., j].any() else 0.0 for j in range(c)])
        std = np.array([np.nanstd(x[..., j]) if mask[..., j].any() else 1.0 for j in range(c)])
    std = np.where(std > 1e-6, std, 1.0)
    return np.where(mask, (np.where(mask, x, 0.0) - mean) / std, 0.0), mask, mean, std


def train_cnn(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    hidden: int = 24,
    epochs: int = 30,
    batch: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 1e-3,
    dropout: float = 0.3,
    n_classes: int = len(SHOT_CLASSES),
    class_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit the temporal CNN (Adam, class-balanced cross-entropy, CPU, one thread, seeded).

    Args:
        x: float64 ``[N, SEQUENCE_STEPS * 28]`` flattened :func:`engine.shots.pose_sequence`, NaN = missing.
        y: int64 ``[N]`` class indices.
        seed: Seed of torch and of the batch order (deterministic on CPU with one thread).
        hidden: Channels of both convolutions.
        epochs: Passes over the data.
        batch: Mini-batch size.
        lr: Adam learning rate.
        weight_decay: Adam L2 penalty.
        dropout: Dropout probability after each convolution (training only).
        n_classes: Number of classes.
        class_weight: ``[n_classes]`` loss weight per class; ``None`` balances the classes.

    Returns:
        ``{"cnn": {...}}``: weights as nested lists for :class:`engine.shots.ShotClassifier`.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and faster than contended threads for this tiny net
    try:
        return _train_cnn(torch, x, y, seed, hidden, epochs, batch, lr, weight_decay, dropout, n_classes, class_weight)
    finally:
        torch.set_num_threads(threads)


def _train_cnn(
    torch: Any, x: np.ndarray, y: np.ndarray, seed: int, hidden: int, epochs: int, batch: int, lr: float,
    weight_decay: float, dropout: float, n_classes: int, class_weight: np.ndarray | None,
) -> dict[str, Any]:
    """Body of :func:`train_cnn` (``torch`` passed in: imported only when training)."""
    torch.manual_seed(seed)
    c = len(CHANNELS)
    z, mask, mean, std = _standardise(np.asarray(x, np.float64).reshape(-1, SEQUENCE_STEPS, c))
    inp = torch.tensor(np.concatenate([z, mask], axis=2).transpose(0, 2, 1), dtype=torch.float32)
    target = torch.tensor(np.asarray(y, np.int64))
    conv1 = torch.nn.Conv1d(2 * c, hidden, 3, padding=1)
    conv2 = torch.nn.Conv1d(hidden, hidden, 3, padding=1)
    fc = torch.nn.Linear(2 * hidden, n_classes)
    drop = torch.nn.Dropout(dropout)
    params = [*conv1.parameters(), *conv2.parameters(), *fc.parameters()]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    cw = _class_weights(np.asarray(y, np.int64), n_classes) if class_weight is None else class_weight
    weight = torch.tensor(np.asarray(cw, np.float64), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(inp.shape[0], generator=gen)
        for i in range(0, inp.shape[0], batch):
            b = order[i : i + batch]
            h = torch.relu(conv2(drop(torch.relu(conv1(inp[b])))))
            logits = fc(drop(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)))
            loss = loss_fn(logits, target[b])
            opt.zero_grad()
            loss.backward()
            opt.step()

    def lst(t: torch.Tensor) -> list:
        return np.round(t.detach().double().numpy(), 6).tolist()

    return {"cnn": {"mean": np.round(mean, 6).tolist(), "std": np.round(std, 6).tolist(),
                    "conv1_w": lst(conv1.weight), "conv1_b": lst(conv1.bias), "conv2_w": lst(conv2.weight),
                    "conv2_b": lst(conv2.bias), "fc_w": lst(fc.weight), "fc_b": lst(fc.bias)}}


def train_frame_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    hidden: int = 64,
    epochs: int = 15,
    batch: int = 256,
    lr: float = 3e-3,
    weight_decay: float = 1e-3,
    dropout: float = 0.3,
    n_nets: int = 5,
    n_classes: int = len(SHOT_CLASSES),
    class_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit the frame MLP: ``n_nets`` nets from different seeds, probabilities averaged at inference.

    Each net: AdamW, class-weighted cross-entropy, CPU, one thread, seeded. Averaging nets that
    differ only in their seed (initial weights, batch order) removes most of the spread a single
    net shows between seeds (3-class balanced accuracy 0.657 and 0.695 on the same CV folds).

    Args:
        x: float64 ``[N, 28]`` single frames' :func:`engine.shots.features.frame_channels`, NaN = missing.
        y: int64 ``[N]`` class index of each frame (its sequence's).
        seed: Seed of torch and of the batch order (deterministic on CPU with one thread).
        hidden: Hidden units.
        epochs: Passes over the data.
        batch: Mini-batch size.
        lr: AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        dropout: Dropout probability after the hidden layer (training only).
        n_nets: Nets to train (seeds ``seed``, ``seed + 1``, ...).
        n_classes: Number of classes.
        class_weight: ``[n_classes]`` loss weight per class; ``None`` balances the classes.

    Returns:
        ``{"mlp": {"mean", "std", "nets": [{"w1", "b1", "w2", "b2"}, ...]}}``: nested lists for
        :class:`engine.shots.ShotClassifier`.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    z, mask, mean, std = _standardise(np.asarray(x, np.float64))
    inp = torch.tensor(np.concatenate([z, mask], axis=1), dtype=torch.float32)
    target = torch.tensor(np.asarray(y, np.int64))
    cw = _class_weights(np.asarray(y, np.int64), n_classes) if class_weight is None else class_weight
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(np.asarray(cw, np.float64), dtype=torch.float32))

    def lst(t: Any) -> list:
        return np.round(t.detach().double().numpy(), 6).tolist()

    nets = []
    try:
        for k in range(n_nets):
            torch.manual_seed(seed + k)
            net = torch.nn.Sequential(torch.nn.Linear(inp.shape[1], hidden), torch.nn.ReLU(),
                                      torch.nn.Dropout(dropout), torch.nn.Linear(hidden, n_classes))
            opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
            gen = torch.Generator().manual_seed(seed + k)
            for _ in range(epochs):
                order = torch.randperm(inp.shape[0], generator=gen)
                for i in range(0, inp.shape[0], batch):
                    b = order[i : i + batch]
                    loss = loss_fn(net(inp[b]), target[b])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            nets.append({"w1": lst(net[0].weight), "b1": lst(net[0].bias), "w2": lst(net[3].weight),
                         "b2": lst(net[3].bias)})
    finally:
        torch.set_num_threads(threads)
    return {"mlp": {"mean": np.round(mean, 6).tolist(), "std": np.round(std, 6).tolist(), "nets": nets}}
