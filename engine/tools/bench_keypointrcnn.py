"""Benchmark of :class:`engine.models.keypointrcnn.KeypointRCNNTopDown`: top-down against full mode.

Run ``python -m engine.tools.bench_keypointrcnn [CLIP] [--frame 100] [--box X1,Y1,X2,Y2] [--runs 10]
[--warmup 2] [--sizes 800 480] [--device auto]``.

One real frame of the nets clip (default ``../shared/data/real/clips/cricket/cover_drive_04_nets.mp4``
relative to the repository, frame 100, ``uint8 [1280, 720, 3]``) and one batter box in frame pixels
(default: the box yolo11n-pose finds on that frame). Random-init weights (``torch.manual_seed(0)``,
no download): the cost of a forward pass does not depend on the weight values, except in full mode
through the number of detections, which is capped at 1 there (only the best one is used).

For each ``min_size`` (``max_size = round(min_size * 1333 / 800)``, torchvision's ratio) it prints
the mean, standard deviation and minimum wall-clock milliseconds per frame over ``runs`` calls after
``warmup`` calls, for ``infer_boxes`` (transform + backbone on the whole frame + keypoint head on the
box) and ``infer_full`` (crop with ``crop_margin`` + the whole model: transform, backbone, RPN, box
head, keypoint head). Each call ends with the results on the host, so CUDA timings include the
synchronisation. Timings use ``time.perf_counter_ns`` on the calling thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from engine.models.keypointrcnn import KeypointRCNNTopDown

_REPO = Path(__file__).resolve().parents[2]
DEFAULT_CLIP = _REPO.parent / "shared" / "data" / "real" / "clips" / "cricket" / "cover_drive_04_nets.mp4"
#: The batter on frame 100 of the default clip, as yolo11n-pose boxes it (frame pixels, xyxy).
DEFAULT_BOX = (463.0, 267.0, 607.0, 607.0)


def read_frame(path: Path, index: int) -> np.ndarray:
    """Decode frame ``index`` (0-based) of ``path`` with PyAV as ``uint8 [H, W, 3]`` BGR.

    Raises:
        SystemExit: the file is missing or has fewer than ``index + 1`` frames.
    """
    import av

    if not path.is_file():
        msg = f"clip not found: {path}"
        raise SystemExit(msg)
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="bgr24")
    msg = f"{path} has fewer than {index + 1} frames"
    raise SystemExit(msg)


def time_ms(call: Callable[[], object], *, runs: int, warmup: int) -> np.ndarray:
    """Wall-clock milliseconds of ``runs`` calls of ``call`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    out = np.empty(runs, np.float64)
    for i in range(runs):
        start = time.perf_counter_ns()
        call()
        out[i] = (time.perf_counter_ns() - start) / 1e6
    return out


def _parse_box(text: str) -> tuple[float, float, float, float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 4 or not (parts[0] < parts[2] and parts[1] < parts[3]):
        msg = f"--box must be X1,Y1,X2,Y2 with X1 < X2 and Y1 < Y2, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return parts[0], parts[1], parts[2], parts[3]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark and write one line per (size, path) to stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m engine.tools.bench_keypointrcnn", description=__doc__.splitlines()[0]
    )
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP, help="video file (default: %(default)s)")
    parser.add_argument("--frame", type=int, default=100, help="0-based frame index (default: %(default)s)")
    parser.add_argument("--box", type=_parse_box, default=DEFAULT_BOX, help="batter box X1,Y1,X2,Y2 in frame px")
    parser.add_argument("--runs", type=int, default=10, help="timed calls per measurement (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default: %(default)s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[800, 480], help="min_size values, px")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    args = parser.parse_args(argv)

    import torch

    image = read_frame(args.clip, args.frame)
    boxes = [np.asarray([args.box], np.float32)]
    lines = [
        f"clip {args.clip.name} frame {args.frame} ({image.shape[1]}x{image.shape[0]}), box {list(args.box)}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, runs {args.runs} after {args.warmup} warm-up",
    ]
    for min_size in args.sizes:
        max_size = round(min_size * 1333 / 800)
        torch.manual_seed(0)
        model = KeypointRCNNTopDown(weights=None, device=args.device, mode="full", min_size=min_size, max_size=max_size)
        model.build()
        for name, call in (
            ("topdown (backbone + keypoint head, 1 box)", lambda m=model: m.infer_boxes([image], boxes)),
            ("full (crop + whole model, best of 1 det) ", lambda m=model: m.infer_full([image], boxes)),
        ):
            ms = time_ms(call, runs=args.runs, warmup=args.warmup)
            lines.append(
                f"min_size {min_size:4d} max_size {max_size:4d} {model.device:7s} {'fp16' if model.half else 'fp32'} "
                f"{name}: mean {ms.mean():9.1f} ms  std {ms.std():7.1f}  min {ms.min():9.1f}"
            )
        del model
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
