"""Frames of a video file for the report's keypoint panel, decoded with PyAV."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engine.errors import SinkError

_LOG = logging.getLogger(__name__)


def read_video_frames(path: str | Path, frame_indices: set[int]) -> dict[int, np.ndarray]:
    """Decode ``path`` once with PyAV and return the wanted frames as uint8 ``[H, W, 3]`` RGB.

    Frame ``i`` is the ``i``-th decoded frame of the best video stream (0-based), as counted by the
    engine's file source, turned upright by its display rotation (``VideoFrame.rotation``, in quarter
    turns) as the engine turns it, so ``pose/`` keypoints land on it. Decoding stops after the largest
    wanted index; a decode error ends it early (logged) and the frames read so far are returned.

    Raises:
        SinkError: the file cannot be opened or has no video stream.
    """
    import av

    if not frame_indices:
        return {}
    last = max(frame_indices)
    out: dict[int, np.ndarray] = {}
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        msg = f"cannot open video {str(path)!r} for the report: {exc}"
        raise SinkError(msg) from exc
    with container:
        stream = container.streams.best("video")
        if stream is None:
            msg = f"no video stream in {str(path)!r}"
            raise SinkError(msg)
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index in frame_indices and isinstance(frame, av.VideoFrame):
                    quarter_turns = round(getattr(frame, "rotation", 0) / 90) % 4  # counter-clockwise
                    out[index] = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), quarter_turns))
                if index >= last:
                    break
        except av.error.FFmpegError as exc:
            _LOG.warning("report: decoding %s stopped early: %s", path, exc)
    missing = sorted(frame_indices - set(out))
    if missing:
        _LOG.warning("report: %s has no frame(s) %s; drawing those on a blank canvas", path, missing[:5])
    return out
