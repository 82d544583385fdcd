"""Per-source person tracking (Ultralytics ByteTrack) and batter selection.

The tracker is Ultralytics' own ``BYTETracker`` (Zhang et al., "ByteTrack", ECCV 2022), run once
per source so that batches mixing several cameras never share track state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from engine.config import BatterConfig
from engine.models.ultralytics_pose import configure_ultralytics_offline
from engine.types import KEYPOINT_INDEX, Persons


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


#: COCO indices of the face keypoints (nose, left_eye, right_eye): seen when a person faces the camera.
_FACE = [KEYPOINT_INDEX["nose"], KEYPOINT_INDEX["left_eye"], KEYPOINT_INDEX["right_eye"]]
_SHOULDERS = [KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]]
_HIPS = [KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]]
_WRISTS = [KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_wrist"]]


def hands_together(persons: Persons, min_keypoint_conf: float) -> np.ndarray:
    """How surely each person holds something with both hands (a bat), ``float64 [N]`` in [0, 1].

    ``d`` = wrist-to-wrist distance over torso length (shoulder midpoint to hip midpoint, pixels
    over pixels): 1 for ``d <= 0.5`` (a batter's grip, in stance and through the swing), falling
    linearly to 0 at ``d >= 1.5`` (arms apart: a bowler, an umpire, a fielder). 0.5 (unknown)
    where a wrist, shoulder or hip is below ``min_keypoint_conf``.
    """
    kxy = persons.keypoints_xy.astype(np.float64)
    needed = _SHOULDERS + _HIPS + _WRISTS
    known = (persons.keypoints_conf[:, needed] >= min_keypoint_conf).all(axis=1)
    torso = np.linalg.norm(kxy[:, _SHOULDERS].mean(axis=1) - kxy[:, _HIPS].mean(axis=1), axis=1)
    d = np.linalg.norm(kxy[:, _WRISTS[0]] - kxy[:, _WRISTS[1]], axis=1) / np.maximum(torso, 1e-6)
    return np.where(known & (torso > 0), np.clip(1.5 - d, 0.0, 1.0), 0.5)


def batter_scores(persons: Persons, width: int, height: int, config: BatterConfig) -> np.ndarray:
    """Instantaneous batter score per person, ``float64 [N]`` in [0, 1].

    score = conf x sqrt(relative height) x centrality x visible x facing x grip x far end, with

    - relative height: box height over the tallest box of the frame (the batter is framed large
      in a close-up and is rarely much smaller than the others in a wide view; absolute size would
      favour the umpire and the non-striker, nearer the camera);
    - centrality = exp(-cx² / (2 x 0.25²)), cx the box centre's horizontal offset from the frame
      centre in frame widths (nets and broadcast cameras keep the pitch, and so the striker, on the
      vertical centre line; how high the striker stands in the picture depends on the zoom);
    - visible: fraction of keypoints at or above ``config.min_keypoint_conf``;
    - facing = 1 - w_f + w_f x (mean confidence of nose and eyes), ``w_f = config.facing_weight``:
      a front-on camera (the broadcast view from the bowler's end, a nets phone behind the bowler)
      sees the striker's and the keeper's faces and the backs of the umpire, the bowler and the
      non-striker (face confidence 0.47-0.83 for the striker, 0.04-0.2 for them on the shared clips);
    - grip = 1 - w_g + w_g x :func:`hands_together`, ``w_g = config.grip_weight``: the striker
      holds the bat with both hands, the keeper's and fielders' hands are apart;
    - far end = 1 - w_e x (box bottom / frame height), ``w_e = config.far_end_weight``: a
      front-on camera looks down the pitch, so the striker stands at the far end, higher in the
      picture than the bowler, the umpire and the non-striker at the near end (in a close-up the
      striker is the only whole person, so this factor rarely matters there).

    Every factor is in [0, 1]; the product ranks the persons of one frame, and its moving average
    (:class:`BatterSelector`) ranks tracks over time. The factors and weights are this project's
    own, chosen by looking at the shared broadcast and nets clips (README "Batter").

    Args:
        persons: The frame's persons (boxes and keypoints in frame pixels).
        width: Frame width, pixels.
        height: Frame height, pixels.
        config: ``min_keypoint_conf`` and the factor weights.
    """
    if len(persons) == 0:
        return np.zeros((0,), np.float64)
    xyxy = persons.xyxy.astype(np.float64)
    h = np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)
    relative_height = h / max(float(h.max()), 1e-6)
    cx = (xyxy[:, 0] + xyxy[:, 2]) / (2 * width) - 0.5
    centrality = np.exp(-(cx**2) / (2 * 0.25**2))
    conf = persons.keypoints_conf
    visible = (conf >= config.min_keypoint_conf).mean(axis=1)
    facing = 1 - config.facing_weight + config.facing_weight * conf[:, _FACE].astype(np.float64).mean(axis=1)
    grip = 1 - config.grip_weight + config.grip_weight * hands_together(persons, config.min_keypoint_conf)
    far_end = 1 - config.far_end_weight * np.clip(xyxy[:, 3] / height, 0.0, 1.0)
    return persons.conf.astype(np.float64) * np.sqrt(relative_height) * centrality * visible * facing * grip * far_end


@dataclass
class BatterSelector:
    """Pick the batter among one source's tracked persons, stably over time.

    Each track keeps an exponential moving average of :func:`batter_scores`
    (``ema_alpha`` weight on the newest frame); tracks unseen for ``forget_frames`` are dropped.
    The current batter is kept while visible unless another track's average exceeds
    ``switch_ratio`` times the batter's. When no tracked person is visible, the best untracked
    detection of the frame is used, so a batter is still reported while ByteTrack confirms tracks.

    Stable identity: when the batter's track is missing from a frame and another box (a new track
    id, or an untracked detection) overlaps the batter's last box with IoU >= ``handover_iou``, that
    box is taken as the batter and relabelled with the batter's track id. ByteTrack sometimes
    starts a second track on the same person (a second detector box that includes the bat): without
    this the published id flickers ``1 -> 15 -> 1`` for a frame (``nets_mixed_01.mp4``, IoU 0.82).
    """

    config: BatterConfig
    forget_frames: int = 60
    batter_track_id: int | None = None
    _ema: dict[int, float] = field(default_factory=dict)
    _last_seen: dict[int, int] = field(default_factory=dict)
    _frame: int = 0
    _batter_xyxy: np.ndarray | None = None

    def update(self, persons: Persons, width: int, height: int) -> tuple[Persons, int | None]:
        """Choose the batter of this frame.

        Args:
            persons: The frame's persons with ByteTrack ids (``-1`` = untracked).
            width: Frame width, pixels.
            height: Frame height, pixels.

        Returns:
            ``(persons, index)``: the persons with the batter's ``track_id`` kept stable (see the
            class docstring; other ids unchanged), and the index of the batter, or ``None``
            (nobody in the frame).
        """
        self._frame += 1
        persons = self._hand_over(persons)
        scores = batter_scores(persons, width, height, self.config)
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
        index: int | None = None
        if present:
            best = max(present, key=lambda t: self._ema[t])
            current = self.batter_track_id
            if current is None or current not in present or (
                self._ema[best] > self.config.switch_ratio * self._ema[current]
            ):
                current = self.batter_track_id = best
            index = present[current]
        elif len(persons):
            index = int(np.argmax(scores))
        if index is not None:
            self._batter_xyxy = persons.xyxy[index].astype(np.float64)
        return persons, index

    def _hand_over(self, persons: Persons) -> Persons:
        """Relabel the box that continues the missing batter's track with the batter's id."""
        batter = self.batter_track_id
        if batter is None or self._batter_xyxy is None or len(persons) == 0 or batter in persons.track_id:
            return persons
        configure_ultralytics_offline()
        from ultralytics.utils.metrics import bbox_ioa

        iou = bbox_ioa(self._batter_xyxy[None], persons.xyxy.astype(np.float64), iou=True)[0]
        j = int(np.argmax(iou))
        if iou[j] < self.config.handover_iou:
            return persons
        track_id = persons.track_id.copy()
        track_id[j] = batter
        return replace(persons, track_id=track_id)

    def reset(self) -> None:
        """Forget the batter and every track's score."""
        self.batter_track_id = None
        self._batter_xyxy = None
        self._ema.clear()
        self._last_seen.clear()
        self._frame = 0
