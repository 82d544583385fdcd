"""``report`` sink: PNG figures like the thesis' Figs. 3-6 at the end of the stream.

While the stream runs, :class:`ReportCollector` keeps, per source, only what the figures need (bounded
by ``max_frames`` per source and ``max_shots`` per source):

* ``pose/``: the batter's keypoints, confidences and box per frame with a batter (for the left panel
  of Figs. 4-5, the wrist path, and the whole-run trajectory when there are no ``shot/`` messages);
* ``sim/``: the per-frame pair similarities (``pairs``) and the latest ``cumulative_mean`` and
  ``window_mean`` matrices with their ``heatmap_source``;
* ``fit/``: only the configured ``wrist`` / ``shoulder`` names;
* ``shot/``: every shot's points, fits and ``pair_similarity``.

At :meth:`ReportSink.close` (or in :func:`report_from_jsonl`) it writes, into the output folder:

* ``<source_id>_dependency_matrix.png`` per source with ``sim/`` messages (Fig. 3);
* ``<source_id>_shot<k>_wrist.png`` per shot, or ``<source_id>_wrist.png`` for a source without
  shots, whose whole run is one segment fitted with :func:`engine.analytics.fit_wrist_trajectory`
  (Figs. 4-5);
* ``pair_similarity.png``, every segment of every source on one plot (Fig. 6).

Sources without the data a figure needs (no batter frame, fewer than two wrist points) get no such
figure; the reason is logged.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from engine.analytics import fit_wrist_trajectory
from engine.errors import SinkError, SinkOptionError
from engine.types import KEYPOINT_INDEX, NUM_KEYPOINTS
from engine.wire import KINDS, Message, topic_for
from sinks.base import Sink
from sinks.figures import (
    DEFAULT_DPI,
    PairSeries,
    PoseSnapshot,
    WristSegment,
    dependency_matrix_figure,
    normalised_time,
    pair_similarity_figure,
    save_png,
    wrist_figure,
)

_LOG = logging.getLogger(__name__)

#: Default cap on the batter frames kept per source (30 min at 60 fps, about 26 MB per source).
DEFAULT_MAX_FRAMES = 108_000
#: Default cap on the shots kept per source (the most recent ones are kept).
DEFAULT_MAX_SHOTS = 500
#: Default keypoint confidence below which a keypoint counts as not visible (``batter.min_keypoint_conf``).
DEFAULT_MIN_KEYPOINT_CONF = 0.3
#: File name of Fig. 6.
PAIR_SIMILARITY_FILE = "pair_similarity.png"
_DEFAULT_WRIST, _DEFAULT_SHOULDER = "left_wrist", "left_shoulder"


# --------------------------------------------------------------------------------------------------
# Bounded storage
# --------------------------------------------------------------------------------------------------


class _Columns:
    """Parallel numpy columns that grow by doubling up to ``max_rows``; when full, the oldest half goes."""

    def __init__(self, specs: Mapping[str, tuple[tuple[int, ...], type]], max_rows: int) -> None:
        self._specs = dict(specs)
        self._max_rows = int(max_rows)
        self._capacity = min(256, self._max_rows)
        self._data: dict[str, np.ndarray] = {
            name: np.empty((self._capacity, *shape), dtype) for name, (shape, dtype) in specs.items()
        }
        self.rows = 0
        self.evicted = 0

    def append(self, **values: Any) -> None:
        if self.rows == self._capacity:
            if self._capacity < self._max_rows:
                self._capacity = min(self._capacity * 2, self._max_rows)
                for name, array in self._data.items():
                    grown = np.empty((self._capacity, *array.shape[1:]), array.dtype)
                    grown[: self.rows] = array[: self.rows]
                    self._data[name] = grown
            else:
                keep = self.rows // 2
                for array in self._data.values():
                    array[:keep] = array[self.rows - keep : self.rows]
                self.evicted += self.rows - keep
                self.rows = keep
        for name, array in self._data.items():
            array[self.rows] = values[name]
        self.rows += 1

    def __getitem__(self, name: str) -> np.ndarray:
        return self._data[name][: self.rows]

    def __len__(self) -> int:
        return self.rows


def _pose_columns(max_rows: int) -> _Columns:
    return _Columns(
        {
            "frame_index": ((), np.int64),
            "pts_s": ((), np.float64),
            "frame_width": ((), np.int32),
            "frame_height": ((), np.int32),
            "keypoints_xy": ((NUM_KEYPOINTS, 2), np.float32),
            "keypoints_conf": ((NUM_KEYPOINTS,), np.float32),
            "xyxy": ((4,), np.float32),
        },
        max_rows,
    )


def _pair_columns(max_rows: int) -> _Columns:
    return _Columns({"frame_index": ((), np.int64), "pts_s": ((), np.float64), "value": ((), np.float64)}, max_rows)


@dataclass
class _Shot:
    segment: WristSegment
    start_s: float
    end_s: float
    pair_similarity: np.ndarray | None


@dataclass
class _SourceState:
    poses: _Columns
    pairs: dict[str, _Columns] = field(default_factory=dict)
    shots: deque[_Shot] = field(default_factory=deque)
    shots_dropped: int = 0
    cumulative_mean: np.ndarray | None = None
    window_mean: np.ndarray | None = None
    sim_frames: int = 0
    heatmap_source: str | None = None
    wrist: str | None = None
    shoulder: str | None = None
    frame_size: tuple[int, int] | None = None


def _finite_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _keypoint_name(value: object, default: str) -> str:
    return value if isinstance(value, str) and value in KEYPOINT_INDEX else default


# --------------------------------------------------------------------------------------------------
# Collector
# --------------------------------------------------------------------------------------------------


class ReportCollector:
    """Bounded per-source state for the report figures; :meth:`update` per message, :meth:`render` at the end.

    Not thread-safe: one owner thread (the sink's runner thread, or the caller of
    :func:`report_from_jsonl`).

    Args:
        min_keypoint_conf: Keypoints below this confidence are not visible (no skeleton edge, no
            whole-run trajectory point), in [0, 1].
        max_frames: Batter frames (and pair values) kept per source, >= 2; beyond it the oldest half
            is forgotten.
        max_shots: Shots kept per source, >= 1; beyond it the oldest are forgotten.

    Raises:
        ValueError: an argument out of range.
    """

    def __init__(
        self,
        *,
        min_keypoint_conf: float = DEFAULT_MIN_KEYPOINT_CONF,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_shots: int = DEFAULT_MAX_SHOTS,
    ) -> None:
        if not 0.0 <= min_keypoint_conf <= 1.0:
            msg = f"`min_keypoint_conf` must lie in [0, 1], got {min_keypoint_conf!r}"
            raise ValueError(msg)
        if max_frames < 2:
            msg = f"`max_frames` must be >= 2, got {max_frames!r}"
            raise ValueError(msg)
        if max_shots < 1:
            msg = f"`max_shots` must be >= 1, got {max_shots!r}"
            raise ValueError(msg)
        self.min_keypoint_conf = float(min_keypoint_conf)
        self.max_frames = int(max_frames)
        self.max_shots = int(max_shots)
        self._sources: dict[str, _SourceState] = {}

    @property
    def source_ids(self) -> list[str]:
        """Sources seen so far, sorted."""
        return sorted(self._sources)

    def reset(self) -> None:
        """Forget everything."""
        self._sources.clear()

    def _state(self, source_id: str) -> _SourceState:
        state = self._sources.get(source_id)
        if state is None:
            state = _SourceState(poses=_pose_columns(self.max_frames), shots=deque(maxlen=self.max_shots))
            self._sources[source_id] = state
        return state

    def update(self, message: Message) -> None:
        """Keep what the figures need from one message (``pose``, ``sim``, ``fit``, ``shot``; others ignored)."""
        handler = {
            "pose": self._on_pose,
            "sim": self._on_sim,
            "fit": self._on_fit,
            "shot": self._on_shot,
        }.get(message.kind)
        if handler is not None and message.source_id:
            handler(self._state(message.source_id), message)

    def _on_pose(self, state: _SourceState, message: Message) -> None:
        header, arrays = message.header, message.arrays
        width, height = _int_or_none(header.get("frame_width")), _int_or_none(header.get("frame_height"))
        if width and height:
            state.frame_size = (width, height)
        if header.get("heatmap_source") not in (None, "none"):
            state.heatmap_source = header["heatmap_source"]
        frame_index, pts_s = _int_or_none(message.frame_index), _finite_float(message.pts_s)
        if not header.get("batter_found") or frame_index is None or pts_s is None or not (width and height):
            return
        try:
            kp = np.asarray(arrays["keypoints_xy"], dtype=np.float32).reshape(NUM_KEYPOINTS, 2)
            conf = np.asarray(arrays["keypoints_conf"], dtype=np.float32).reshape(NUM_KEYPOINTS)
            box = np.asarray(arrays.get("xyxy", np.full(4, np.nan)), dtype=np.float32).reshape(4)
        except (KeyError, ValueError) as exc:
            _LOG.warning("report: skipped pose/%s/ seq %s: %s", message.source_id, message.seq, exc)
            return
        evicted = state.poses.evicted
        state.poses.append(
            frame_index=frame_index,
            pts_s=pts_s,
            frame_width=width,
            frame_height=height,
            keypoints_xy=np.nan_to_num(kp, nan=-1.0),
            keypoints_conf=np.nan_to_num(conf, nan=0.0),
            xyxy=box,
        )
        if state.poses.evicted and not evicted:
            _LOG.warning("report: %s: over %d batter frames, forgetting the oldest", message.source_id, self.max_frames)

    def _on_sim(self, state: _SourceState, message: Message) -> None:
        header, arrays = message.header, message.arrays
        state.sim_frames = max(state.sim_frames + 1, message.seq + 1)
        if isinstance(header.get("heatmap_source"), str):
            state.heatmap_source = header["heatmap_source"]
        for name, attribute in (("cumulative_mean", "cumulative_mean"), ("window_mean", "window_mean")):
            if name in arrays:
                matrix = np.asarray(arrays[name], dtype=np.float32)
                if matrix.shape == (NUM_KEYPOINTS, NUM_KEYPOINTS):
                    setattr(state, attribute, matrix.copy())
        frame_index, pts_s = _int_or_none(message.frame_index), _finite_float(message.pts_s)
        pairs = header.get("pairs")
        if frame_index is None or pts_s is None or not isinstance(pairs, dict):
            return
        for key, value in pairs.items():
            number = _finite_float(value)
            columns = state.pairs.get(key)
            if columns is None:
                columns = state.pairs[key] = _pair_columns(self.max_frames)
            columns.append(frame_index=frame_index, pts_s=pts_s, value=np.nan if number is None else number)

    def _on_fit(self, state: _SourceState, message: Message) -> None:
        state.wrist = _keypoint_name(message.header.get("wrist"), state.wrist or _DEFAULT_WRIST)
        state.shoulder = _keypoint_name(message.header.get("shoulder"), state.shoulder or _DEFAULT_SHOULDER)

    def _on_shot(self, state: _SourceState, message: Message) -> None:
        header, arrays = message.header, message.arrays
        try:
            t_start_s, t_end_s = _finite_float(header.get("t_start_s")), _finite_float(header.get("t_end_s"))
            if t_start_s is None or t_end_s is None:
                got = f"{header.get('t_start_s')!r}, {header.get('t_end_s')!r}"
                msg = f"t_start_s and t_end_s must be finite numbers, got {got}"
                raise ValueError(msg)
            missing = [n for n in ("t_s", "dx", "dy", "dx_coef", "dy_coef", "r_coef") if n not in arrays]
            if missing:
                msg = f"missing arrays {', '.join(missing)}"
                raise ValueError(msg)
            label = header.get("label")
            shot_index = _int_or_none(header.get("shot_index"))
            segment = WristSegment(
                source_id=message.source_id,
                t_s=arrays["t_s"],
                dx=arrays["dx"],
                dy=arrays["dy"],
                dx_coef=arrays["dx_coef"],
                dy_coef=arrays["dy_coef"],
                r_coef=arrays["r_coef"],
                t_start_s=t_start_s,
                t_end_s=t_end_s,
                wrist=_keypoint_name(header.get("wrist"), _DEFAULT_WRIST),
                shoulder=_keypoint_name(header.get("shoulder"), _DEFAULT_SHOULDER),
                shot_index=message.seq if shot_index is None else shot_index,
                label=label if isinstance(label, str) else None,
                confidence=_finite_float(header.get("confidence")),
                start_frame=_int_or_none(header.get("start_frame")),
                end_frame=_int_or_none(header.get("end_frame")),
                handedness=header.get("handedness") if isinstance(header.get("handedness"), str) else None,
            )
        except ValueError as exc:
            _LOG.warning("report: skipped shot/%s/ seq %s: %s", message.source_id, message.seq, exc)
            return
        pair = arrays.get("pair_similarity")
        pair_values = None
        if pair is not None:
            pair_values = np.asarray(pair, dtype=np.float64).reshape(-1)
            if pair_values.shape != segment.t_s.shape:
                pair_values = None
        start_s = _finite_float(header.get("start_s"))
        end_s = _finite_float(header.get("end_s"))
        if start_s is None or end_s is None or not end_s > start_s:
            start_s, end_s = t_start_s, t_end_s
        if len(state.shots) == state.shots.maxlen:
            state.shots_dropped += 1
        state.shots.append(_Shot(segment, start_s, end_s, pair_values))

    # -- rendering ---------------------------------------------------------------------------------

    def render(
        self,
        out_dir: str | Path,
        *,
        video: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        dpi: int = DEFAULT_DPI,
    ) -> list[Path]:
        """Write every figure the collected data allows into ``out_dir`` (which must exist).

        Args:
            out_dir: Output folder.
            video: ``source_id -> video path``: the left panel of Figs. 4-5 is drawn on that video's
                frame (decoded with PyAV) instead of a blank canvas.
            labels: ``source_id -> class label`` known for a whole source (e.g. ``"pull"``): the
                class of its whole-run segment, and the colour of all its lines in Fig. 6.
            dpi: PNG resolution, dots per inch.

        Returns:
            The written files, in writing order.

        Raises:
            SinkError: a file cannot be written.
        """
        out = Path(out_dir)
        video, labels = dict(video or {}), dict(labels or {})
        written: list[Path] = []
        series: list[PairSeries] = []
        for source_id in self.source_ids:
            state = self._sources[source_id]
            if state.shots_dropped:
                _LOG.warning("report: %s: %d older shots were forgotten (max_shots=%d)", source_id,
                             state.shots_dropped, self.max_shots)
            if state.cumulative_mean is not None:
                fig = dependency_matrix_figure(
                    state.cumulative_mean,
                    source_id=source_id,
                    heatmap_source=state.heatmap_source,
                    n_frames=state.sim_frames,
                )
                written.append(_save(fig, out / f"{source_id}_dependency_matrix.png", dpi))
            else:
                _LOG.info("report: %s: no sim/ messages, no dependency matrix", source_id)

            segments = self._segments(source_id, state, labels.get(source_id))
            poses = [self._pose_for(state, seg) for seg, _ in segments]
            images = self._frames(source_id, video.get(source_id), poses)
            for (segment, file_name), pose in zip(segments, poses, strict=True):
                image = images.get(pose.frame_index) if pose is not None else None
                fig = wrist_figure(
                    segment,
                    pose,
                    image,
                    wrist_path_xy=self._wrist_path(state, segment),
                    frame_size=state.frame_size,
                    min_keypoint_conf=self.min_keypoint_conf,
                )
                written.append(_save(fig, out / file_name, dpi))
            series.extend(self._pair_series(state, source_id, labels.get(source_id)))
        if any(len(s) for s in series):
            written.append(_save(pair_similarity_figure(series), out / PAIR_SIMILARITY_FILE, dpi))
        return written

    def _segments(self, source_id: str, state: _SourceState, label: str | None) -> list[tuple[WristSegment, str]]:
        if state.shots:
            return [(s.segment, f"{source_id}_shot{s.segment.shot_index}_wrist.png") for s in state.shots]
        segment = self._whole_run(source_id, state, label)
        return [] if segment is None else [(segment, f"{source_id}_wrist.png")]

    def _whole_run(self, source_id: str, state: _SourceState, label: str | None) -> WristSegment | None:
        wrist, shoulder = state.wrist or _DEFAULT_WRIST, state.shoulder or _DEFAULT_SHOULDER
        poses = state.poses
        iw, ish = KEYPOINT_INDEX[wrist], KEYPOINT_INDEX[shoulder]
        conf = poses["keypoints_conf"]
        ok = (conf[:, iw] >= self.min_keypoint_conf) & (conf[:, ish] >= self.min_keypoint_conf)
        kp = poses["keypoints_xy"][ok].astype(np.float64)
        t = poses["pts_s"][ok]
        dx = (kp[:, iw, 0] - kp[:, ish, 0]) / poses["frame_width"][ok]
        dy = (kp[:, iw, 1] - kp[:, ish, 1]) / poses["frame_height"][ok]
        fit = fit_wrist_trajectory(t, dx, dy)
        if fit is None:
            _LOG.info("report: %s: fewer than two %s/%s points, no wrist figure", source_id, wrist, shoulder)
            return None
        frames = poses["frame_index"][ok]
        return WristSegment.from_fit(
            source_id, t, dx, dy, fit, wrist=wrist, shoulder=shoulder, label=label,
            start_frame=int(frames.min()), end_frame=int(frames.max()),
        )

    @staticmethod
    def _pose_for(state: _SourceState, segment: WristSegment) -> PoseSnapshot | None:
        """The batter pose nearest the middle of the segment (frame index for shots, else time)."""
        poses = state.poses
        if not len(poses):
            return None
        frames, times = poses["frame_index"], poses["pts_s"]
        if segment.start_frame is not None and segment.end_frame is not None:
            inside = (frames >= segment.start_frame) & (frames <= segment.end_frame)
            distance = np.abs(frames - (segment.start_frame + segment.end_frame) // 2).astype(np.float64)
        else:
            inside = (times >= segment.t_start_s) & (times <= segment.t_end_s)
            distance = np.abs(times - 0.5 * (segment.t_start_s + segment.t_end_s))
        if not inside.any():
            return None
        i = int(np.argmin(np.where(inside, distance, np.inf)))
        return PoseSnapshot(
            frame_index=int(frames[i]),
            pts_s=float(times[i]),
            frame_width=int(poses["frame_width"][i]),
            frame_height=int(poses["frame_height"][i]),
            keypoints_xy=poses["keypoints_xy"][i],
            keypoints_conf=poses["keypoints_conf"][i],
            xyxy=poses["xyxy"][i],
        )

    def _wrist_path(self, state: _SourceState, segment: WristSegment) -> np.ndarray | None:
        poses = state.poses
        if not len(poses):
            return None
        iw = KEYPOINT_INDEX[segment.wrist]
        if segment.start_frame is not None and segment.end_frame is not None:
            frames = poses["frame_index"]
            inside = (frames >= segment.start_frame) & (frames <= segment.end_frame)
        else:
            times = poses["pts_s"]
            inside = (times >= segment.t_start_s) & (times <= segment.t_end_s)
        inside &= poses["keypoints_conf"][:, iw] >= self.min_keypoint_conf
        return poses["keypoints_xy"][inside, iw].astype(np.float64) if inside.sum() >= 2 else None

    @staticmethod
    def _frames(source_id: str, path: str | None, poses: list[PoseSnapshot | None]) -> dict[int, np.ndarray]:
        wanted = {p.frame_index: (p.frame_width, p.frame_height) for p in poses if p is not None}
        if path is None or not wanted:
            return {}
        images = read_video_frames(path, set(wanted))
        for index, image in list(images.items()):
            if (image.shape[1], image.shape[0]) != wanted[index]:
                _LOG.warning(
                    "report: %s: frame %d of %s is %dx%d px, expected %dx%d from pose/; drawing on a blank canvas",
                    source_id, index, path, image.shape[1], image.shape[0], *wanted[index],
                )
                del images[index]
        return images

    def _pair_series(self, state: _SourceState, source_id: str, given: str | None) -> list[PairSeries]:
        out: list[PairSeries] = []
        if state.shots:
            for shot in state.shots:
                seg = shot.segment
                name = seg.describe() + (f", given {given}" if given is not None and given != seg.label else "")
                label = given if given is not None else seg.label
                key = f"{seg.wrist}/{seg.shoulder}"
                if shot.pair_similarity is not None and np.isfinite(shot.pair_similarity).any():
                    t_norm = normalised_time(seg.t_s, shot.start_s, shot.end_s)
                    out.append(PairSeries(name, label, t_norm, shot.pair_similarity, key))
                    continue
                key, columns = self._pair_columns_for(state, seg.wrist, seg.shoulder)
                if columns is None or seg.start_frame is None or seg.end_frame is None:
                    continue
                frames = columns["frame_index"]
                inside = (frames >= seg.start_frame) & (frames <= seg.end_frame)
                t_norm = normalised_time(columns["pts_s"][inside], shot.start_s, shot.end_s)
                out.append(PairSeries(name, label, t_norm, columns["value"][inside], key))
            return out
        key, columns = self._pair_columns_for(state, state.wrist or _DEFAULT_WRIST, state.shoulder or _DEFAULT_SHOULDER)
        if columns is None or not len(columns):
            return out
        times = columns["pts_s"]
        name = f"{source_id} (whole run)" + (f": {given}" if given is not None else "")
        out.append(PairSeries(name, given, normalised_time(times, times.min(), times.max()), columns["value"], key))
        return out

    @staticmethod
    def _pair_columns_for(state: _SourceState, wrist: str, shoulder: str) -> tuple[str, _Columns | None]:
        for key in (f"{wrist}/{shoulder}", f"{shoulder}/{wrist}"):
            if key in state.pairs:
                return key, state.pairs[key]
        if state.pairs:
            key = sorted(state.pairs)[0]
            return key, state.pairs[key]
        return f"{wrist}/{shoulder}", None


def _save(fig: Any, path: Path, dpi: int) -> Path:
    try:
        return save_png(fig, path, dpi=dpi)
    except OSError as exc:
        msg = f"cannot write report figure {str(path)!r}: {exc.strerror or exc}"
        raise SinkError(msg) from exc


def read_video_frames(path: str | Path, frame_indices: set[int]) -> dict[int, np.ndarray]:
    """Decode ``path`` once with PyAV and return the wanted frames as uint8 ``[H, W, 3]`` RGB.

    Frame ``i`` is the ``i``-th decoded frame of the best video stream (0-based), as counted by the
    engine's file source. Decoding stops after the largest wanted index; a decode error ends it early
    (logged) and the frames read so far are returned.

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
                    out[index] = frame.to_ndarray(format="rgb24")
                if index >= last:
                    break
        except av.error.FFmpegError as exc:
            _LOG.warning("report: decoding %s stopped early: %s", path, exc)
    missing = sorted(frame_indices - set(out))
    if missing:
        _LOG.warning("report: %s has no frame(s) %s; drawing those on a blank canvas", path, missing[:5])
    return out


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


