"""Numpy inference of the packaged shot classifier and its JSON loader (feature set ``pose_seq_v2``).

The parameter file ``engine/data/shot_classifier_v2.json`` is produced by
``python -m engine.tools.train_shots``; only numpy is needed at run time. Two model families share
the format (``model.type``): ``extra_trees`` on :func:`shot_features` and ``temporal_cnn`` on
:func:`pose_sequence`; the training tool packages the one that wins grouped cross-validation.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ModelError
from engine.shots.features import (
    CHANNELS,
    FEATURE_SET,
    SEQUENCE_STEPS,
    consistent_runs,
    feature_names,
    frame_channels,
    pose_sequence,
    shot_features,
)
from engine.shots.handedness import FLIP_INDEX, mirror_keypoints

__all__ = ["MODEL_TYPES", "SHOT_CLASSES", "ShotClassifier", "ShotPrediction", "softmax"]

#: ``model.type`` values of a parameter file: three families and ``mean`` (the mean score of member models).
MODEL_TYPES: tuple[str, ...] = ("extra_trees", "temporal_cnn", "frame_mlp", "mean")
#: Class names of the shot classifier, in output order.
SHOT_CLASSES: tuple[str, ...] = ("pull", "cover_drive", "other")
#: Floor of tree probabilities before the log (a leaf average of exactly 0 stays finite).
PROB_FLOOR = 1e-3
#: Besides the longest one-person run of a sequence, every other run of at least this many frames
#: is scored too (:meth:`ShotClassifier.keypoint_scores`).
MIN_RUN_FRAMES = 4

_FLIP = np.array(FLIP_INDEX)
_DATA_PACKAGE = "engine"
_DEFAULT_PARAMS = "data/shot_classifier_v2.json"


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(scores / temperature)`` of float ``[..., C]``."""
    z = np.asarray(scores, np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class ShotPrediction:
    """A shot's class.

    Attributes:
        label: One of :data:`SHOT_CLASSES`. ``other`` also when the most probable class was
            ``pull`` or ``cover_drive`` but its probability was below the ``min_confidence`` asked for.
        confidence: Calibrated probability of ``label`` in [0, 1].
        probabilities: ``{class: probability}`` for every class, summing to 1 (calibrated; never
            changed by ``min_confidence``).
        abstained: ``True`` when ``label`` is ``other`` only because of ``min_confidence``.
    """

    label: str
    confidence: float
    probabilities: dict[str, float]
    abstained: bool = False


def _invalid(source: str, exc: Exception) -> ModelError:
    return ModelError(f"shot classifier parameters {source} are invalid: {exc.__class__.__name__}: {exc}")


def _parse_trees(raw: Any, n_features: int, k: int) -> list[tuple[np.ndarray, ...]]:
    """Tree node arrays; raises ValueError/KeyError/TypeError on a malformed tree."""
    trees: list[tuple[np.ndarray, ...]] = []
    for tree in raw:
        feat = np.asarray(tree["feature"], dtype=np.int64)
        thr = np.asarray(tree["threshold"], dtype=np.float64)
        left = np.asarray(tree["left"], dtype=np.int64)
        right = np.asarray(tree["right"], dtype=np.int64)
        miss = np.asarray(tree["missing_left"], dtype=bool)
        m = feat.shape[0]
        rows = [[math.nan] * k if v is None else v for v in tree["value"]]
        value = np.asarray(rows, dtype=np.float64).reshape(len(rows), k)
        if not (thr.shape == left.shape == right.shape == miss.shape == (m,) and value.shape == (m, k)):
            msg = f"tree arrays disagree: {m} nodes, value {value.shape}"
            raise ValueError(msg)
        inner = feat >= 0
        if not np.isfinite(value[~inner]).all():
            msg = "a leaf has no class distribution"
            raise ValueError(msg)
        bad_child = (left <= 0) | (left >= m) | (right <= 0) | (right >= m)
        if (feat >= n_features).any() or (inner & bad_child).any():
            msg = "tree node index out of range"
            raise ValueError(msg)
        trees.append((feat, thr, left, right, miss, value))
    if not trees:
        msg = "no trees"
        raise ValueError(msg)
    return trees


def _parse_cnn(raw: dict[str, Any], k: int) -> dict[str, np.ndarray]:
    """Temporal CNN weights (see :meth:`ShotClassifier._cnn_scores`); raises ValueError on bad shapes."""
    c = len(CHANNELS)
    w = {name: np.asarray(raw[name], dtype=np.float64) for name in
         ("mean", "std", "conv1_w", "conv1_b", "conv2_w", "conv2_b", "fc_w", "fc_b")}
    h = w["conv1_w"].shape[0]
    expected = {"mean": (c,), "std": (c,), "conv1_w": (h, 2 * c, 3), "conv1_b": (h,), "conv2_w": (h, h, 3),
                "conv2_b": (h,), "fc_w": (k, 2 * h), "fc_b": (k,)}
    for name, shape in expected.items():
        if w[name].shape != shape:
            msg = f"cnn {name} has shape {w[name].shape}, expected {shape}"
            raise ValueError(msg)
    return w


def _parse_mlp(raw: dict[str, Any], k: int) -> dict[str, Any]:
    """Frame MLP weights (see :meth:`ShotClassifier._mlp_proba`); raises ValueError on bad shapes."""
    c = len(CHANNELS)
    out: dict[str, Any] = {name: np.asarray(raw[name], dtype=np.float64) for name in ("mean", "std")}
    if out["mean"].shape != (c,) or out["std"].shape != (c,):
        msg = f"mlp mean and std must have shape ({c},), got {out['mean'].shape} and {out['std'].shape}"
        raise ValueError(msg)
    if not isinstance(raw["nets"], list) or not raw["nets"]:
        msg = "mlp nets must be a non-empty list"
        raise ValueError(msg)
    out["nets"] = []
    for i, net in enumerate(raw["nets"]):
        w = {name: np.asarray(net[name], dtype=np.float64) for name in ("w1", "b1", "w2", "b2")}
        h = w["w1"].shape[0]
        expected = {"w1": (h, 2 * c), "b1": (h,), "w2": (k, h), "b2": (k,)}
        for name, shape in expected.items():
            if w[name].shape != shape:
                msg = f"mlp net {i} {name} has shape {w[name].shape}, expected {shape}"
                raise ValueError(msg)
        out["nets"].append(w)
    return out


def _n_features(model_type: str) -> int:
    """Input length of a model family: a shot's features, a resampled sequence, or one frame's channels."""
    if model_type == "extra_trees":
        return len(feature_names())
    return SEQUENCE_STEPS * len(CHANNELS) if model_type == "temporal_cnn" else len(CHANNELS)


def _conv1d_relu(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``relu(conv1d(x))`` with kernel 3, padding 1 (as ``torch.nn.Conv1d``): ``[N, Ci, L] -> [N, Co, L]``."""
    length = x.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    win = np.stack([xp[:, :, j : j + length] for j in range(3)], axis=2)  # [N, Ci, 3, L]
    return np.maximum(np.einsum("ocj,ncjl->nol", weight, win) + bias[None, :, None], 0.0)


class ShotClassifier:
    """Numpy inference of the shot classifier (``engine.tools.train_shots``), calibrated.

    The parameter file (JSON) holds ``version``, ``classes``, the ``feature`` definition (name and
    length), ``model.type`` (:data:`MODEL_TYPES`) and ``calibration.temperature``, and

    * optionally ``fine_classes`` (the model's own output classes, e.g. the ten CricShot10 shot
      types) and ``fine_to_class`` (index into ``classes`` of each): the class probability is the
      sum of its fine classes' probabilities;
    * ``trees`` (``extra_trees``, on :func:`shot_features`): per tree parallel node arrays
      ``feature`` (-1 at leaves), ``threshold``, ``left``, ``right``, ``missing_left`` (where a NaN
      feature goes) and ``value`` (class distributions at leaves). A sample goes left when
      ``x[f] <= threshold``. The fine probabilities are the mean leaf distribution; or
    * ``cnn`` (``temporal_cnn``, on :func:`pose_sequence`): per-channel ``mean`` / ``std``, two
      kernel-3 ReLU convolutions over time on ``[channels, mask]`` (NaN -> 0 after standardising,
      mask = measured), mean and max pooling over time, one linear layer -> softmax; or
    * ``mlp`` (``frame_mlp``, on one frame's :func:`frame_channels`): per-channel ``mean`` /
      ``std`` and ``nets``, each ``[channels, mask]`` -> linear ``w1``, ``b1`` -> ReLU -> linear
      ``w2``, ``b2`` -> softmax; the fine probabilities are the nets' mean. A sequence's score is
      the mean over its frames of the frames' scores; or
    * ``members`` (``mean``): a list of parameter dicts of the other types (their own
      ``calibration`` is ignored); the score is the mean of the members' scores.

    The score of a class is the log of its probability (floored at :data:`PROB_FLOOR`), and the
    published probabilities are ``softmax(score / temperature)`` (temperature scaling, Guo et al. 2017,
    fitted on cross-validation folds' out-of-fold scores).

    Args:
        params: The parsed parameter dict.
        source: Where it came from (for messages).

    Raises:
        ModelError: the dict does not follow the format; the message names ``source``.
    """

    def __init__(self, params: dict[str, Any], source: str = "<dict>") -> None:
        self.source = source
        try:
            self.version = str(params["version"])
            self.classes = tuple(str(c) for c in params["classes"])
            self.feature_set = str(params["feature"]["name"])
            n_features = int(params["feature"]["n_features"])
            self.model_type = str(params["model"]["type"])
            self.temperature = float(params.get("calibration", {}).get("temperature", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise _invalid(source, exc) from None
        if self.classes != SHOT_CLASSES:
            msg = f"shot classifier parameters {source}: classes must be {list(SHOT_CLASSES)}, got {list(self.classes)}"
            raise ModelError(msg)
        if self.model_type not in MODEL_TYPES:
            msg = (f"shot classifier parameters {source}: unknown model type {self.model_type!r} "
                   f"({', '.join(MODEL_TYPES)})")
            raise ModelError(msg)
        want = _n_features(self.model_type) if self.model_type != "mean" else 0
        if self.feature_set != FEATURE_SET or n_features != want:
            msg = (
                f"shot classifier parameters {source}: feature set must be {FEATURE_SET!r} with {want} "
                f"features, got {self.feature_set!r} with {n_features}"
            )
            raise ModelError(msg)
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            msg = f"shot classifier parameters {source}: temperature must be > 0, got {self.temperature}"
            raise ModelError(msg)
        try:
            self.fine_classes = tuple(str(c) for c in params.get("fine_classes", self.classes))
            coarse = [int(i) for i in params.get("fine_to_class", range(len(self.classes)))]
            if len(coarse) != len(self.fine_classes) or not all(0 <= i < len(self.classes) for i in coarse):
                msg = f"fine_to_class must map {len(self.fine_classes)} fine classes to 0..{len(self.classes) - 1}"
                raise ValueError(msg)
        except (TypeError, ValueError) as exc:
            raise _invalid(source, exc) from None
        self._to_coarse = np.eye(len(self.classes))[coarse]  # [K, C]
        k = len(self.fine_classes)
        self._trees: list[tuple[np.ndarray, ...]] = []
        self._cnn: dict[str, np.ndarray] = {}
        self._mlp: dict[str, Any] = {}
        self.members: tuple[ShotClassifier, ...] = ()
        try:
            if self.model_type == "extra_trees":
                self._trees = _parse_trees(params["trees"], n_features, k)
            elif self.model_type == "temporal_cnn":
                self._cnn = _parse_cnn(params["cnn"], k)
            elif self.model_type == "frame_mlp":
                self._mlp = _parse_mlp(params["mlp"], k)
            else:
                raw = params["members"]
                if not isinstance(raw, list) or not raw:
                    msg = "members must be a non-empty list of parameter dicts"
                    raise ValueError(msg)
        except (KeyError, TypeError, ValueError) as exc:
            raise _invalid(source, exc) from None
        if self.model_type == "mean":
            self.members = tuple(ShotClassifier(m, f"{source} member {i}") for i, m in enumerate(raw))
            if any(m.model_type == "mean" for m in self.members):
                msg = f"shot classifier parameters {source}: a mean's members cannot be means"
                raise ModelError(msg)
        self.n_features = n_features
        self.params = params

    @classmethod
    def load(cls, path: str | Path | None = None) -> ShotClassifier:
        """Load a parameter file; ``None`` (or ``""``) loads the packaged ``shot_classifier_v2.json``.

        Raises:
            ModelError: missing, unreadable or malformed file; the message names the file.
        """
        if path is None or str(path) == "":
            ref = importlib.resources.files(_DATA_PACKAGE).joinpath(_DEFAULT_PARAMS)
            source = f"{_DATA_PACKAGE}/{_DEFAULT_PARAMS} (packaged)"
            try:
                text = ref.read_text(encoding="utf-8")
            except (OSError, ModuleNotFoundError) as exc:
                msg = f"cannot read shot classifier parameters {source}: {exc}; run python -m engine.tools.train_shots"
                raise ModelError(msg) from None
        else:
            source = str(path)
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                msg = f"cannot read shot classifier parameters {source}: {exc.strerror or exc}"
                raise ModelError(msg) from None
        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"shot classifier parameters {source} are not valid JSON: {exc}"
            raise ModelError(msg) from None
        if not isinstance(params, dict):
            msg = f"shot classifier parameters {source} must hold a JSON object, got {type(params).__name__}"
            raise ModelError(msg)
        return cls(params, source)

    # ---------------------------------------------------------------------------------------------

    def inputs(
        self,
        keypoints_xy: np.ndarray,
        t_s: np.ndarray | None = None,
        keypoints_conf: np.ndarray | None = None,
        min_keypoint_conf: float = 0.3,
    ) -> np.ndarray | None:
        """The model's input of one sequence (float64 ``[n_features]``, or ``None`` without 2 torso frames).

        :func:`shot_features` for trees, the flattened :func:`pose_sequence` for the CNN; the
        arguments are those of :func:`engine.shots.features.pose_channels`.

        Raises:
            ValueError: a ``frame_mlp`` or ``mean`` model (they score keypoints: :meth:`keypoint_scores`).
        """
        if self.model_type == "extra_trees":
            return shot_features(keypoints_xy, t_s, keypoints_conf, min_keypoint_conf)
        if self.model_type != "temporal_cnn":
            msg = f"a {self.model_type} model scores keypoints (keypoint_scores), not one input vector"
            raise ValueError(msg)
        seq = pose_sequence(keypoints_xy, t_s, keypoints_conf, min_keypoint_conf)
        return None if seq is None else seq.ravel()

    def _tree_proba(self, x: np.ndarray) -> np.ndarray:
        rows = np.arange(x.shape[0])
        total = np.zeros((x.shape[0], len(self.fine_classes)), np.float64)
        for feat, thr, left, right, miss, value in self._trees:
            node = np.zeros(x.shape[0], np.int64)
            while True:
                f = feat[node]
                inner = f >= 0
                if not inner.any():
                    break
                v = x[rows, np.where(inner, f, 0)]
                go_left = np.where(np.isnan(v), miss[node], v <= thr[node])
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            total += value[node]
        return total / total.sum(axis=1, keepdims=True)

    def _cnn_proba(self, x: np.ndarray) -> np.ndarray:
        w = self._cnn
        seq = x.reshape(x.shape[0], SEQUENCE_STEPS, len(CHANNELS))
        mask = np.isfinite(seq)
        z = np.where(mask, (np.where(mask, seq, 0.0) - w["mean"]) / w["std"], 0.0)
        h = np.concatenate([z, mask.astype(np.float64)], axis=2).transpose(0, 2, 1)  # [N, 2C, L]
        h = _conv1d_relu(h, w["conv1_w"], w["conv1_b"])
        h = _conv1d_relu(h, w["conv2_w"], w["conv2_b"])
        pooled = np.concatenate([h.mean(axis=2), h.max(axis=2)], axis=1)
        return softmax(pooled @ w["fc_w"].T + w["fc_b"])

    def _mlp_proba(self, x: np.ndarray) -> np.ndarray:
        mask = np.isfinite(x)
        z = np.where(mask, (np.where(mask, x, 0.0) - self._mlp["mean"]) / self._mlp["std"], 0.0)
        zm = np.concatenate([z, mask.astype(np.float64)], axis=1)
        probs = [softmax(np.maximum(zm @ w["w1"].T + w["b1"], 0.0) @ w["w2"].T + w["b2"]) for w in self._mlp["nets"]]
        return np.mean(probs, axis=0)

    def fine_proba(self, inputs: np.ndarray) -> np.ndarray:
        """Uncalibrated probabilities of the fine classes (``fine_classes``: the CricShot10 shot types).

        Args:
            inputs: float ``[N, F]`` from :meth:`inputs` (``frame_mlp``: frames' :func:`frame_channels`);
                NaN = not measured.

        Returns:
            float64 ``[N, K]``.

        Raises:
            ValueError: a ``mean`` model.
        """
        if self.members:
            msg = "a mean of models scores keypoints (keypoint_scores), not inputs"
            raise ValueError(msg)
        x = np.where(np.isinf(inputs), np.nan, np.asarray(inputs, np.float64))
        if self._trees:
            return self._tree_proba(x)
        return self._cnn_proba(x) if self._cnn else self._mlp_proba(x)

    def scores(self, inputs: np.ndarray) -> np.ndarray:
        """Uncalibrated class scores (log-probabilities, floored) of model inputs.

        Args:
            inputs: float ``[F]`` or ``[N, F]`` from :meth:`inputs`; NaN = not measured.

        Returns:
            float64 ``[C]`` or ``[N, C]``.

        Raises:
            ValueError: wrong input length, or a ``mean`` model.
        """
        if self.members:
            msg = "a mean of models scores keypoints (keypoint_scores), not inputs"
            raise ValueError(msg)
        x = np.array(inputs, dtype=np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            msg = f"`features` must have shape (N, {self.n_features}) or ({self.n_features},), got {np.shape(inputs)}"
            raise ValueError(msg)
        s = np.log(np.maximum(self.fine_proba(x) @ self._to_coarse, PROB_FLOOR))
        return s[0] if single else s

    def predict_proba(self, features: np.ndarray, mirrored: np.ndarray | None = None) -> np.ndarray:
        """Calibrated class probabilities: ``softmax(mean score of the given orientations / T)``.

        Args:
            features: float ``[F]`` or ``[N, F]`` from :meth:`inputs`.
            mirrored: The same shots' inputs after :func:`mirror_keypoints`, or ``None``.

        Returns:
            float64 ``[C]`` or ``[N, C]`` (C = 3), rows summing to 1.
        """
        s = self.scores(features)
        if mirrored is not None:
            s = 0.5 * (s + self.scores(mirrored))
        return softmax(s, self.temperature)

    def predict(
        self, features: np.ndarray, mirrored_features: np.ndarray | None = None, min_confidence: float = 0.0
    ) -> ShotPrediction:
        """Classify one shot from the inputs of its longest one-person run.

        Args:
            features: float ``[F]`` from :meth:`inputs`.
            mirrored_features: The same shot's inputs after :func:`mirror_keypoints`; when given,
                the scores of both are averaged, so the class does not depend on the handedness
                normalisation (the model was trained on both orientations).
            min_confidence: A ``pull`` or ``cover_drive`` below this probability is labelled
                ``other`` (``abstained``); the probabilities are kept as they are.

        Returns:
            The :class:`ShotPrediction`.
        """
        return self._decide(self.predict_proba(features, mirrored_features), min_confidence)

    def _decide(self, p: np.ndarray, min_confidence: float) -> ShotPrediction:
        """Label of calibrated probabilities ``p`` (``[C]``) with the ``min_confidence`` abstention."""
        k = int(np.argmax(p))
        label, abstained = self.classes[k], False
        if label != "other" and p[k] < min_confidence:
            label, abstained = "other", True
        return ShotPrediction(
            label=label,
            confidence=float(p[self.classes.index(label)]),
            probabilities={c: float(v) for c, v in zip(self.classes, p, strict=True)},
            abstained=abstained,
        )

    def keypoint_scores(
        self,
        keypoints_xy: np.ndarray,
        t_s: np.ndarray | None = None,
        keypoints_conf: np.ndarray | None = None,
        min_keypoint_conf: float = 0.3,
    ) -> np.ndarray | None:
        """Uncalibrated class scores of one sequence (the run-time path of every model type).

        Method, by ``model_type``:

        * ``extra_trees`` / ``temporal_cnn``: :func:`engine.shots.features.consistent_runs` splits
          the sequence where the person jumps (another person picked, a camera cut from a close-up
          to a wide shot); the longest run and every other run of at least :data:`MIN_RUN_FRAMES`
          frames is scored on its own (its inputs and those of its mirror image, scores averaged);
          the runs' class probabilities ``exp(score)`` are averaged weighted by their frame counts,
          and the score is the log of that mean. A sequence that is one run (a tracked batter)
          gets exactly the scores of :meth:`predict` on its inputs.
        * ``frame_mlp``: every frame showing shoulders and hips is scored on its own
          (:func:`frame_channels`), the score is the mean over those frames, averaged with the
          mirror image's.
        * ``mean``: the mean of the members' scores (members without a score are left out).

        Args:
            keypoints_xy: ``[T, 17, 2]`` isotropic x, y (pixels), y down.
            t_s: ``[T]`` frame times in seconds, or ``None`` (frame order).
            keypoints_conf: ``[T, 17]`` confidences, or ``None`` (finite keypoints are visible).
            min_keypoint_conf: Visibility threshold in [0, 1].

        Returns:
            float64 ``[C]``, or ``None`` when fewer than 2 frames (of one run, for the sequence
            models) show shoulders and hips.

        Raises:
            ValueError: wrong shapes.
        """
        kp = np.asarray(keypoints_xy, np.float64)
        conf = None if keypoints_conf is None else np.asarray(keypoints_conf, np.float64)
        t = None if t_s is None else np.asarray(t_s, np.float64)
        if t is not None and (kp.ndim < 1 or t.shape != (kp.shape[0],)):
            msg = f"`t_s` must have shape ({kp.shape[0] if kp.ndim else 'T'},), got {t.shape}"
            raise ValueError(msg)
        if self.members:
            found = [s for m in self.members if (s := m.keypoint_scores(kp, t, conf, min_keypoint_conf)) is not None]
            return np.mean(found, axis=0) if found else None
        if self._mlp:
            return self._frame_scores(kp, conf, min_keypoint_conf)
        return self._run_scores(kp, t, conf, min_keypoint_conf)

    def _frame_scores(self, kp: np.ndarray, conf: np.ndarray | None, min_keypoint_conf: float) -> np.ndarray | None:
        """``frame_mlp`` scores: mean over the frames with a torso, both orientations averaged."""
        rows = frame_channels(kp, conf, min_keypoint_conf)
        mirrored = frame_channels(mirror_keypoints(kp), None if conf is None else conf[:, _FLIP], min_keypoint_conf)
        ok = np.isfinite(rows[:, 0])
        if np.count_nonzero(ok) < 2:
            return None
        return 0.5 * (self.scores(rows[ok]).mean(axis=0) + self.scores(mirrored[ok]).mean(axis=0))

    def _run_scores(self, kp: np.ndarray, t: np.ndarray | None, conf: np.ndarray | None,
                    min_keypoint_conf: float) -> np.ndarray | None:
        """Sequence-model scores over the one-person runs (see :meth:`keypoint_scores`)."""
        total, weight = np.zeros(len(self.classes)), 0
        for i, run in enumerate(consistent_runs(kp, conf, min_keypoint_conf)):
            if i > 0 and run.size < MIN_RUN_FRAMES:
                break
            c = None if conf is None else conf[run]
            f = self.inputs(kp[run], None if t is None else t[run], c, min_keypoint_conf)
            if f is None:
                break
            fm = self.inputs(mirror_keypoints(kp[run]), None if t is None else t[run],
                             None if c is None else c[:, _FLIP], min_keypoint_conf)
            s = self.scores(f) if fm is None else 0.5 * (self.scores(f) + self.scores(fm))
            total, weight = total + run.size * np.exp(s), weight + run.size
        return np.log(total / weight) if weight else None

    def predict_keypoints(
        self,
        keypoints_xy: np.ndarray,
        t_s: np.ndarray | None = None,
        keypoints_conf: np.ndarray | None = None,
        min_keypoint_conf: float = 0.3,
        min_confidence: float = 0.0,
    ) -> ShotPrediction | None:
        """Classify one sequence: :meth:`keypoint_scores`, calibrated, then the ``min_confidence`` rule.

        ``keypoints_xy`` ``[T, 17, 2]`` must be isotropic (pixels). Returns ``None`` when fewer than
        2 frames show shoulders and hips.

        Raises:
            ValueError: wrong shapes.
        """
        s = self.keypoint_scores(keypoints_xy, t_s, keypoints_conf, min_keypoint_conf)
        if s is None:
            return None
        return self._decide(softmax(s, self.temperature), min_confidence)
