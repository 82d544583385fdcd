"""Per-source person tracking (Ultralytics ByteTrack) and batter selection.

The tracker is Ultralytics' own ``BYTETracker`` (Zhang et al., "ByteTrack", ECCV 2022), run once
per source so that batches mixing several cameras never share track state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.config import BatterConfig
from engine.models.ultralytics_pose import configure_ultralytics_offline
from engine.types import Persons


class _Detections:
    """The numpy view of detections that ``BYTETracker.update`` reads (``conf``, ``cls``, ``xywh``)."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray) -> None:
        self.xyxy = xyxy
        self.conf = conf
        self.cls = np.zeros_like(conf)
        wh = xyxy[:, 2:4] - xyxy[:, 0:2]
        self.xywh = np.concatenate([xyxy[:, 0:2] + wh / 2, wh], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: np.ndarray) -> _Detections:
        return _Detections(self.xyxy[index], self.conf[index])


class PersonTracker:
    """ByteTrack over one source's detections.

    ``update(persons)`` returns the same persons, in the same order, with ``track_id`` filled where
    ByteTrack has a confirmed track (``-1`` for detections not yet confirmed). Tracker parameters are
    Ultralytics' ``bytetrack.yaml`` defaults; ``frame_rate`` scales how long lost tracks are kept.
    """

    def __init__(self, frame_rate: float = 30.0) -> None:
        configure_ultralytics_offline()
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import ROOT, YAML, IterableSimpleNamespace

        args = IterableSimpleNamespace(**YAML.load(ROOT / "cfg" / "trackers" / "bytetrack.yaml"))
        args.track_buffer = max(1, int(round(args.track_buffer * frame_rate / 30.0)))
        self._tracker = BYTETracker(args)
        self._id_offset = 0  # Ultralytics restarts ids at 1 on reset(): keep them unique per source
        self._max_id = 0

    def update(self, persons: Persons) -> Persons:
        """Assign track ids to ``persons`` (one frame of one source, frames in order)."""
        track_id = np.full((len(persons),), -1, np.int64)
        tracks = self._tracker.update(_Detections(persons.xyxy, persons.conf))
        if len(tracks):
            idx = tracks[:, -1].astype(np.int64)
            track_id[idx] = tracks[:, 4].astype(np.int64) + self._id_offset
            self._max_id = max(self._max_id, int(track_id[idx].max()))
        return Persons(persons.xyxy, persons.conf, track_id, persons.keypoints_xy, persons.keypoints_conf)

    def reset(self) -> None:
        """Forget every track (after a timeline break or a camera cut); later ids never repeat earlier ones."""
        self._tracker.reset()
        self._id_offset = self._max_id


def batter_scores(persons: Persons, width: int, height: int, min_keypoint_conf: float) -> np.ndarray:
    """Instantaneous batter score per person, ``float64 [N]`` in [0, 1].

    score = detection conf x sqrt(box area / frame area) x centrality x visible-keypoint fraction,
    centrality = exp(-r² / (2 x 0.25²)) with r the box centre's distance from the frame centre in
    frame-normalised units. Nets and broadcast cameras frame the batter large and central.
    """
    if len(persons) == 0:
        return np.zeros((0,), np.float64)
    xyxy = persons.xyxy.astype(np.float64)
    w = np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) / width
    h = np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None) / height
    cx = (xyxy[:, 0] + xyxy[:, 2]) / (2 * width) - 0.5
    cy = (xyxy[:, 1] + xyxy[:, 3]) / (2 * height) - 0.5
    centrality = np.exp(-(cx**2 + cy**2) / (2 * 0.25**2))
    visible = (persons.keypoints_conf >= min_keypoint_conf).mean(axis=1)
    return persons.conf.astype(np.float64) * np.sqrt(w * h) * centrality * visible


@dataclass
class BatterSelector:
    """Pick the batter among one source's tracked persons, stably over time.

    Each track keeps an exponential moving average of :func:`batter_scores`
    (``ema_alpha`` weight on the newest frame); tracks unseen for ``forget_frames`` are dropped.
    The current batter is kept while visible unless another track's average exceeds
    ``switch_ratio`` times the batter's. When no tracked person is visible, the best untracked
    detection of the frame is used, so a batter is still reported while ByteTrack confirms tracks.
    """

    config: BatterConfig
    forget_frames: int = 60
    batter_track_id: int | None = None
    _ema: dict[int, float] = field(default_factory=dict)
    _last_seen: dict[int, int] = field(default_factory=dict)
    _frame: int = 0

    def update(self, persons: Persons, width: int, height: int) -> int | None:
        """Return the index into ``persons`` of the batter for this frame, or ``None`` (nobody)."""
        self._frame += 1
        scores = batter_scores(persons, width, height, self.config.min_keypoint_conf)
        alpha = self.config.ema_alpha
        present: dict[int, int] = {}
        for i, tid in enumerate(persons.track_id.tolist()):
            if tid < 0:
                continue
            present[tid] = i
            self._ema[tid] = alpha * scores[i] + (1 - alpha) * self._ema.get(tid, scores[i])
            self._last_seen[tid] = self._frame
        for tid in [t for t, seen in self._last_seen.items() if self._frame - seen > self.forget_frames]:
            del self._last_seen[tid], self._ema[tid]
        if present:
            best = max(present, key=lambda t: self._ema[t])
            current = self.batter_track_id
            if current is None or current not in present or (
                self._ema[best] > self.config.switch_ratio * self._ema[current]
            ):
                current = self.batter_track_id = best
            return present[current]
        if len(persons):
            return int(np.argmax(scores))
        return None

    def reset(self) -> None:
        """Forget the batter and every track's score."""
        self.batter_track_id = None
        self._ema.clear()
        self._last_seen.clear()
        self._frame = 0