def parse_assignments(value: str | Mapping[str, str] | Iterable[str] | None, what: str) -> dict[str, str]:
    """``{"a": "x", "b": "y"}`` from a mapping, ``"a=x,b=y"`` or ``["a=x", "b=y"]`` (CLI ``--video``).

    Raises:
        SinkOptionError: an item is not ``KEY=VALUE`` with a non-empty key and value (a
            configuration error: the CLI exits 2).
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
    else:
        parts = value.split(",") if isinstance(value, str) else list(value)
        items = []
        for part in parts:
            key, sep, item = str(part).partition("=")
            if not sep:
                msg = f"{what} must be SOURCE_ID=VALUE, got {part!r}"
                raise SinkOptionError(msg)
            items.append((key.strip(), item.strip()))
    for key, item in items:
        if not key or not item:
            msg = f"{what} must be SOURCE_ID=VALUE with both parts non-empty, got {key!r}={item!r}"
            raise SinkOptionError(msg)
    return dict(items)


def _check_videos(video: Mapping[str, str]) -> None:
    for source_id, path in video.items():
        if not Path(path).is_file():
            msg = f"video for source {source_id!r} not found: expected a file, got {path!r}"
            raise SinkError(msg)


def _make_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create report folder {str(out_dir)!r}: {exc.strerror or exc}"
        raise SinkError(msg) from exc


# --------------------------------------------------------------------------------------------------
# Sink
# --------------------------------------------------------------------------------------------------


class ReportSink(Sink):
    """Collect messages and write the thesis-style PNG figures when closed (``--sink report:DIR``).

    Memory stays bounded (:class:`ReportCollector`); all rendering happens in :meth:`close`, on the
    runner thread, with matplotlib's object API only (no pyplot state).

    Args:
        out_dir: Output folder, created by :meth:`open` (with parents) when missing.
        video: ``SOURCE_ID=PATH[,...]`` or a mapping: videos whose frames the keypoint panel is drawn on.
        labels: ``SOURCE_ID=LABEL[,...]`` or a mapping: known class of a whole source (Fig. 6 colour).
        dpi: PNG resolution, dots per inch, 30..600.
        min_keypoint_conf: Keypoints below this confidence count as not visible, in [0, 1].
        max_frames: Batter frames kept per source (oldest half forgotten beyond it), >= 2.
        max_shots: Shots kept per source (oldest forgotten beyond it), >= 1.

    Attributes:
        written: The PNG files written by :meth:`close`, in order.

    Raises:
        SinkError: a bad or unknown option.
    """

    primary_option: ClassVar[str | None] = "out_dir"
    user_options: ClassVar[tuple[str, ...] | None] = (
        "out_dir", "video", "labels", "dpi", "min_keypoint_conf", "max_frames", "max_shots",
    )

    def __init__(
        self,
        out_dir: str,
        video: str | Mapping[str, str] | None = None,
        labels: str | Mapping[str, str] | None = None,
        dpi: int | str = DEFAULT_DPI,
        min_keypoint_conf: float | str = DEFAULT_MIN_KEYPOINT_CONF,
        max_frames: int | str = DEFAULT_MAX_FRAMES,
        max_shots: int | str = DEFAULT_MAX_SHOTS,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not isinstance(out_dir, (str, Path)) or not str(out_dir):
            msg = f"report option 'out_dir' must be a folder path, got {out_dir!r}"
            raise SinkError(msg)
        self.out_dir = Path(out_dir)
        self.video = parse_assignments(video, "report option 'video'")
        self.labels = parse_assignments(labels, "report option 'labels'")
        self.dpi = _number("dpi", dpi, int, 30, 600)
        self.min_keypoint_conf = _number("min_keypoint_conf", min_keypoint_conf, float, 0.0, 1.0)
        self.max_frames = _number("max_frames", max_frames, int, 2, None)
        self.max_shots = _number("max_shots", max_shots, int, 1, None)
        self.written: list[Path] = []
        self._collector: ReportCollector | None = None

    @classmethod
    def report_files(
        cls,
        paths: list[str],
        out_dir: str,
        video: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        dpi: int = 150,
    ) -> list[Path]:
        """``batsight report``: figures from jsonl files, ``SOURCE_ID=VALUE`` strings for video / labels.

        Raises:
            SinkError: unreadable files, bad assignments, missing videos.
        """
        return report_from_jsonl(
            list(paths),
            out_dir,
            video=parse_assignments(video, "--video"),
            labels=parse_assignments(labels, "--label"),
            dpi=dpi,
        )

    def open(self) -> None:
        """Create the output folder and check the video paths.

        Raises:
            SinkError: the folder cannot be created, or a video file does not exist.
        """
        _check_videos(self.video)
        _make_out_dir(self.out_dir)
        self._collector = ReportCollector(
            min_keypoint_conf=self.min_keypoint_conf, max_frames=self.max_frames, max_shots=self.max_shots
        )

    def write_batch(self, messages: list[Message]) -> None:
        """Keep what the figures need from each message (never blocks on I/O).

        Raises:
            SinkError: the sink is not open.
        """
        if self._collector is None:
            msg = "report sink must be open to write"
            raise SinkError(msg)
        for message in messages:
            self._collector.update(message)

    def close(self) -> None:
        """Write the figures (listed in :attr:`written`) and drop the collected data. Idempotent.

        Raises:
            SinkError: a figure cannot be written.
        """
        collector, self._collector = self._collector, None
        if collector is None:
            return
        self.written = collector.render(self.out_dir, video=self.video, labels=self.labels, dpi=self.dpi)
        _LOG.info("report: wrote %d figure(s) to %s", len(self.written), self.out_dir)


def _number(name: str, value: object, kind: type, low: float | None, high: float | None) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if isinstance(value, bool) or number is None or (kind is int and isinstance(value, float) and value != number):
        msg = f"report option {name!r} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        raise SinkError(msg)
    if (low is not None and number < low) or (high is not None and number > high) or not math.isfinite(number):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        msg = f"report option {name!r} must be {bounds}, got {value!r}"
        raise SinkError(msg)
    return number


# --------------------------------------------------------------------------------------------------
# Offline: from jsonl files
# --------------------------------------------------------------------------------------------------


def message_from_json(record: Mapping[str, Any]) -> Message:
    """A :class:`Message` from one line of the ``jsonl`` sink (arrays become float64, ``null`` -> NaN).

    Raises:
        ValueError: ``kind``, ``source_id`` or ``seq`` missing or invalid.
    """
    kind, source_id, seq = record.get("kind"), record.get("source_id"), record.get("seq")
    if kind not in KINDS or not isinstance(source_id, str) or not isinstance(seq, int) or isinstance(seq, bool):
        msg = f"expected a batsight message with kind, source_id and seq, got keys {sorted(record)[:12]}"
        raise ValueError(msg)
    header = {key: value for key, value in record.items() if key not in ("topic", "arrays")}
    header.setdefault("frame_index", None)
    header.setdefault("pts_s", None)
    arrays_in = record.get("arrays") or {}
    if not isinstance(arrays_in, dict):
        msg = f"arrays must be a JSON object, got {type(arrays_in).__name__}"
        raise ValueError(msg)
    arrays = {name: np.asarray(value, dtype=np.float64) for name, value in arrays_in.items()}
    topic = topic_for(kind, source_id).decode("ascii")
    return Message(topic=topic, kind=kind, source_id=source_id, seq=seq, header=header, arrays=arrays)


def report_from_jsonl(
    paths: list[str],
    out_dir: str,
    video: dict[str, str] | None = None,
    labels: dict | None = None,
    *,
    dpi: int = DEFAULT_DPI,
    min_keypoint_conf: float = DEFAULT_MIN_KEYPOINT_CONF,
) -> list[Path]:
    """Write the report figures for ``jsonl`` sink files (``batsight report FILE.jsonl... --out DIR``).

    The files are read line by line into one :class:`ReportCollector` (same figures as the live
    :class:`ReportSink` on the same messages). A source id that already appeared in an earlier file
    is renamed ``<id>.<n>`` (``n`` = 1-based file number) so runs of the same source stay apart;
    ``video`` and ``labels`` given for ``<id>`` also apply to the renamed sources.

    A last line that is not valid JSON (cut short by a crash in the middle of a write) is skipped
    with a warning naming the file and line; such a line anywhere else is an error.

    Args:
        paths: jsonl files written by the ``jsonl`` sink.
        out_dir: Output folder, created with parents when missing.
        video: ``source_id -> video path`` for the keypoint panel.
        labels: ``source_id -> class label`` (``"pull"``, ``"cover_drive"``, ...).
        dpi: PNG resolution, dots per inch.
        min_keypoint_conf: Keypoint visibility threshold, in [0, 1].

    Returns:
        The written PNG files.

    Raises:
        SinkError: a file cannot be read or holds no batsight message (empty), a line other than the
            last is not a batsight JSON message, a video is missing, or a figure cannot be written.
    """
    if not paths:
        msg = "report needs at least one jsonl file"
        raise SinkError(msg)
    video = parse_assignments(video, "--video")
    labels = parse_assignments(labels, "--label")
    _check_videos(video)
    out = Path(out_dir)
    _make_out_dir(out)
    collector = ReportCollector(min_keypoint_conf=min_keypoint_conf)
    for number, path in enumerate(paths, start=1):
        earlier = set(collector.source_ids)
        renamed: dict[str, str] = {}
        messages = 0
        try:
            with open(path, encoding="utf-8") as file:
                for line_number, line in enumerate(file, start=1):
                    if not line.strip():
                        continue
                    try:
                        try:
                            record = json.loads(line)
                        except json.JSONDecodeError as exc:
                            if file.read().strip():  # not the last line: the file is corrupt, not cut short
                                raise
                            _LOG.warning("report: %s:%d: skipped a truncated last line (%s)", path, line_number, exc)
                            break
                        if not isinstance(record, dict):
                            msg = f"expected a JSON object, got {type(record).__name__}"
                            raise ValueError(msg)
                        source_id = record.get("source_id")
                        if source_id and source_id in earlier:
                            renamed[source_id] = f"{source_id}.{number}"
                            record = {**record, "source_id": renamed[source_id]}
                        message = message_from_json(record)
                    except ValueError as exc:
                        msg = f"{path}:{line_number}: not a batsight jsonl message: {exc}"
                        raise SinkError(msg) from exc
                    collector.update(message)
                    messages += 1
        except OSError as exc:
            msg = f"cannot read {str(path)!r}: {exc.strerror or exc}"
            raise SinkError(msg) from exc
        except UnicodeDecodeError as exc:
            msg = f"cannot read {str(path)!r}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            raise SinkError(msg) from exc
        if not messages:
            msg = f"no batsight messages in {str(path)!r}: expected a jsonl file written by the jsonl sink"
            raise SinkError(msg)
        for original, new in renamed.items():
            _LOG.warning("report: source %r of %s renamed %r (already in an earlier file)", original, path, new)
            if original in video:
                video[new] = video[original]
            if original in labels:
                labels[new] = labels[original]
    return collector.render(out, video=video, labels=labels, dpi=dpi)
