"""Numpy inference of the packaged shot classifier (extremely randomised trees) and its JSON loader.

The parameter file ``engine/data/shot_classifier_v1.json`` is produced by
``python -m engine.tools.train_shots``; only numpy is needed at run time.
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
from engine.shots.features import FEATURE_SET, feature_names, shot_features
from engine.shots.handedness import FLIP_INDEX, mirror_keypoints

__all__ = ["SHOT_CLASSES", "ShotClassifier", "ShotPrediction"]

#: Class names of the shot classifier, in output order.
SHOT_CLASSES: tuple[str, ...] = ("pull", "cover_drive", "other")

_FLIP = np.array(FLIP_INDEX)


@dataclass(frozen=True)
class ShotPrediction:
    """A shot's class.

    Attributes:
        label: One of :data:`SHOT_CLASSES`.
        confidence: Probability of ``label`` in [0, 1] (the largest of ``probabilities``).
        probabilities: ``{class: probability}`` for every class, summing to 1.
    """

    label: str
    confidence: float
    probabilities: dict[str, float]


_DATA_PACKAGE = "engine"
_DEFAULT_PARAMS = "data/shot_classifier_v1.json"


class ShotClassifier:
    """Numpy inference of the shot classifier (extremely randomised trees, ``engine.tools.train_shots``).

    The parameter file (JSON) holds ``version``, ``classes``, the ``feature`` definition (name
    and length), per-feature ``fill`` values (training medians, used for NaN), and ``trees``: each
    a dict of parallel node arrays ``feature`` (-1 at leaves), ``threshold``, ``left``, ``right``
    and ``value`` (class probabilities at leaves, ``null`` at inner nodes). A sample goes left when
    ``x[feature] <= threshold``. The probability is the mean of the leaves' distributions.

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
            feature = params["feature"]
            self.feature_set = str(feature["name"])
            n_features = int(feature["n_features"])
            self.fill = np.asarray(params["fill"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"shot classifier parameters {source} are invalid: {exc.__class__.__name__}: {exc}"
            raise ModelError(msg) from None
        if self.classes != SHOT_CLASSES:
            msg = f"shot classifier parameters {source}: classes must be {list(SHOT_CLASSES)}, got {list(self.classes)}"
            raise ModelError(msg)
        if self.feature_set != FEATURE_SET or n_features != len(feature_names()) or self.fill.shape != (n_features,):
            msg = (
                f"shot classifier parameters {source}: feature set must be {FEATURE_SET!r} with "
                f"{len(feature_names())} features, got {self.feature_set!r} with {n_features} "
                f"(fill {self.fill.shape})"
            )
            raise ModelError(msg)
        try:
            trees = []
            for tree in params["trees"]:
                feat = np.asarray(tree["feature"], dtype=np.int64)
                thr = np.asarray(tree["threshold"], dtype=np.float64)
                left = np.asarray(tree["left"], dtype=np.int64)
                right = np.asarray(tree["right"], dtype=np.int64)
                m = feat.shape[0]
                k = len(self.classes)
                rows = [[math.nan] * k if v is None else v for v in tree["value"]]
                value = np.asarray(rows, dtype=np.float64).reshape(len(rows), k)
                if not (thr.shape == left.shape == right.shape == (m,) and value.shape == (m, k)):
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
                trees.append((feat, thr, left, right, value))
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"shot classifier parameters {source} are invalid: {exc.__class__.__name__}: {exc}"
            raise ModelError(msg) from None
        if not trees:
            msg = f"shot classifier parameters {source}: no trees"
            raise ModelError(msg)
        self.n_features = n_features
        self._trees = trees
        self.params = params

    @classmethod
    def load(cls, path: str | Path | None = None) -> ShotClassifier:
        """Load a parameter file; ``None`` (or ``""``) loads the packaged ``shot_classifier_v1.json``.

        Raises:
            ModelError: missing, unreadable or malformed file; the message names the file.
        """
        if path is None or str(path) == "":
            ref = importlib.resources.files(_DATA_PACKAGE).joinpath(_DEFAULT_PARAMS)
            source = f"{_DATA_PACKAGE}/{_DEFAULT_PARAMS} (packaged)"
            try:
                text = ref.read_text(encoding="utf-8")
            except (OSError, ModuleNotFoundError) as exc:
                msg = (
                    f"cannot read shot classifier parameters {source}: {exc}; "
                    "run `python -m engine.tools.train_shots`"
                )
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

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of feature vectors.

        Args:
            features: float ``[F]`` or ``[N, F]``; NaN entries are replaced by the training medians.

        Returns:
            float64 ``[C]`` or ``[N, C]`` (C = 3), rows summing to 1.

        Raises:
            ValueError: wrong feature length.
        """
        x = np.array(features, dtype=np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            msg = f"`features` must have shape (N, {self.n_features}) or ({self.n_features},), got {np.shape(features)}"
            raise ValueError(msg)
        bad = ~np.isfinite(x)
        if bad.any():
            x[bad] = np.broadcast_to(self.fill, x.shape)[bad]
        rows = np.arange(x.shape[0])
        total = np.zeros((x.shape[0], len(self.classes)), np.float64)
        for feat, thr, left, right, value in self._trees:
            node = np.zeros(x.shape[0], np.int64)
            while True:
                f = feat[node]
                inner = f >= 0
                if not inner.any():
                    break
                go_left = x[rows, np.where(inner, f, 0)] <= thr[node]
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            total += value[node]
        total /= total.sum(axis=1, keepdims=True)
        return total[0] if single else total

    def predict(self, features: np.ndarray, mirrored_features: np.ndarray | None = None) -> ShotPrediction:
        """Classify one shot.

        Args:
            features: float ``[F]`` from :func:`shot_features`.
            mirrored_features: The same shot's features after :func:`mirror_keypoints`; when given,
                the probabilities are the mean of both, which makes the class independent of the
                handedness normalisation (the model was trained on both orientations).

        Returns:
            The :class:`ShotPrediction`.
        """
        p = self.predict_proba(features)
        if mirrored_features is not None:
            p = 0.5 * (p + self.predict_proba(mirrored_features))
        p = p / p.sum()
        k = int(np.argmax(p))
        return ShotPrediction(
            label=self.classes[k],
            confidence=float(p[k]),
            probabilities={c: float(v) for c, v in zip(self.classes, p, strict=True)},
        )

    def predict_keypoints(
        self,
        keypoints_xy: np.ndarray,
        t_s: np.ndarray | None = None,
        keypoints_conf: np.ndarray | None = None,
        min_keypoint_conf: float = 0.3,
    ) -> ShotPrediction | None:
        """Features of the sequence and of its mirror image -> :meth:`predict`.

        ``keypoints_xy`` must be isotropic (pixels). Returns ``None`` when :func:`shot_features`
        finds fewer than 2 frames with shoulders and hips.
        """
        f = shot_features(keypoints_xy, t_s, keypoints_conf, min_keypoint_conf)
        if f is None:
            return None
        conf_m = None if keypoints_conf is None else np.asarray(keypoints_conf)[:, _FLIP]
        fm = shot_features(mirror_keypoints(keypoints_xy), t_s, conf_m, min_keypoint_conf)
        return self.predict(f, fm)
