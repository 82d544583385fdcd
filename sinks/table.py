"""``csv`` sink: one row per batter-frame and one row per shot, for spreadsheets and pandas.

Two files, written with the standard library's :mod:`csv` module (RFC 4180, ``newline=""``):

* ``path`` (``--sink csv:out.csv``): one row per frame with a batter, columns :data:`FRAME_COLUMNS`
  then one ``sim_<a>_<b>`` column per configured keypoint pair (``analytics.pairs``; the wire's
  ``"left_wrist/left_shoulder"`` becomes ``sim_left_wrist_left_shoulder``, a name pandas and R take
  as an identifier), then ``dx``, ``dy``, ``r``. Frames without a batter have no row (their ``pose/``
  carries no keypoints, and no ``sim/`` or ``fit/`` is published for them).
* ``shots_path`` (default: ``path`` with ``_shots`` before its suffix, ``out_shots.csv``): one row
  per ``shot/`` message, columns :data:`SHOT_COLUMNS`.

Cells: ``pose/`` keypoints as published (``<name>_x``, ``<name>_y`` in frame pixels, x right, y
down; ``<name>_conf`` in [0, 1]), whatever their confidence: filter on ``_conf`` yourself. ``dx``,
``dy`` (wrist - shoulder of the configured pair, frame widths / heights) come from the frame's
``fit/`` message and ``r = hypot(dx, dy)``; a frame without ``fit/`` (wrist or shoulder not seen, or
the first such frame) has them empty. An empty cell is a missing value (``None``, NaN, inf):
``pandas.read_csv`` reads it as NaN. float32 arrays are written with the shortest text that reads
back to the same float32 (``str(numpy.float32)``), Python floats with :func:`repr` (exact).

Streaming: the messages of one frame arrive ``pose/`` -> ``sim/`` -> ``fit/``, so a frame's row is
complete when a message of a later frame (or ``eos/``) of that source arrives; it is written then.
Only that one pending row per source is held in memory. Both files are flushed after every batch and
at :meth:`CsvSink.close`, which also writes the rows still pending. The frames file's header is
written with its first row (the pair columns are those of the first ``sim/`` message); a run without
any batter frame gets the header without pair columns.

Pattern: supervision ``CSVSink`` (``open`` creates the file and writer, rows appended as they come),
without its bare ``Exception`` / ``print`` (style rule 8).
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, get_args

import numpy as np

from engine.errors import SinkError
from engine.messages import AnyMessage, EndOfStream, Fit, FitStats, FrameImage, Pose, Shot, ShotLabel, Similarity
from engine.types import COCO_KEYPOINT_NAMES
from sinks.base import Sink

_LOG = logging.getLogger(__name__)

#: Leading columns of the frames file: the frame, then x, y, confidence of each COCO keypoint.
FRAME_COLUMNS: tuple[str, ...] = ("source_id", "frame_index", "pts_s") + tuple(
    f"{name}_{part}" for name in COCO_KEYPOINT_NAMES for part in ("x", "y", "conf")
)
#: Trailing columns of the frames file (after the pair-similarity columns).
FIT_COLUMNS: tuple[str, ...] = ("dx", "dy", "r")
#: Shot class labels, each with a ``p_<label>`` probability column.
SHOT_LABELS: tuple[str, ...] = get_args(ShotLabel)
_STATS = tuple(f.name for f in FitStats.__dataclass_fields__.values())
#: Columns of the shots file (fields of ``shot/``; ``p_<label>`` from its ``probabilities``).
SHOT_COLUMNS: tuple[str, ...] = (
    ("shot_index", "source_id", "start_frame", "end_frame", "start_s", "end_s", "duration_s", "label", "confidence")
    + tuple(f"p_{label}" for label in SHOT_LABELS)
    + ("handedness", "handedness_source", "handedness_confidence", "wrist", "shoulder", "n_points", "degree_xy")
    + ("t_start_s", "t_end_s")
    + _STATS
    + ("classifier_version",)
)


def pair_column(pair: str) -> str:
    """Column name of a ``sim/`` pair key: ``"left_wrist/left_shoulder"`` -> ``"sim_left_wrist_left_shoulder"``."""
    return "sim_" + pair.replace("/", "_")


def cell(value: Any) -> str:
    """Text of one CSV cell: ``""`` for ``None`` / NaN / inf, shortest round-trip text for numbers.

    A ``numpy.float32`` is written as ``str(value)`` (the shortest text that reads back as the same
    float32), a Python or float64 float as :func:`repr` (exact), ``bool`` as ``true`` / ``false``.
    """
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, np.floating):
        return str(value) if np.isfinite(value) else ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


@dataclass
class _PendingRow:
    """A batter-frame row waiting for its frame's ``sim/`` and ``fit/`` messages."""

    pose: Pose
    pairs: dict[str, float] = field(default_factory=dict)
    dx: float | None = None
    dy: float | None = None

    @property
    def frame_index(self) -> int | None:
        return self.pose.frame_index


