"""Benchmark of :class:`engine.models.keypointrcnn.KeypointRCNNTopDown`: full vs top-down vs crop mode.

Run ``python -m engine.tools.bench_keypointrcnn [CLIP] [--frame 100] [--box X1,Y1,X2,Y2] [--runs 10]
[--warmup 2] [--sizes 800] [--crop-sizes 256 320 400] [--device auto]``.

One real frame of the nets clip (default ``../shared/data/real/clips/cricket/cover_drive_04_nets.mp4``
relative to the repository, frame 100, ``uint8 [1280, 720, 3]``) and one batter box in frame pixels
(default: the box yolo11n-pose finds on that frame). Random-init weights (``torch.manual_seed(0)``,
no download): the cost of a forward pass does not depend on the weight values, except in full mode
through the number of detections, which is capped at 1 there (only the best one is used).

For each ``min_size`` (``max_size = round(min_size * 1333 / 800)``, torchvision's ratio) one network
is built and the paths run interleaved, one call of each per round, so that load from other processes
hits them alike: ``full`` (:meth:`infer_full`: crop with ``crop_margin`` + the whole model: transform,
backbone, RPN, box head, keypoint head), ``topdown`` (:meth:`infer_boxes`: backbone on the whole
frame + keypoint head on the box) and ``crop`` at each ``--crop-sizes`` short side
(:meth:`infer_crops`: backbone on the crop only + keypoint head). It prints the mean, standard
deviation and minimum wall-clock milliseconds per frame over ``runs`` rounds after ``warmup`` rounds,
and the speed-up of each path over ``full``: the median over rounds of ``full / path`` of that round.
Each call ends with the results on the host, so CUDA timings include the synchronisation. Timings
use ``time.perf_counter_ns`` on the calling thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
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


def time_interleaved_ms(
    calls: dict[str, Callable[[], object]], *, runs: int, warmup: int
) -> dict[str, np.ndarray]:
    """Wall-clock milliseconds of each call, ``runs`` rounds of one call each after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    out = {name: np.empty(runs, np.float64) for name in calls}
    for i in range(runs):
        for name, call in calls.items():
            start = time.perf_counter_ns()
            call()
            out[name][i] = (time.perf_counter_ns() - start) / 1e6
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
    parser.add_argument("--sizes", type=int, nargs="+", default=[800], help="min_size values, px")
    parser.add_argument(
        "--crop-sizes", type=int, nargs="+", default=[256, 320, 400], help="crop-mode short sides, px"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    args = parser.parse_args(argv)

    import torch

    image = read_frame(args.clip, args.frame)
    boxes = [np.asarray([args.box], np.float32)]
    lines = [
        f"clip {args.clip.name} frame {args.frame} ({image.shape[1]}x{image.shape[0]}), box {list(args.box)}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, runs {args.runs} after {args.warmup} "
        "warm-up, interleaved",
    ]
    for min_size in args.sizes:
        max_size = round(min_size * 1333 / 800)
        torch.manual_seed(0)
        model = KeypointRCNNTopDown(weights=None, device=args.device, mode="full", min_size=min_size, max_size=max_size)
        model.build()
        calls: dict[str, Callable[[], object]] = {
            "full (crop + whole model, best of 1 det)": partial(model.infer_full, [image], boxes),
            "topdown (frame backbone + kp head)": partial(model.infer_boxes, [image], boxes),
        }
        for crop_size in args.crop_sizes:
            calls[f"crop {crop_size} (crop backbone + kp head)"] = partial(_crop_call, model, crop_size, image, boxes)
        times = time_interleaved_ms(calls, runs=args.runs, warmup=args.warmup)
        full = times[next(iter(times))]
        precision = "fp16" if model.half else "fp32"
        for name, ms in times.items():
            lines.append(
                f"min_size {min_size:4d} max_size {max_size:4d} {model.device:7s} {precision} {name:40s}: "
                f"mean {ms.mean():8.1f} ms  std {ms.std():7.1f}  min {ms.min():8.1f}  "
                f"full/this {np.median(full / ms):5.2f}x"
            )
        del model
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _crop_call(model: KeypointRCNNTopDown, crop_size: int, image: np.ndarray, boxes: list[np.ndarray]) -> object:
    model.crop_size = crop_size  # infer_crops remakes its resize transform for the new size
    return model.infer_crops([image], boxes)


if __name__ == "__main__":
    raise SystemExit(main())
