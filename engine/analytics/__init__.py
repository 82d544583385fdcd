"""Per-source analytics: keypoint dependency matrix (thesis 6.1) and wrist-vs-shoulder fits (6.2).

Conventions (see :mod:`engine.types`): pixel coordinates are original-frame pixels, origin top-left,
x right, y down; ``_norm`` quantities are divided by the frame width / height; times are seconds on
the source's PTS timeline (``pts_s``). ``K`` = 17 COCO keypoints, heatmaps are ``[K, S, S]`` on the
batter's box grid (row = y, column = x).

Modules, each usable on its own:

* :mod:`~engine.analytics.heatmaps`: :func:`render_heatmaps` (Gaussian logits from keypoints, for
  backends without native heatmaps, DESIGN §3) and :func:`spatial_softmax` (DESIGN §4).
* :mod:`~engine.analytics.similarity`: :func:`dependency_matrices` / :func:`dependency_matrix`, the
  Keypoint Dependency Matrix of thesis §6.1 (numpy or torch), its cosine step
  :func:`cosine_similarity_matrices` / :func:`cosine_similarity_matrix`, and the closed form for
  rendered heatmaps :func:`rendered_similarity_matrix`.
* :mod:`~engine.analytics.rolling`: :class:`RollingMean` over a time window and since the start.
* :mod:`~engine.analytics.fits`: :func:`wrist_offsets`, :func:`fit_wrist_trajectory`,
  :class:`RollingWristFit` (thesis §6.2: Δx(t), Δy(t) fits of degree up to 10, capped by
  :func:`fit_degree_cap` for the points at hand, r(t) quadratic, Legendre basis on the window
  mapped to [-1, 1]).
* :mod:`~engine.analytics.source`: :class:`SourceAnalytics` ties them together for one source,
  ``update(PoseResult) -> AnalyticsUpdate``.

Only numpy is used (torch only for tensors given to :func:`dependency_matrices`). Nothing here is
thread-safe: one :class:`SourceAnalytics` per source, called from one thread.
"""

from __future__ import annotations

from engine.analytics.fits import RollingWristFit, WristFit, fit_degree_cap, fit_wrist_trajectory, wrist_offsets
from engine.analytics.heatmaps import render_heatmaps, spatial_softmax
from engine.analytics.rolling import RollingMean
from engine.analytics.similarity import (
    cosine_similarity_matrices,
    cosine_similarity_matrix,
    dependency_matrices,
    dependency_matrix,
    rendered_similarity_matrix,
)
from engine.analytics.source import AnalyticsUpdate, SourceAnalytics

__all__ = [
    "AnalyticsUpdate",
    "RollingMean",
    "RollingWristFit",
    "SourceAnalytics",
    "WristFit",
    "cosine_similarity_matrices",
    "cosine_similarity_matrix",
    "dependency_matrices",
    "dependency_matrix",
    "fit_degree_cap",
    "fit_wrist_trajectory",
    "render_heatmaps",
    "rendered_similarity_matrix",
    "spatial_softmax",
    "wrist_offsets",
]