class CsvSink(Sink):
    """Write batter-frame rows and shot rows as CSV while messages arrive (``--sink csv:out.csv``).

    Args:
        path: The frames file, created or truncated by :meth:`open`; its folder must exist.
        shots_path: The shots file; ``None``: ``path`` with ``_shots`` inserted before its suffix
            (``out.csv`` -> ``out_shots.csv``, ``out`` -> ``out_shots``).

    Raises:
        SinkError: ``path`` is empty or ``-`` (two files cannot share standard output), or both
            paths are the same file.
    """

    primary_option: ClassVar[str | None] = "path"
    user_options: ClassVar[tuple[str, ...] | None] = ("path", "shots_path")

    def __init__(self, path: str | Path, shots_path: str | Path | None = None, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(path, (str, Path)) or not str(path) or str(path) == "-":
            msg = f"csv option 'path' must be a file path (not '-': the sink writes two files), got {path!r}"
            raise SinkError(msg)
        self.path = Path(path)
        if shots_path is None or str(shots_path) == "":
            self.shots_path = self.path.with_name(f"{self.path.stem}_shots{self.path.suffix}")
        else:
            self.shots_path = Path(shots_path)
        if self.shots_path.resolve() == self.path.resolve():
            msg = f"csv options 'path' and 'shots_path' must name two files, got {str(self.path)!r} twice"
            raise SinkError(msg)
        self._frames_file: IO[str] | None = None
        self._shots_file: IO[str] | None = None
        self._frames: Any = None  # csv.writer of the frames file
        self._shots: Any = None
        self._pairs: list[str] | None = None  # pair keys of the header, fixed with the first row
        self._pending: dict[str, _PendingRow] = {}
        self._ignored_pairs: set[str] = set()
        #: Rows written so far: ``{"frames": n, "shots": m}``.
        self.rows = {"frames": 0, "shots": 0}

    def output_paths(self) -> list[Path]:
        """The batter-frame file and the shots file."""
        return [self.path, self.shots_path]

    def open(self) -> None:
        """Create (or truncate) both files and write the shots file's header.

        Raises:
            SinkError: a folder does not exist, or a file cannot be opened (the message names it).
        """
        try:
            self._frames_file = _open_for_writing(self.path)
            self._shots_file = _open_for_writing(self.shots_path)
            self._frames = csv.writer(self._frames_file)
            self._shots = csv.writer(self._shots_file)
            self._shots.writerow(SHOT_COLUMNS)
            self._shots_file.flush()
        except SinkError:
            self._release()
            raise
        except OSError as exc:
            self._release()
            msg = f"cannot write csv output {str(self.shots_path)!r}: {exc.strerror or exc}"
            raise SinkError(msg) from exc

    def write_batch(self, messages: list[AnyMessage]) -> None:
        """Write the rows completed by ``messages``, then flush both files.

        Raises:
            SinkError: the sink is not open, or a write fails.
        """
        if self._frames_file is None or self._shots_file is None:
            msg = "csv sink must be open to write"
            raise SinkError(msg)
        try:
            for message in messages:
                self._consume(message)
            self._frames_file.flush()
            self._shots_file.flush()
        except OSError as exc:
            msg = f"cannot write csv output {str(self.path)!r}: {exc.strerror or exc}"
            raise SinkError(msg) from exc

    def close(self) -> None:
        """Write the pending rows (and the frames header when no row was written), flush, close. Idempotent."""
        if self._frames_file is None:
            return
        try:
            for source_id in list(self._pending):
                self._complete(source_id)
            if self._pairs is None:
                self._write_frames_header([])
        except OSError as exc:
            self._release()
            msg = f"cannot write csv output {str(self.path)!r}: {exc.strerror or exc}"
            raise SinkError(msg) from exc
        self._release()

    # --- rows -----------------------------------------------------------------------------------

    def _consume(self, message: AnyMessage) -> None:
        """Route one message: frame messages update the pending row, shots are written at once."""
        if isinstance(message, Shot):
            self._write_shot(message)
            return
        if isinstance(message, EndOfStream):
            self._complete(message.source_id)
            return
        if not isinstance(message, (Pose, Similarity, Fit, FrameImage)):
            return  # health/: nothing per frame
        source_id = message.source_id
        pending = self._pending.get(source_id)
        if pending is not None and pending.frame_index != message.frame_index:
            self._complete(source_id)  # a later frame: the pending row has everything it will get
            pending = None
        if isinstance(message, Pose):
            if message.batter_found:
                self._pending[source_id] = _PendingRow(message)
        elif pending is None:
            _LOG.debug("csv: %s/%s frame %s without its pose/ message skipped", message.kind, source_id,
                       message.frame_index)
        elif isinstance(message, Similarity):
            pending.pairs = message.pairs
        elif isinstance(message, Fit):
            pending.dx, pending.dy = message.dx, message.dy

    def _complete(self, source_id: str) -> None:
        """Write and forget the pending row of ``source_id`` (nothing when there is none)."""
        row = self._pending.pop(source_id, None)
        if row is None:
            return
        if self._pairs is None:
            self._write_frames_header(list(row.pairs))
        pairs = self._pairs or []
        extra = set(row.pairs) - set(pairs) - self._ignored_pairs
        if extra:
            self._ignored_pairs |= extra
            _LOG.warning("csv: pair(s) %s are not in the header (%s) and are not written", sorted(extra),
                         ", ".join(pairs) or "no pairs")
        pose = row.pose
        xy = pose.keypoints_xy if pose.keypoints_xy is not None else np.full((len(COCO_KEYPOINT_NAMES), 2), np.nan)
        conf = pose.keypoints_conf if pose.keypoints_conf is not None else np.full(len(COCO_KEYPOINT_NAMES), np.nan)
        kp_cells = [cell(v) for k in range(len(COCO_KEYPOINT_NAMES)) for v in (xy[k, 0], xy[k, 1], conf[k])]
        r = None if row.dx is None or row.dy is None else math.hypot(row.dx, row.dy)
        self._frames.writerow(
            [cell(source_id), cell(pose.frame_index), cell(pose.pts_s), *kp_cells]
            + [cell(row.pairs.get(pair)) for pair in pairs]
            + [cell(row.dx), cell(row.dy), cell(r)]
        )
        self.rows["frames"] += 1

    def _write_frames_header(self, pairs: list[str]) -> None:
        self._pairs = pairs
        self._frames.writerow(FRAME_COLUMNS + tuple(pair_column(p) for p in pairs) + FIT_COLUMNS)

    def _write_shot(self, shot: Shot) -> None:
        probabilities = shot.probabilities or {}
        stats = shot.stats
        self._shots.writerow(
            [cell(v) for v in (shot.shot_index, shot.source_id, shot.start_frame, shot.end_frame, shot.start_s,
                               shot.end_s, shot.duration_s, shot.label, shot.confidence)]
            + [cell(probabilities.get(label)) for label in SHOT_LABELS]
            + [cell(v) for v in (shot.handedness, shot.handedness_source, shot.handedness_confidence, shot.wrist,
                                 shot.shoulder, shot.n_points, shot.degree_xy, shot.t_start_s, shot.t_end_s)]
            + [cell(None if stats is None else getattr(stats, name)) for name in _STATS]
            + [cell(shot.classifier_version)]
        )
        self.rows["shots"] += 1

    def _release(self) -> None:
        """Close whatever file is open; the first error (after trying both) is raised as :class:`SinkError`."""
        error: OSError | None = None
        for attr in ("_frames_file", "_shots_file"):
            file = getattr(self, attr)
            setattr(self, attr, None)
            if file is not None:
                try:
                    file.close()
                except OSError as exc:
                    error = error or exc
        self._frames = self._shots = None
        if error is not None:
            msg = f"cannot close csv output {str(self.path)!r}: {error.strerror or error}"
            raise SinkError(msg) from error


def _open_for_writing(path: Path) -> IO[str]:
    """``path`` opened for writing text with ``newline=""`` (what :mod:`csv` wants).

    Raises:
        SinkError: the folder does not exist or the file cannot be opened.
    """
    if not path.parent.is_dir():
        msg = f"cannot open csv output {str(path)!r}: expected an existing directory {str(path.parent)!r}"
        raise SinkError(msg)
    try:
        return path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        msg = f"cannot open csv output {str(path)!r}: {exc.strerror or exc}"
        raise SinkError(msg) from exc
