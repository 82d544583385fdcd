"""Per-source analytics: one batter frame in, its dependency matrix, means and wrist fit out.

:class:`SourceAnalytics` ties the pieces of :mod:`engine.analytics` together for one source
(``update(PoseResult) -> AnalyticsUpdate``). Not thread-safe: one instance per source, called from
that source's analytics thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.analytics.fits import RollingWristFit, WristFit, keypoint_index, wrist_offsets
from engine.analytics.rolling import RollingMean
from engine.analytics.similarity import dependency_matrix, rendered_similarity_matrix
from engine.config import AnalyticsConfig
from engine.types import NUM_KEYPOINTS, PoseResult, check_array

__all__ = ["AnalyticsUpdate", "SourceAnalytics"]


@dataclass(frozen=True)
class AnalyticsUpdate:
    """Analytics of one batter frame.

    Attributes:
        similarity: float32 ``[K, K]`` Keypoint Dependency Matrix of this frame (thesis §6.1).
        window_mean: float32 ``[K, K]`` mean of the matrices with pts in ``(pts_s - window_s, pts_s]``.
        cumulative_mean: float32 ``[K, K]`` mean of every matrix since the start or the last
            timeline break.
        window_frames: Number of batter frames in ``window_mean`` (>= 1).
        pairs: ``{"a/b": similarity}`` for the configured keypoint pairs, from this frame's matrix.
        fit: Wrist-vs-shoulder fit of the window, or ``None`` (wrist or shoulder below the
            confidence threshold this frame, or fewer than two points).
        dx: This frame's Δx (frame widths), ``None`` when wrist or shoulder is not confident.
        dy: This frame's Δy (frame heights), ``None`` likewise.

    Raises:
        TypeError: from ``__post_init__`` when a matrix is not a ``numpy.ndarray``.
        ValueError: from ``__post_init__`` when a matrix is not float32 ``[K, K]`` or
            ``window_frames < 1``.
    """

    similarity: np.ndarray = field(repr=False)
    window_mean: np.ndarray = field(repr=False)
    cumulative_mean: np.ndarray = field(repr=False)
    window_frames: int
    pairs: dict[str, float]
    fit: WristFit | None
    dx: float | None
    dy: float | None

    def __post_init__(self) -> None:
        for name in ("similarity", "window_mean", "cumulative_mean"):
            check_array(name, getattr(self, name), (NUM_KEYPOINTS, NUM_KEYPOINTS), np.float32)
        if self.window_frames < 1:
            msg = f"`window_frames` must be >= 1, got {self.window_frames}"
            raise ValueError(msg)


class SourceAnalytics:
    """All analytics state of one source: dependency matrix means and the rolling wrist fit.

    Per batter frame: the Keypoint Dependency Matrix of the heatmap logits
    (:func:`~engine.analytics.similarity.dependency_matrix` of the model's ``result.heatmaps``, or
    the model's own ``result.similarity`` of them when given, or of maps rendered from the batter's
    keypoints and box with :func:`~engine.analytics.heatmaps.render_heatmaps` when ``None``); window
    and cumulative means over frame PTS (:class:`~engine.analytics.rolling.RollingMean`);
    configured pair values; and, when both the wrist and the shoulder
    keypoints have confidence >= ``min_keypoint_conf``, the point ``(pts_s, Δx, Δy)`` is added to a
    :class:`~engine.analytics.fits.RollingWristFit` and the window is refitted (otherwise the point is skipped and the
    frame's ``fit`` is ``None``).

    When this object renders the heatmaps itself it uses
    :func:`~engine.analytics.similarity.rendered_similarity_matrix`, which gives the same matrix
    without building the ``[K, S, S]`` maps.

    Not thread-safe; one instance per source, called from that source's analytics thread.

    Args:
        config: Window length, heatmap size, fit degree, wrist / shoulder names and pairs.
        min_keypoint_conf: Keypoint confidence threshold for the fit, in [0, 1].

    Raises:
        ValueError: ``min_keypoint_conf`` outside [0, 1].
    """

    def __init__(self, config: AnalyticsConfig, min_keypoint_conf: float) -> None:
        if not 0.0 <= min_keypoint_conf <= 1.0:
            msg = f"`min_keypoint_conf` must lie in [0, 1], got {min_keypoint_conf!r}"
            raise ValueError(msg)
        self._config = config
        self._min_conf = float(min_keypoint_conf)
        self._wrist = keypoint_index(config.wrist, "wrist")
        self._shoulder = keypoint_index(config.shoulder, "shoulder")
        self._pairs = [
            (f"{a}/{b}", keypoint_index(a, "pairs"), keypoint_index(b, "pairs")) for a, b in config.pairs
        ]
        self._mean = RollingMean(config.window_s)
        self._fit = RollingWristFit(config.window_s, config.fit_degree)

    @property
    def config(self) -> AnalyticsConfig:
        """The analytics configuration."""
        return self._config

    def reset(self) -> None:
        """Forget all state (means and fit window)."""
        self._mean.reset()
        self._fit.reset()

    def reset_window(self) -> None:
        """Restart the rolling window and the fit window; keep the cumulative mean of the source."""
        self._mean.reset_window()
        self._fit.reset()

    def similarity(self, result: PoseResult) -> np.ndarray | None:
        """This frame's float32 ``[K, K]`` dependency matrix, or ``None`` without a batter (no state change).

        Raises:
            TypeError: ``result.heatmaps`` or ``result.similarity`` is not a ``numpy.ndarray``.
            ValueError: ``result.batter`` out of range, ``result.heatmaps`` not ``[K, S, S]`` or
                ``result.similarity`` not ``[K, K]``.
        """
        b = self._batter_index(result)
        if b is None:
            return None
        persons = result.persons
        if result.heatmaps is None:
            return rendered_similarity_matrix(
                persons.keypoints_xy[b], persons.xyxy[b], self._config.heatmap_size
            )
        if result.similarity is not None:  # computed on the inference device from the same heatmaps
            check_array("similarity", result.similarity, (NUM_KEYPOINTS, NUM_KEYPOINTS))
            return np.ascontiguousarray(result.similarity, np.float32)
        check_array("heatmaps", result.heatmaps, (NUM_KEYPOINTS, "S", "S"))
        return dependency_matrix(result.heatmaps)

    @staticmethod
    def _batter_index(result: PoseResult) -> int | None:
        b = result.batter
        if b is None:
            return None
        n = len(result.persons)
        if not 0 <= b < n:
            msg = f"`batter` must index one of the {n} persons, got {b}"
            raise ValueError(msg)
        return int(b)

    def update(self, result: PoseResult) -> AnalyticsUpdate | None:
        """Process one frame's pose result.

        Args:
            result: The frame's persons, batter index and (optional) batter heatmap logits.

        Returns:
            The frame's :class:`AnalyticsUpdate`, or ``None`` when ``result.batter is None``
            (state is kept unchanged).

        Raises:
            TypeError: as :meth:`similarity`.
            ValueError: as :meth:`similarity`, or a non-finite ``pts_s``.
        """
        sim = self.similarity(result)
        if sim is None:
            return None
        b = int(result.batter)  # type: ignore[arg-type]  # not None: similarity() returned a matrix
        frame = result.frame
        pts_s = frame.pts_s
        window_mean = self._mean.update(pts_s, sim).astype(np.float32)
        cumulative = self._mean.cumulative_mean
        cumulative_mean = (cumulative if cumulative is not None else window_mean).astype(np.float32)
        pairs = {key: float(sim[ia, ib]) for key, ia, ib in self._pairs}

        conf = result.persons.keypoints_conf[b]
        dx: float | None = None
        dy: float | None = None
        fit: WristFit | None = None
        if conf[self._wrist] >= self._min_conf and conf[self._shoulder] >= self._min_conf:
            dx, dy = wrist_offsets(
                result.persons.keypoints_xy[b],
                frame.width,
                frame.height,
                self._config.wrist,
                self._config.shoulder,
            )
            fit = self._fit.update(pts_s, dx, dy)
        return AnalyticsUpdate(
            similarity=sim,
            window_mean=window_mean,
            cumulative_mean=cumulative_mean,
            window_frames=self._mean.count,
            pairs=pairs,
            fit=fit,
            dx=dx,
            dy=dy,
        )
