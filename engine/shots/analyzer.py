"""Per-source shot analysis: segment, infer handedness, fit the whole segment, classify; ``shot/`` payload.

:class:`ShotAnalyzer` ties :class:`engine.shots.ShotSegmenter`, :func:`engine.shots.infer_handedness`,
:func:`engine.analytics.fit_wrist_trajectory` and :class:`engine.shots.ShotClassifier` together and
returns a :class:`ShotResult` per shot; :meth:`engine.messages.Shot.from_result` turns it into the ``shot/`` message.
Keypoints are ``[17, 2]`` COCO keypoints in original-frame pixels (x right, y down); times are
seconds on the source's PTS timeline.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from engine.analytics import WristFit, fit_wrist_trajectory, wrist_offsets
from engine.config import AnalyticsConfig, ShotConfig
from engine.shots.classifier import ShotClassifier, ShotPrediction
from engine.shots.handedness import FLIP_INDEX, infer_handedness, mirror_keypoints, mirrored_name
from engine.shots.segmenter import ShotSegment, ShotSegmenter, f64_vector
from engine.types import KEYPOINT_INDEX, NUM_KEYPOINTS, check_array

__all__ = ["ShotAnalyzer", "ShotResult"]

_FLIP = np.array(FLIP_INDEX)
_LS, _RS = KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]
_LW, _RW = KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_wrist"]
_LH, _RH = KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]


@dataclass(frozen=True)
class ShotResult:
    """Everything known about one finished shot.

    Attributes:
        shot_index: 0-based count of shots of this analyzer (since construction).
        segment: The :class:`ShotSegment` (its ``dx``/``dy`` are the segmentation signal: hands'
            midpoint minus shoulders' midpoint in torso lengths, NaN where not visible).
        handedness: ``"right"`` or ``"left"``.
        handedness_source: ``"config"`` or ``"inferred"``.
        handedness_confidence: Probability in [0, 1] that ``handedness`` is right
            (:class:`engine.shots.HandednessEstimate`; 1.0 when configured).
        wrist: COCO name of the front wrist actually used (``right_wrist`` for a left-hander when
            the configured wrist is ``left_wrist``).
        shoulder: COCO name of the front shoulder actually used.
        t_s: float64 ``[n]`` times of the segment's frames, seconds.
        dx: float64 ``[n]`` front wrist minus front shoulder x / frame width, in the right-hander's
            frame (negated for a left-hander); NaN where either keypoint is not visible.
        dy: float64 ``[n]`` same for y / frame height (y down).
        pair_similarity: float32 ``[n]`` heatmap similarity of the front arm's ``wrist`` /
            ``shoulder`` pair per frame (the mirrored pair given to :meth:`ShotAnalyzer.update` for
            a left-hander), NaN where missing (also on frames replayed from before the person
            became the batter: no heatmaps were computed for them).
        fit: Whole-segment :class:`engine.analytics.WristFit` of the finite ``(t_s, dx, dy)``
            points, or ``None`` with fewer than 2 distinct times.
        prediction: The :class:`ShotPrediction`, or ``None`` when no frame shows shoulders and hips.
        classifier_version: ``version`` of the classifier parameters.
    """

    shot_index: int
    segment: ShotSegment
    handedness: str
    handedness_source: str
    handedness_confidence: float
    wrist: str
    shoulder: str
    t_s: np.ndarray = field(repr=False)
    dx: np.ndarray = field(repr=False)
    dy: np.ndarray = field(repr=False)
    pair_similarity: np.ndarray = field(repr=False)
    fit: WristFit | None
    prediction: ShotPrediction | None
    classifier_version: str

    def __post_init__(self) -> None:
        n = f64_vector("t_s", self.t_s, None).shape[0]
        f64_vector("dx", self.dx, n)
        f64_vector("dy", self.dy, n)
        check_array("pair_similarity", self.pair_similarity, (n,), np.float32)
        if self.handedness not in ("right", "left") or self.handedness_source not in ("config", "inferred"):
            msg = f"bad handedness {self.handedness!r} / source {self.handedness_source!r}"
            raise ValueError(msg)

    def __len__(self) -> int:
        return int(self.t_s.shape[0])


@dataclass
class _Seen:
    """One frame of one tracked person (recorded by :meth:`ShotAnalyzer.observe`, batter or not)."""

    frame_index: int
    keypoints_xy: np.ndarray  # float64 [17, 2] pixels
    keypoints_conf: np.ndarray  # float64 [17]


@dataclass
class _FrameInfo:
    pts_s: float
    frame_index: int
    width: float
    height: float


@dataclass
class _FrameRecord:
    pts_s: float
    frame_index: int
    keypoints_xy: np.ndarray | None  # float64 [17, 2] pixels
    keypoints_conf: np.ndarray | None  # float64 [17]
    width: float
    height: float
    pair_similarity: float
    mirrored_pair_similarity: float


class ShotAnalyzer:
    """Shots of one source: segment, infer handedness, fit the whole segment, classify.

    Per frame, when both wrists and both shoulders have confidence ``>= min_keypoint_conf``,
    the segmentation signal is the wrists' midpoint minus the shoulders' midpoint in pixels,
    divided by the batter's torso length (median of the last 15 frames with hips visible), and fed
    to a :class:`ShotSegmenter` (so ``shots.*_speed`` are torso lengths per second); otherwise the
    frame is fed as not visible. A shoulder jump of more than ``max_jump`` torso lengths between
    consecutive visible frames (camera cut, another person) or ``pts_s`` going backwards finishes
    the shot in progress and starts afresh.

    Only the batter's track is segmented (issue 10): given ``track_id`` (see :meth:`update`), a
    frame whose batter is an unconfirmed detection (``-1``: often a fielder after the camera
    follows the ball) counts as a frame without the batter. When the batter's track changes to a
    person already seen (recorded by :meth:`observe`: the batter found late, after the non-striker
    or umpire was followed), the shot in progress of the previous person is dropped and the
    segmentation is replayed over the new batter's own recorded frames, so the new batter's shot
    starts at its own motion (with its pre-roll and backlift), not at the switch. A track first
    seen at the switch is taken as the same person re-found (the shoulder-jump test decides).
    Shots are never published twice: replayed segments start after the last published shot's end.

    When a segment completes, its frames (kept in a bounded buffer) give:

    * handedness: ``shots.handedness`` if not ``auto``, else :func:`infer_handedness` (the bat
      side of the backlift) over the frames from ``handedness_window_s`` before the segment (but
      after the previous shot's end) to its end, with its confidence;
    * right-hander frame: a left-hander's keypoints are mirrored (:func:`mirror_keypoints`), so
      the configured front arm (``analytics.wrist`` / ``analytics.shoulder``, default left) is
      the front arm for both; the published names are the original labels;
    * ``dx``, ``dy`` by :func:`engine.analytics.wrist_offsets` and the whole-segment
      :func:`engine.analytics.fit_wrist_trajectory` at ``shots.fit_degree`` (r quadratic);
    * the class by :meth:`ShotClassifier.predict_keypoints` (mirror-averaged, calibrated); a
      ``pull`` or ``cover_drive`` below ``shots.min_confidence`` is labelled ``other`` with its
      probabilities kept.

    Not thread-safe; one instance per source, called from that source's analytics thread.
    ``update`` never blocks and holds at most a few seconds of frames (of every tracked person
    when :meth:`observe` is called). A replay can finish more than one shot at once: they are
    returned one per :meth:`update` call, and :meth:`flush` returns them before the shot in
    progress (call it until ``None``).

    Args:
        shot_config: Segmentation, handedness, fit degree, classifier file.
        analytics_config: Front wrist / shoulder names for a right-hander.
        min_keypoint_conf: Keypoints below this confidence are not visible, in [0, 1].
        classifier: A loaded classifier; ``None`` loads ``shot_config.classifier`` (or the
            packaged file).

    Raises:
        ValueError: ``min_keypoint_conf`` outside [0, 1].
        ModelError: the classifier file cannot be loaded.
    """

    def __init__(
        self,
        shot_config: ShotConfig,
        analytics_config: AnalyticsConfig,
        min_keypoint_conf: float = 0.3,
        classifier: ShotClassifier | None = None,
    ) -> None:
        if not 0.0 <= min_keypoint_conf <= 1.0:
            msg = f"`min_keypoint_conf` must lie in [0, 1], got {min_keypoint_conf!r}"
            raise ValueError(msg)
        self._c = shot_config
        self._wrist = analytics_config.wrist
        self._shoulder = analytics_config.shoulder
        self._min_conf = float(min_keypoint_conf)
        self._classifier = classifier if classifier is not None else ShotClassifier.load(shot_config.classifier or None)
        self._segmenter = ShotSegmenter(shot_config)
        self._keep_s = (
            shot_config.max_duration_s + shot_config.pre_roll_s + shot_config.post_roll_s
            + shot_config.end_hold_s + shot_config.handedness_window_s + shot_config.max_gap_s + 1.0
        )
        self._shots = 0
        self._pending: deque[ShotResult] = deque()
        self.reset()

    @property
    def classifier(self) -> ShotClassifier:
        """The shot classifier."""
        return self._classifier

    @property
    def shots(self) -> int:
        """Number of shots returned so far."""
        return self._shots

    def reset(self) -> None:
        """Forget the frames, the tracks and any shot in progress (finished shots stay queued).

        Call it where the tracker's identities restart (camera cut, timeline break).
        """
        self._segmenter.reset()
        self._frames: deque[_FrameRecord] = deque()
        self._torso: deque[float] = deque(maxlen=15)
        self._last_sh: tuple[np.ndarray, float] | None = None
        self._last_pts: float | None = None
        self._tracks: dict[int, deque[_Seen]] = {}
        self._timeline: deque[_FrameInfo] = deque()
        self._batter_track: int | None = None
        self._published_until_s = -math.inf
        self._last_shot_end_s = -math.inf

    def _visible(self, conf: np.ndarray, *idx: int) -> bool:
        return bool(all(conf[i] >= self._min_conf for i in idx))

    def _signal(self, kp: np.ndarray, conf: np.ndarray) -> tuple[float | None, float | None, bool]:
        """``(dx, dy, cut)``: hands relative to shoulders in torso lengths, and a cut flag."""
        if not self._visible(conf, _LS, _RS):
            return None, None, False
        sh = (kp[_LS] + kp[_RS]) / 2.0
        torso_now: float | None = None
        if self._visible(conf, _LH, _RH):
            torso_now = float(np.hypot(*(sh - (kp[_LH] + kp[_RH]) / 2.0)))
            if not torso_now > 0:
                torso_now = None
        cut = False
        if self._last_sh is not None:
            prev_sh, prev_scale = self._last_sh
            ref = prev_scale if torso_now is None else min(prev_scale, torso_now)
            cut = float(np.hypot(*(sh - prev_sh))) > self._c.max_jump * ref
        if cut:
            self._torso.clear()
        if torso_now is not None:
            self._torso.append(torso_now)
        if not self._torso:
            self._last_sh = None
            return None, None, cut
        scale = float(np.median(np.fromiter(self._torso, np.float64)))
        self._last_sh = (sh, scale)
        if not self._visible(conf, _LW, _RW):
            return None, None, cut
        hands = (kp[_LW] + kp[_RW]) / 2.0
        d = (hands - sh) / scale
        return float(d[0]), float(d[1]), cut

    def update(
        self,
        pts_s: float,
        frame_index: int,
        keypoints_xy: np.ndarray | None,
        keypoints_conf: np.ndarray | None,
        width: float,
        height: float,
        pair_similarity: float | None = None,
        mirrored_pair_similarity: float | None = None,
        *,
        track_id: int | None = None,
    ) -> ShotResult | None:
        """Add one frame of the batter; return a finished shot, if any.

        Args:
            pts_s: Frame time, seconds (source PTS).
            frame_index: The frame's index.
            keypoints_xy: Batter's ``[17, 2]`` keypoints in frame pixels, or ``None`` (no batter).
            keypoints_conf: ``[17]`` confidences in [0, 1], or ``None`` (no batter).
            width: Frame width, pixels (> 0).
            height: Frame height, pixels (> 0).
            pair_similarity: This frame's heatmap similarity of the configured wrist/shoulder
                pair (``analytics.wrist`` / ``analytics.shoulder``), or ``None``.
            mirrored_pair_similarity: The same for the other arm's pair (``right_wrist`` /
                ``right_shoulder`` for the default), or ``None``. A left-hander's shot publishes
                this one, so that ``pair_similarity`` always follows the front arm, like ``dx``.
            track_id: The batter's tracker identity (``-1``: an unconfirmed detection, not
                segmented), or ``None`` when unknown (every batter frame is then segmented as one
                person, the shoulder-jump test alone telling people apart). Call :meth:`observe`
                after this for the same frame so that a later switch can replay the new batter.

        Returns:
            A :class:`ShotResult` or ``None``.

        Raises:
            ValueError: non-finite ``pts_s``, bad shapes, or non-positive frame size.
        """
        t = float(pts_s)
        if not math.isfinite(t):
            msg = f"`pts_s` must be a finite number of seconds, got {pts_s!r}"
            raise ValueError(msg)
        if not (width > 0 and height > 0):
            msg = f"`width` and `height` must be > 0 pixels, got {width!r} x {height!r}"
            raise ValueError(msg)
        kp = conf = None
        if keypoints_xy is not None and keypoints_conf is not None:
            kp = np.array(keypoints_xy, dtype=np.float64)
            conf = np.array(keypoints_conf, dtype=np.float64)
            if kp.shape != (NUM_KEYPOINTS, 2) or conf.shape != (NUM_KEYPOINTS,):
                msg = (
                    f"`keypoints_xy` must have shape ({NUM_KEYPOINTS}, 2) and `keypoints_conf` "
                    f"({NUM_KEYPOINTS},), got {kp.shape} and {conf.shape}"
                )
                raise ValueError(msg)
        if self._last_pts is not None and t < self._last_pts:
            self._queue(self._segmenter.flush())
            self.reset()
        self._last_pts = t
        if track_id is not None and kp is not None:
            if track_id < 0:
                kp = conf = None  # identity unknown: not the batter's track
            elif track_id != self._batter_track:
                if self._tracks.get(int(track_id)):
                    self._replay(int(track_id))
                self._batter_track = int(track_id)
        sim = math.nan if pair_similarity is None else float(pair_similarity)
        mirrored_sim = math.nan if mirrored_pair_similarity is None else float(mirrored_pair_similarity)
        self._step(_FrameRecord(t, int(frame_index), kp, conf, float(width), float(height), sim, mirrored_sim))
        return self._pending.popleft() if self._pending else None

    def observe(
        self,
        pts_s: float,
        frame_index: int,
        track_id: np.ndarray,
        keypoints_xy: np.ndarray,
        keypoints_conf: np.ndarray,
        width: float,
        height: float,
    ) -> None:
        """Record every tracked person of a frame, for replaying one that becomes the batter.

        Call it after :meth:`update` for the same frame (a replay uses the frames before the
        switch). Persons without a confirmed track (``track_id < 0``) are not recorded. The
        records span the same few seconds as the batter's frames and are forgotten by :meth:`reset`.

        Args:
            pts_s: Frame time, seconds (source PTS), not before the previous frame's.
            frame_index: The frame's index.
            track_id: int ``[N]`` tracker identities (``engine.types.Persons.track_id``).
            keypoints_xy: float ``[N, 17, 2]`` keypoints in frame pixels.
            keypoints_conf: float ``[N, 17]`` confidences in [0, 1].
            width: Frame width, pixels (> 0).
            height: Frame height, pixels (> 0).

        Raises:
            ValueError: arrays of inconsistent shapes.
        """
        ids = np.asarray(track_id).reshape(-1)
        n = ids.shape[0]
        kp = np.asarray(keypoints_xy, np.float64)
        conf = np.asarray(keypoints_conf, np.float64)
        if kp.shape != (n, NUM_KEYPOINTS, 2) or conf.shape != (n, NUM_KEYPOINTS):
            msg = (
                f"`keypoints_xy` must have shape ({n}, {NUM_KEYPOINTS}, 2) and `keypoints_conf` "
                f"({n}, {NUM_KEYPOINTS}) like `track_id`, got {kp.shape} and {conf.shape}"
            )
            raise ValueError(msg)
        t = float(pts_s)
        self._timeline.append(_FrameInfo(t, int(frame_index), float(width), float(height)))
        for i, tid in enumerate(ids.tolist()):
            if tid >= 0:
                self._tracks.setdefault(int(tid), deque()).append(_Seen(int(frame_index), kp[i].copy(), conf[i].copy()))
        while self._timeline and t - self._timeline[0].pts_s > self._keep_s:
            first = self._timeline.popleft().frame_index
            for tid in list(self._tracks):
                seen = self._tracks[tid]
                while seen and seen[0].frame_index <= first:
                    seen.popleft()
                if not seen:
                    del self._tracks[tid]

    def flush(self) -> ShotResult | None:
        """End of stream: the next finished shot (queued ones first, then the one in progress, if long enough).

        Call it until it returns ``None``.
        """
        if not self._pending:
            self._queue(self._segmenter.flush())
        return self._pending.popleft() if self._pending else None

    def _queue(self, seg: ShotSegment | None) -> None:
        if seg is not None:
            self._pending.append(self._result(seg))
            self._published_until_s = max(self._published_until_s, seg.end_s)

    def _step(self, rec: _FrameRecord) -> None:
        """Segment one frame of the batter (``rec.keypoints_xy`` ``None``: no batter in it)."""
        dx = dy = None
        if rec.keypoints_xy is not None and rec.keypoints_conf is not None:
            dx, dy, cut = self._signal(rec.keypoints_xy, rec.keypoints_conf)
            if cut:
                self._queue(self._segmenter.flush())
                self._segmenter.reset(not_before_s=self._published_until_s)
                self._frames.clear()  # the stance before a cut says nothing about the new view
        self._frames.append(rec)
        while self._frames and rec.pts_s - self._frames[0].pts_s > self._keep_s:
            self._frames.popleft()
        self._queue(self._segmenter.update(rec.pts_s, dx, dy, rec.frame_index))

    def _replay(self, track_id: int) -> None:
        """Drop the shot in progress and segment ``track_id``'s recorded frames as the batter's."""
        self._segmenter.reset(not_before_s=self._published_until_s)
        self._frames.clear()
        self._torso.clear()
        self._last_sh = None
        seen = {r.frame_index: r for r in self._tracks[track_id]}
        for info in self._timeline:
            r = seen.get(info.frame_index)
            self._step(
                _FrameRecord(
                    info.pts_s, info.frame_index, None if r is None else r.keypoints_xy,
                    None if r is None else r.keypoints_conf, info.width, info.height, math.nan, math.nan,
                )
            )

    def _handedness(self, seg: ShotSegment) -> tuple[str, float, str]:
        """``(handedness, confidence, source)`` of a finished segment (see the class docstring)."""
        c = self._c
        if c.handedness != "auto":
            return c.handedness, 1.0, "config"
        lo = max(seg.start_s - c.handedness_window_s, self._last_shot_end_s)
        frames = [f for f in self._frames if lo < f.pts_s <= seg.end_s and f.keypoints_xy is not None]
        est = infer_handedness(
            np.array([f.keypoints_xy for f in frames], np.float64).reshape(-1, NUM_KEYPOINTS, 2),
            np.array([f.keypoints_conf for f in frames], np.float64).reshape(-1, NUM_KEYPOINTS),
            np.array([f.pts_s for f in frames], np.float64),
            c.handedness_min_confidence,
            self._min_conf,
        )
        return est.handedness, est.confidence, "inferred"

    def _result(self, seg: ShotSegment) -> ShotResult:
        c = self._c
        frames = [f for f in self._frames if seg.start_s <= f.pts_s <= seg.end_s]
        n = len(frames)
        handedness, hand_conf, source = self._handedness(seg)
        self._last_shot_end_s = seg.end_s
        left = handedness == "left"
        wrist = mirrored_name(self._wrist) if left else self._wrist
        shoulder = mirrored_name(self._shoulder) if left else self._shoulder
        t = np.array([f.pts_s for f in frames], np.float64)
        dx = np.full(n, np.nan)
        dy = np.full(n, np.nan)
        iw, ish = KEYPOINT_INDEX[self._wrist], KEYPOINT_INDEX[self._shoulder]
        kps = np.full((n, NUM_KEYPOINTS, 2), np.nan)
        confs = np.zeros((n, NUM_KEYPOINTS))
        for i, f in enumerate(frames):
            if f.keypoints_xy is None or f.keypoints_conf is None:
                continue
            kp = mirror_keypoints(f.keypoints_xy, f.width) if left else f.keypoints_xy
            cf = f.keypoints_conf[_FLIP] if left else f.keypoints_conf
            kps[i], confs[i] = kp, cf
            if cf[iw] >= self._min_conf and cf[ish] >= self._min_conf:
                dx[i], dy[i] = wrist_offsets(kp, f.width, f.height, self._wrist, self._shoulder)
        good = np.isfinite(dx) & np.isfinite(dy)
        fit = fit_wrist_trajectory(t[good], dx[good], dy[good], c.fit_degree) if np.count_nonzero(good) >= 2 else None
        prediction = (
            self._classifier.predict_keypoints(kps, t, confs, self._min_conf, c.min_confidence) if n else None
        )
        result = ShotResult(
            shot_index=self._shots,
            segment=seg,
            handedness=handedness,
            handedness_source=source,
            handedness_confidence=hand_conf,
            wrist=wrist,
            shoulder=shoulder,
            t_s=t,
            dx=dx,
            dy=dy,
            pair_similarity=np.array(
                [f.mirrored_pair_similarity if left else f.pair_similarity for f in frames], np.float32
            ),
            fit=fit,
            prediction=prediction,
            classifier_version=self._classifier.version,
        )
        self._shots += 1
        return result
