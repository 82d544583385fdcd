"""Benchmark of :class:`engine.analytics.SourceAnalytics` per batter frame.

Run ``python -m engine.tools.bench_analytics [--frames 2000] [--fps 60] [--window-s 2] [--size 56]``.
Synthetic data: one batter whose 17 keypoints move smoothly (a swinging wrist) inside a moving box,
at ``fps`` frames per second, so the fit window holds ``window_s * fps`` points. Prints mean and p99
microseconds per batter frame for the whole ``update`` on both heatmap paths (rendered here via the
separable fast path, and given model logits via the generic softmax + cosine) and for each stage
timed on its own: render, softmax + cosine, separable rendered similarity, rolling mean, fit.
Timings are wall-clock (``time.perf_counter_ns``) on the calling thread, after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from engine.analytics import (
    RollingMean,
    RollingWristFit,
    SourceAnalytics,
    cosine_similarity_matrix,
    render_heatmaps,
    rendered_similarity_matrix,
    spatial_softmax,
    wrist_offsets,
)
from engine.config import AnalyticsConfig, BatterConfig
from engine.types import NUM_KEYPOINTS, Frame, Persons, PoseResult

_WIDTH, _HEIGHT = 1280, 720
_T = TypeVar("_T")


def _synthetic_results(frames: int, fps: float, model_heatmaps: bool, size: int) -> list[PoseResult]:
    """A batter moving across the frame with a swinging left wrist (deterministic)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(-0.4, 0.4, (NUM_KEYPOINTS, 2))  # body layout in box units around the centre
    image = np.zeros((_HEIGHT, _WIDTH, 3), np.uint8)
    out = []
    for i in range(frames):
        t = i / fps
        cx, cy = 640.0 + 100.0 * np.sin(0.3 * t), 380.0 + 10.0 * np.cos(0.5 * t)
        w, h = 220.0, 440.0
        kp = np.empty((NUM_KEYPOINTS, 2))
        kp[:, 0] = cx + base[:, 0] * w + rng.normal(0, 1.0, NUM_KEYPOINTS)
        kp[:, 1] = cy + base[:, 1] * h + rng.normal(0, 1.0, NUM_KEYPOINTS)
        kp[5] = (cx - 40.0, cy - 120.0)  # left shoulder
        kp[9] = (kp[5, 0] + 120.0 * np.cos(2.0 * t), kp[5, 1] + 90.0 * np.sin(2.0 * t))  # left wrist arc
        box = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], np.float32)
        persons = Persons(
            xyxy=box,
            conf=np.array([0.9], np.float32),
            track_id=np.array([1], np.int64),
            keypoints_xy=kp[None].astype(np.float32),
            keypoints_conf=np.full((1, NUM_KEYPOINTS), 0.9, np.float32),
        )
        heatmaps = None
        if model_heatmaps:
            heatmaps = render_heatmaps(kp, box[0], size) + rng.normal(0, 0.5, (NUM_KEYPOINTS, size, size)).astype(
                np.float32
            )
        frame = Frame("bench", i, t, 0, image)
        out.append(
            PoseResult(frame, persons, 0, heatmaps, "model" if model_heatmaps else "rendered")
        )
    return out


def _time_each(items: Sequence[_T], fn: Callable[[_T], object], warmup: int) -> np.ndarray:
    """Call ``fn`` on every item; return microseconds per call after ``warmup`` calls, float64."""
    times = np.empty(len(items))
    clock = time.perf_counter_ns
    for i, item in enumerate(items):
        t0 = clock()
        fn(item)
        times[i] = (clock() - t0) / 1e3
    return times[warmup:]


def _line(name: str, us: np.ndarray) -> str:
    return f"  {name:<34} mean {us.mean():8.1f} us   p99 {np.percentile(us, 99):8.1f} us"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the table to stdout; returns the exit status 0."""
    parser = argparse.ArgumentParser(prog="python -m engine.tools.bench_analytics", description=__doc__)
    parser.add_argument("--frames", type=int, default=2000, help="batter frames timed per path")
    parser.add_argument("--fps", type=float, default=60.0, help="synthetic frame rate")
    parser.add_argument("--window-s", type=float, default=2.0, help="analytics window, seconds")
    parser.add_argument("--size", type=int, default=56, help="heatmap grid side, cells")
    args = parser.parse_args(argv)
    warmup = min(200, args.frames // 10)
    cfg = AnalyticsConfig(window_s=args.window_s, heatmap_size=args.size)
    min_conf = BatterConfig().min_keypoint_conf
    rendered = _synthetic_results(args.frames, args.fps, False, args.size)
    model = _synthetic_results(args.frames, args.fps, True, args.size)

    lines = [
        f"batsight analytics benchmark: {args.frames} batter frames, {args.fps:g} fps, window {args.window_s:g} s "
        f"(~{int(args.window_s * args.fps)} fit points), heatmap {args.size}x{args.size}, K={NUM_KEYPOINTS}",
        "whole SourceAnalytics.update per batter frame:",
    ]
    total_rendered = _time_each(rendered, SourceAnalytics(cfg, min_conf).update, warmup)
    total_model = _time_each(model, SourceAnalytics(cfg, min_conf).update, warmup)
    lines.append(_line("rendered heatmaps (fast path)", total_rendered))
    lines.append(_line("model heatmaps (generic path)", total_model))

    lines.append("stages, timed alone:")
    size = args.size
    boxes = [(r.persons.keypoints_xy[0], r.persons.xyxy[0]) for r in rendered]
    logits = [r.heatmaps for r in model if r.heatmaps is not None]  # every one: model_heatmaps=True
    sims = [
        (r.frame.pts_s, rendered_similarity_matrix(kp, box, size)) for r, (kp, box) in zip(rendered, boxes, strict=True)
    ]
    points = [(r.frame.pts_s, *wrist_offsets(r.persons.keypoints_xy[0], _WIDTH, _HEIGHT)) for r in rendered]
    rolling_mean = RollingMean(args.window_s)
    rolling_fit = RollingWristFit(args.window_s, cfg.fit_degree)

    def render(item: tuple[np.ndarray, np.ndarray]) -> object:
        kp, box = item
        return render_heatmaps(kp, box, size)

    def softmax_cosine(item: np.ndarray) -> object:
        return cosine_similarity_matrix(spatial_softmax(item))

    def fast_similarity(item: tuple[np.ndarray, np.ndarray]) -> object:
        kp, box = item
        return rendered_similarity_matrix(kp, box, size)

    def mean(item: tuple[float, np.ndarray]) -> object:
        pts_s, sim = item
        return rolling_mean.update(pts_s, sim), rolling_mean.cumulative_mean

    def fit(item: tuple[float, float, float]) -> object:
        pts_s, dx, dy = item
        return rolling_fit.update(pts_s, dx, dy)

    lines.append(_line("render_heatmaps", _time_each(boxes, render, warmup)))
    lines.append(_line("spatial_softmax + cosine (generic)", _time_each(logits, softmax_cosine, warmup)))
    lines.append(_line("rendered_similarity_matrix (fast)", _time_each(boxes, fast_similarity, warmup)))
    lines.append(_line("RollingMean.update (+ cumulative)", _time_each(sims, mean, warmup)))
    lines.append(_line("RollingWristFit.update (fit)", _time_each(points, fit, warmup)))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
