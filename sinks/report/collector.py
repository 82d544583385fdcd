"""The report collector: what the ``report`` sink keeps per source, and the figures it renders from it.

While the stream runs, :class:`ReportCollector` keeps, per source, only what the figures need (bounded
by ``max_frames`` per source and ``max_shots`` per source):

* ``pose/``: the batter's keypoints, confidences and box per frame with a batter (for the left panel
  of Figs. 4-5, the wrist path, and the whole-run trajectory when there are no ``shot/`` messages);
* ``sim/``: the per-frame pair similarities (``pairs``) and the latest ``cumulative_mean`` and
  ``window_mean`` matrices with their ``heatmap_source``;
* ``fit/``: only the configured ``wrist`` / ``shoulder`` names;
* ``shot/``: every shot's points, fits and ``pair_similarity``.

:meth:`ReportCollector.render` then writes the figures listed in :mod:`sinks.report`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.analytics import fit_wrist_trajectory
from engine.errors import SinkError
from engine.messages import AnyMessage, Fit, Pose, Similarity
from engine.messages import Shot as ShotMessage
from engine.types import KEYPOINT_INDEX
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
from sinks.report.storage import Columns, Shot, SourceState, pair_columns, pose_columns
from sinks.report.video import read_video_frames

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


def _finite_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _keypoint_name(value: object, default: str) -> str:
    return value if isinstance(value, str) and value in KEYPOINT_INDEX else default


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
        self._sources: dict[str, SourceState] = {}

    @property
    def source_ids(self) -> list[str]:
        """Sources seen so far, sorted."""
        return sorted(self._sources)

    def reset(self) -> None:
        """Forget everything."""
        self._sources.clear()

    def _state(self, source_id: str) -> SourceState:
        state = self._sources.get(source_id)
        if state is None:
            state = SourceState(poses=pose_columns(self.max_frames), shots=deque(maxlen=self.max_shots))
            self._sources[source_id] = state
        return state

    def update(self, message: AnyMessage) -> None:
        """Keep what the figures need from one message (``pose``, ``sim``, ``fit``, ``shot``; others ignored)."""
        state = self._state(message.source_id) if message.source_id else None
        if state is None:
            return
        if isinstance(message, Pose):
            self._on_pose(state, message)
        elif isinstance(message, Similarity):
            self._on_sim(state, message)
        elif isinstance(message, Fit):
            state.wrist, state.shoulder = message.wrist, message.shoulder
        elif isinstance(message, ShotMessage):
            self._on_shot(state, message)

    def _on_pose(self, state: SourceState, message: Pose) -> None:
        width, height = message.frame_width, message.frame_height
        if width and height:
            state.frame_size = (width, height)
        if message.heatmap_source != "none":
            state.heatmap_source = message.heatmap_source
        frame_index, pts_s = message.frame_index, _finite_float(message.pts_s)
        if (
            message.keypoints_xy is None or message.keypoints_conf is None or message.xyxy is None
            or frame_index is None or pts_s is None or not (width and height)
        ):
            return
        evicted = state.poses.evicted
        state.poses.append(
            frame_index=frame_index,
            pts_s=pts_s,
            frame_width=width,
            frame_height=height,
            keypoints_xy=np.nan_to_num(message.keypoints_xy, nan=-1.0),
            keypoints_conf=np.nan_to_num(message.keypoints_conf, nan=0.0),
            xyxy=message.xyxy,
        )
        if state.poses.evicted and not evicted:
            _LOG.warning("report: %s: over %d batter frames, forgetting the oldest", message.source_id, self.max_frames)

    def _on_sim(self, state: SourceState, message: Similarity) -> None:
        state.sim_frames = max(state.sim_frames + 1, message.seq + 1)
        state.heatmap_source = message.heatmap_source
        state.cumulative_mean = message.cumulative_mean.copy()
        state.window_mean = message.window_mean.copy()
        frame_index, pts_s = message.frame_index, _finite_float(message.pts_s)
        if frame_index is None or pts_s is None:
            return
        for key, value in message.pairs.items():
            number = _finite_float(value)
            columns = state.pairs.get(key)
            if columns is None:
                columns = state.pairs[key] = pair_columns(self.max_frames)
            columns.append(frame_index=frame_index, pts_s=pts_s, value=np.nan if number is None else number)

    def _on_shot(self, state: SourceState, message: ShotMessage) -> None:
        t_start_s, t_end_s = _finite_float(message.t_start_s), _finite_float(message.t_end_s)
        if t_start_s is None or t_end_s is None:
            _LOG.warning(
                "report: skipped shot/%s/ seq %s: t_start_s and t_end_s must be finite numbers, got %r, %r",
                message.source_id, message.seq, message.t_start_s, message.t_end_s,
            )
            return
        try:
            segment = WristSegment(
                source_id=message.source_id,
                t_s=message.t_s,
                dx=message.dx,
                dy=message.dy,
                dx_coef=message.dx_coef,
                dy_coef=message.dy_coef,
                r_coef=message.r_coef,
                t_start_s=t_start_s,
                t_end_s=t_end_s,
                wrist=_keypoint_name(message.wrist, _DEFAULT_WRIST),
                shoulder=_keypoint_name(message.shoulder, _DEFAULT_SHOULDER),
                shot_index=message.shot_index,
                label=message.label,
                confidence=_finite_float(message.confidence),
                start_frame=message.start_frame,
                end_frame=message.end_frame,
                handedness=message.handedness,
            )
        except ValueError as exc:
            _LOG.warning("report: skipped shot/%s/ seq %s: %s", message.source_id, message.seq, exc)
            return
        pair_array = np.asarray(message.pair_similarity, dtype=np.float64)
        # no heatmap of the pair in the shot (all NaN): Fig. 6 uses sim/
        pair_values: np.ndarray | None = pair_array if np.isfinite(pair_array).any() else None
        start_s, end_s = _finite_float(message.start_s), _finite_float(message.end_s)
        if start_s is None or end_s is None or not end_s > start_s:
            start_s, end_s = t_start_s, t_end_s
        if len(state.shots) == state.shots.maxlen:
            state.shots_dropped += 1
        state.shots.append(Shot(segment, start_s, end_s, pair_values))

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

    def _segments(self, source_id: str, state: SourceState, label: str | None) -> list[tuple[WristSegment, str]]:
        if state.shots:
            return [(s.segment, f"{source_id}_shot{s.segment.shot_index}_wrist.png") for s in state.shots]
        segment = self._whole_run(source_id, state, label)
        return [] if segment is None else [(segment, f"{source_id}_wrist.png")]

    def _whole_run(self, source_id: str, state: SourceState, label: str | None) -> WristSegment | None:
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
    def _pose_for(state: SourceState, segment: WristSegment) -> PoseSnapshot | None:
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

    def _wrist_path(self, state: SourceState, segment: WristSegment) -> np.ndarray | None:
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

    def _pair_series(self, state: SourceState, source_id: str, given: str | None) -> list[PairSeries]:
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
    def _pair_columns_for(state: SourceState, wrist: str, shoulder: str) -> tuple[str, Columns | None]:
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
