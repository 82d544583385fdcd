"""``video`` sink: one annotated video file per source, drawn on the ``frame/`` topic's JPEGs.

``--sink video:OUT_DIR`` writes ``OUT_DIR/<source_id>.mp4`` (H.264 by default, through PyAV) with,
on every frame that has a ``frame/`` message: the batter's skeleton, box and track id, the other
persons' boxes faint, the wrist trail relative to the shoulder with the rolling Legendre fit, a
17x17 dependency-matrix inset, the ``left_wrist/left_shoulder`` similarity gauge, and a banner
with each shot's label and confidence for :data:`BANNER_HOLD_S` seconds of media time from the
frame the ``shot/`` message arrives at (the engine knows a shot ended ``shots.end_hold_s`` after its
last frame, so the banner starts on the frame being drawn then). What is drawn, in which colours:
:mod:`sinks.video.draw`; how the file is written (each frame at its own ``pts_s``, so variable
frame rate stays variable): :mod:`sinks.video.writer`.

Messages of frame ``N`` arrive as ``frame(N)``, ``pose(N)``, ``sim(N)``, ``fit(N)``, [``shot``]
(README, wire format), so frame ``N`` is drawn once a message of a later frame of the same source,
its ``eos/`` or :meth:`VideoSink.close` arrives. A frame without ``pose/`` is written plain; a
``pose/`` without a ``frame/`` (frames are rate-limited by ``publisher.frame_fps``) adds nothing to
the file but still feeds the trail. ``eos/`` finishes the source's file.
"""

from __future__ import annotations

import logging
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from engine.errors import SinkError
from engine.messages import AnyMessage, EndOfStream, Fit, FrameImage, Health, Pose, Shot, Similarity
from sinks.base import Sink
from sinks.video.draw import FrameOverlay, annotate, decode_jpeg
from sinks.video.writer import PRESETS, VideoWriter, encoder_name

__all__ = ["BANNER_HOLD_S", "DEFAULT_CODEC", "DEFAULT_CRF", "DEFAULT_PRESET", "VideoSink", "output_name"]

_LOG = logging.getLogger(__name__)

#: Default ``codec`` (PyAV picks its H.264 encoder, ``libx264``) and ``crf``.
DEFAULT_CODEC = "h264"
DEFAULT_CRF = 23
#: Default x264 preset: ~3x faster than x264's own ``medium`` for ~15% larger files, so the sink keeps
#: up with a live engine on a few cores (measure with ``python -m tests.bench_video CLIP``).
DEFAULT_PRESET = "superfast"
#: Seconds of media time (``pts_s``) a shot's banner stays on after the shot's last frame.
BANNER_HOLD_S = 2.0

def output_name(source_id: str) -> str:
    """File name of a source's video, ``<source_id>.mp4`` (source ids are ``[A-Za-z0-9_.-]+``, safe as names)."""
    return f"{source_id}.mp4"


def shot_banner(shot: Shot) -> str:
    """Banner text of a shot: ``"shot 1: cover drive 87%"`` (``unclassified`` without a label)."""
    label = shot.label.replace("_", " ") if shot.label is not None else "unclassified"
    confidence = f" {shot.confidence:.0%}" if shot.confidence is not None else ""
    return f"shot {shot.shot_index + 1}: {label}{confidence}"


@dataclass
class _Pending:
    """The newest frame of a source, waiting for the rest of its messages."""

    frame: FrameImage
    pose: Pose | None = None
    fit: Fit | None = None


class _SourceVideo:
    """One source's drawing state and video file (see the module docstring for the timing)."""

    def __init__(self, writer: VideoWriter) -> None:
        self.writer = writer
        self.pending: _Pending | None = None
        self.sim: Similarity | None = None
        self.trail: deque[tuple[float, float, float]] = deque()  # (pts_s, dx, dy) of fit/ messages
        self.banner: tuple[str, float] | None = None  # (text, last pts_s shown)
        self.last_pts_s: float | None = None  # newest pts_s of any message of the source
        self.bad_frames = 0

    def update(self, message: AnyMessage) -> None:
        """Take one message of this source; draws and writes the pending frame when it is complete."""
        pending = self.pending
        if message.pts_s is not None and not isinstance(message, Shot):
            self.last_pts_s = max(message.pts_s, self.last_pts_s or message.pts_s)
        if isinstance(message, FrameImage):
            self.flush()
            self.pending = _Pending(message)
            return
        if pending is not None and message.frame_index is not None and message.frame_index > (
            pending.frame.frame_index or 0
        ):
            self.flush()
            pending = None
        same_frame = pending is not None and message.frame_index == pending.frame.frame_index
        if isinstance(message, Pose):
            if message.timeline_break or message.scene_cut:
                self.trail.clear()
                self.sim = None
            if same_frame and pending is not None:
                pending.pose = message
        elif isinstance(message, Similarity):
            self.sim = message
        elif isinstance(message, Fit):
            if message.dx is not None and message.dy is not None and message.pts_s is not None:
                self.trail.append((message.pts_s, message.dx, message.dy))
            while self.trail and self.trail[0][0] < message.t_start_s:
                self.trail.popleft()
            if same_frame and pending is not None:
                pending.fit = message
        elif isinstance(message, Shot) and message.pts_s is not None:
            shown_from = max(message.pts_s, self.last_pts_s or message.pts_s)  # it ends before it is known
            self.banner = (shot_banner(message), shown_from + BANNER_HOLD_S)

    def flush(self) -> None:
        """Draw and write the pending frame, if any.

        Raises:
            SinkError: the video file cannot be written.
        """
        pending, self.pending = self.pending, None
        if pending is None:
            return
        frame = pending.frame
        pts_s = frame.pts_s if frame.pts_s is not None else 0.0
        try:
            image = decode_jpeg(frame)
        except ValueError as exc:
            self.bad_frames += 1
            _LOG.warning("video: skipping a frame: %s", exc)
            return
        trail = np.array([(dx, dy) for t, dx, dy in self.trail if t <= pts_s], np.float64).reshape(-1, 2)
        banner = self.banner[0] if self.banner is not None and self.banner[1] >= pts_s else None
        pose = pending.pose
        overlay = FrameOverlay(pose=pose, sim=self.sim, fit=pending.fit, trail=trail, banner=banner)
        self.writer.write(annotate(image, frame, overlay), pts_s)

    def close(self) -> None:
        """Write the pending frame and finish the file.

        Raises:
            SinkError: the file cannot be written or finished (it is closed anyway).
        """
        try:
            self.flush()
        finally:
            self.writer.close()


class VideoSink(Sink):
    """Annotated video per source (``--sink video:OUT_DIR``), drawn on the ``frame/`` topic.

    Needs frames (:attr:`needs_frames`), so attaching it turns the engine's ``frame/`` publishing on
    (``publisher.frames: auto``). Each source's file is ``OUT_DIR/<source_id>.mp4``
    (:func:`output_name`); a source that appears again after its ``eos/`` gets
    ``<source_id>-1.mp4``, ``-2``, ... instead of overwriting. Files are finished at the source's
    ``eos/`` or at :meth:`close`.

    Args:
        out_dir: Output folder, created by :meth:`open` (with parents) when missing.
        codec: A video encoder PyAV has: ``h264`` (default, ``libx264``), ``hevc`` (``libx265``), or
            an FFmpeg encoder name that accepts a 1/90000 s time base.
        crf: x264 / x265 constant rate factor, 0 (lossless) .. 51; 23 by default (x264's own).
        preset: x264 / x265 speed preset, ``ultrafast`` .. ``veryslow`` (:data:`DEFAULT_PRESET`).

    Attributes:
        written: Paths of the finished files, in order.

    Raises:
        SinkError: a bad or unknown option (an unknown codec names the encoders available).
    """

    primary_option: ClassVar[str | None] = "out_dir"
    user_options: ClassVar[tuple[str, ...] | None] = ("out_dir", "codec", "crf", "preset")
    needs_frames: ClassVar[bool] = True

    def __init__(
        self,
        out_dir: str,
        codec: str = DEFAULT_CODEC,
        crf: int | str = DEFAULT_CRF,
        preset: str = DEFAULT_PRESET,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not isinstance(out_dir, (str, Path)) or not str(out_dir):
            msg = f"video option 'out_dir' must be a folder path, got {out_dir!r}"
            raise SinkError(msg)
        self.out_dir = Path(out_dir)
        self.encoder = encoder_name(str(codec))
        self.crf = _crf_option(crf)
        if preset not in PRESETS:
            msg = f"video option 'preset' must be one of {', '.join(PRESETS)}, got {preset!r}"
            raise SinkError(msg)
        self.preset = preset
        self.written: list[Path] = []
        self._sources: dict[str, _SourceVideo] = {}
        self._used: set[Path] = set()
        self._open = False

    def output_paths(self) -> list[Path]:
        """The output folder (one ``<source_id>.mp4`` per source inside)."""
        return [self.out_dir]

    def open(self) -> None:
        """Create the output folder and check that a file can be written in it.

        Raises:
            SinkError: the folder cannot be created or written to.
        """
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.out_dir):
                pass
        except OSError as exc:
            msg = f"video sink cannot write to folder {str(self.out_dir)!r}: {exc.strerror or exc}"
            raise SinkError(msg) from exc
        self._open = True

    def write_batch(self, messages: list[AnyMessage]) -> None:
        """Route each message to its source's state; draw and encode frames as they complete.

        Raises:
            SinkError: the sink is not open, or a video file cannot be written.
        """
        if not self._open:
            msg = "video sink must be open to write"
            raise SinkError(msg)
        for message in messages:
            if isinstance(message, Health):
                continue
            if isinstance(message, EndOfStream):
                if message.source_id in self._sources:
                    self._finish(message.source_id, self._sources[message.source_id])
            else:
                self._source(message.source_id).update(message)

    def close(self) -> None:
        """Draw the pending frames and finish every open file. Idempotent.

        Raises:
            SinkError: a file cannot be finished (every other file is still finished).
        """
        self._open = False
        errors = []
        for source_id, source in list(self._sources.items()):
            try:
                self._finish(source_id, source)
            except SinkError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _source(self, source_id: str) -> _SourceVideo:
        source = self._sources.get(source_id)
        if source is None:
            path = self.out_dir / output_name(source_id)
            n = 0
            while path in self._used:
                n += 1
                path = self.out_dir / output_name(f"{source_id}-{n}")
            self._used.add(path)
            source = self._sources[source_id] = _SourceVideo(
                VideoWriter(path, self.encoder, self.crf, self.preset)
            )
        return source

    def _finish(self, source_id: str, source: _SourceVideo) -> None:
        del self._sources[source_id]
        source.close()
        if source.writer.frames:
            self.written.append(source.writer.path)


def _crf_option(value: object) -> int:
    """``crf`` as an int in 0..51 (from a number or its text).

    Raises:
        SinkError: not an integer in range.
    """
    try:
        crf = int(str(value)) if not isinstance(value, bool) else -1
    except ValueError:
        crf = -1
    if not 0 <= crf <= 51:
        msg = f"video option 'crf' must be an integer 0..51, got {value!r}"
        raise SinkError(msg)
    return crf
