"""The pipeline's per-source steps, free of threads and sockets.

One :class:`SourceState` holds everything the engine keeps for a source. The steps, in frame order:

1. :meth:`SourceState.track` (inference side): camera-cut detection, ByteTrack, batter selection
   -> :class:`~engine.types.PoseResult`.
2. :func:`refine_batters` (inference side, models that refine keypoints such as Keypoint R-CNN).
3. :meth:`SourceState.analyse` (publisher side): rolling analytics and shot segmentation ->
   the frame's typed messages (``pose/``, ``sim/``, ``fit/``, ``shot/``).
4. :meth:`SourceState.finish`: the last shot and ``eos/``.

:class:`engine.pipeline.Pipeline` runs them on threads with ZeroMQ; :func:`engine.pipeline.run_inline`
runs them on the calling thread into a list, so most pipeline tests need neither.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.analytics import SourceAnalytics
from engine.batching import SourceReader
from engine.clock import Clock
from engine.config import Config
from engine.errors import safe_text
from engine.messages import EndOfStream as EosMessage
from engine.messages import Fit, Health, Message, Pose, Shot, Similarity, SourceHealth
from engine.models.base import KeypointModel
from engine.scenecut import SceneCutDetector
from engine.shots import ShotAnalyzer, ShotClassifier, ShotResult, mirrored_name
from engine.sources import Source
from engine.stats import SourceStats
from engine.tracking import BatterSelector, PersonTracker
from engine.types import KEYPOINT_INDEX, Frame, Persons, PoseResult

#: Tracker frame rate for a source that does not know its own (``Source.fps is None``).
DEFAULT_TRACKER_FPS = 30.0


def shot_pair_cells(config: Config) -> tuple[tuple[int, int], tuple[int, int]]:
    """Cells of the 17x17 matrix a shot's pair similarity comes from.

    Returns:
        ``((wrist, shoulder), (mirrored wrist, mirrored shoulder))`` COCO indices: the configured
        front arm and its mirror (a left-hander's front arm).
    """
    wrist, shoulder = config.analytics.wrist, config.analytics.shoulder
    return (
        (KEYPOINT_INDEX[wrist], KEYPOINT_INDEX[shoulder]),
        (KEYPOINT_INDEX[mirrored_name(wrist)], KEYPOINT_INDEX[mirrored_name(shoulder)]),
    )


class SourceState:
    """Everything the engine keeps for one source, and the steps that use it.

    Thread contract: :meth:`track` is called from the inference thread only, :meth:`analyse` and
    :meth:`finish` from the publisher thread only (in frame order); ``stats`` counters are written
    by the publisher side and read by anyone (plain ints).

    Args:
        source: The source (unopened; its reader opens it).
        reader: The reader thread and queue of the source.
        config: Validated configuration.
        classifier: Shot classifier, or ``None`` when ``config.shots.enabled`` is false.
    """

    def __init__(self, source: Source, reader: SourceReader, config: Config,
                 classifier: ShotClassifier | None) -> None:
        self.source = source
        self.reader = reader
        self.config = config
        self.stats = SourceStats(source.source_id, source.total_frames)
        self.selector = BatterSelector(config.batter)
        threshold = config.batter.scene_cut_threshold
        self.cut_detector = (
            SceneCutDetector(threshold, layout_threshold=config.batter.layout_cut_threshold) if threshold else None
        )
        self.analytics = SourceAnalytics(config.analytics, config.batter.min_keypoint_conf)
        self.shots = (
            ShotAnalyzer(config.shots, config.analytics, config.batter.min_keypoint_conf, classifier=classifier)
            if config.shots.enabled
            else None
        )
        self._pair_cells = shot_pair_cells(config)
        self._tracker: PersonTracker | None = None

    @property
    def source_id(self) -> str:
        """The source's id."""
        return self.source.source_id

    @property
    def tracker(self) -> PersonTracker:
        """The source's ByteTrack tracker, built at first use with the source's own frame rate.

        ``source.fps`` is known once the source is open, which is before its first frame.
        """
        if self._tracker is None:
            fps = self.source.fps
            self._tracker = PersonTracker(frame_rate=fps if fps and fps > 0 else DEFAULT_TRACKER_FPS)
        return self._tracker

    # ------------------------------------------------------------------------------ inference side
    def track(self, frame: Frame, persons: Persons, heatmap_source: str, inference_ms: float) -> PoseResult:
        """Cut detection, tracking and batter selection of one frame.

        A timeline break or a camera cut resets the tracker and the batter selector first (old
        tracks and scores no longer apply).

        Args:
            frame: The frame.
            persons: The model's persons in the frame (``track_id`` all ``-1``).
            heatmap_source: The model's ``heatmap_source`` (``"model"`` or ``"rendered"``).
            inference_ms: This frame's share of the model time, ms.
        """
        cut_detector = self.cut_detector
        if frame.timeline_break and cut_detector is not None:
            cut_detector.reset()
        scene_cut = cut_detector is not None and cut_detector.update(frame.image)
        if frame.timeline_break or scene_cut:
            self.tracker.reset()
            self.selector.reset()
        persons = self.tracker.update(persons)
        persons, batter = self.selector.update(persons, frame.width, frame.height)
        return PoseResult(
            frame=frame,
            persons=persons,
            batter=batter,
            heatmap_source=heatmap_source if batter is not None else "none",
            inference_ms=inference_ms,
            scene_cut=scene_cut,
        )

    # ------------------------------------------------------------------------------ publisher side
    def analyse(self, result: PoseResult) -> list[Message]:
        """The typed messages of one frame, in publishing order.

        ``pose/``, then ``sim/`` and ``fit/`` (batter frames), then ``shot/`` when a shot ends here
        (or at a timeline break or camera cut at this frame, before its analytics).
        """
        frame = result.frame
        out: list[Message] = [Pose.from_result(result)]
        if frame.timeline_break or result.scene_cut:  # rolling windows restart where the timeline
            self.analytics.reset_window()  # broke or the camera cut to another view
            if self.shots is not None:  # a shot cannot span the break: end it here
                while (done := self.shots.flush()) is not None:
                    self._add_shot(out, done)
                self.shots.reset()
        self.stats.frames_out += 1
        update = None
        if result.batter is not None:
            self.stats.batter_frames += 1
            update = self.analytics.update(result)
        if update is not None:
            acfg = self.config.analytics
            out.append(Similarity.from_update(result, update, acfg.window_s))
            fit = Fit.from_update(result, update, acfg.window_s, acfg.wrist, acfg.shoulder)
            if fit is not None:
                out.append(fit)
        if self.shots is not None:
            b = result.batter
            sim = None if update is None else update.similarity
            front, other = self._pair_cells
            shot = self.shots.update(
                frame.pts_s,
                frame.frame_index,
                None if b is None else result.persons.keypoints_xy[b],
                None if b is None else result.persons.keypoints_conf[b],
                frame.width,
                frame.height,
                None if sim is None else float(sim[front]),
                None if sim is None else float(sim[other]),
                track_id=None if b is None else int(result.persons.track_id[b]),
            )
            persons = result.persons
            self.shots.observe(frame.pts_s, frame.frame_index, persons.track_id, persons.keypoints_xy,
                               persons.keypoints_conf, frame.width, frame.height)
            self._add_shot(out, shot)
        return out

    def finish(self, reason: str, error: BaseException | None = None, flush_shot: bool = True) -> list[Message]:
        """The source's last messages: the shot in progress (if any) and ``eos/``.

        Args:
            reason: ``end``, ``error``, ``stopped`` or ``timeout``; ``end`` of a source that says it
                was truncated (``Source.truncated``) becomes ``truncated``.
            error: The exception that ended the source, or ``None``.
            flush_shot: Publish the shot in progress; ``False`` when an engine stage failed or the
                source was abandoned (its analytics may be incomplete).
        """
        out: list[Message] = []
        if self.shots is not None and flush_shot:
            while (done := self.shots.flush()) is not None:
                self._add_shot(out, done)
        stats = self.stats
        stats.ended = True
        stats.error = None if error is None else safe_text(str(error))
        out.append(
            EosMessage(
                source_id=self.source_id,
                frames=stats.frames_out,
                dropped=self.reader.dropped,
                corrupt=self.source.corrupt,
                concealed=self.source.concealed,
                error=stats.error,
                reason="truncated" if reason == "end" and self.source.truncated else reason,  # type: ignore[arg-type]
            )
        )
        return out

    def _add_shot(self, out: list[Message], shot: ShotResult | None) -> None:
        if shot is not None:
            out.append(Shot.from_result(self.source_id, shot))
            self.stats.shots += 1

    # ------------------------------------------------------------------------------ health
    def health(self, now_s: float, rate_window_s: float) -> SourceHealth:
        """This source's ``health/`` entry at monotonic time ``now_s`` (rates over ``rate_window_s``)."""
        reader, st = self.reader, self.stats
        fps_in, fps_out = st.rates(now_s, reader.frames_in, rate_window_s)
        if st.ended:
            state = "failed" if st.error else "ended"
        else:  # the source knows best (stalled, reconnecting); else the reader's view
            state = self.source.state or reader.state
        return SourceHealth(
            state=state,  # type: ignore[arg-type]
            reconnects=int(self.source.reconnects),
            frames_in=reader.frames_in,
            frames_out=st.frames_out,
            dropped=reader.dropped,
            corrupt=self.source.corrupt,
            queue_depth=reader.queue.qsize(),
            fps_in=round(fps_in, 2),
            fps_out=round(fps_out, 2),
            batter_frames=st.batter_frames,
            concealed=self.source.concealed,
        )


def refine_batters(
    model: KeypointModel, results: list[PoseResult], clock: Clock
) -> tuple[list[PoseResult], float]:
    """Run the model's keypoint refinement (Keypoint R-CNN) on every batter box of a batch.

    The batter's keypoints are replaced and its heatmap logits attached (``"model"``); where the
    refinement finds nothing (``full`` mode, NaN keypoints) the detector's keypoints stay and
    analytics render heatmaps (``"rendered"``). Models that do not refine
    (:meth:`KeypointModel.refine` returns ``None``) leave the results as they are.

    Returns:
        ``(results, seconds spent in the model)``.
    """
    todo = [i for i, r in enumerate(results) if r.batter is not None]
    if not todo:
        return results, 0.0
    t = clock.monotonic()
    refined = model.refine(
        [results[i].frame.image for i in todo],
        [results[i].persons.xyxy[results[i].batter][None] for i in todo],
    )
    dt = clock.monotonic() - t
    if refined is None:
        return results, dt
    out = list(results)
    for i, hm in zip(todo, refined, strict=True):
        result = results[i]
        if len(hm) != 1 or not np.all(np.isfinite(hm.keypoints_xy)):
            out[i] = replace(result, heatmap_source="rendered")
            continue
        b = result.batter
        persons = result.persons
        keypoints_xy = persons.keypoints_xy.copy()
        keypoints_conf = persons.keypoints_conf.copy()
        keypoints_xy[b] = hm.keypoints_xy[0]
        keypoints_conf[b] = hm.keypoints_conf[0]
        out[i] = replace(
            result,
            persons=replace(persons, keypoints_xy=keypoints_xy, keypoints_conf=keypoints_conf),
            heatmaps=np.ascontiguousarray(hm.heatmaps[0], np.float32),
            similarity=None if hm.similarity is None else hm.similarity[0],
            heatmap_source="model",
            inference_ms=result.inference_ms + dt * 1000.0 / len(todo),
        )
    return out, dt


def health_message(
    states: list[SourceState], engine_state: str, uptime_s: float, model: KeypointModel,
    now_s: float, rate_window_s: float,
) -> Health:
    """The engine-wide ``health/`` message (every source's :meth:`SourceState.health`)."""
    return Health(
        engine_state=engine_state,  # type: ignore[arg-type]
        uptime_s=round(uptime_s, 3),
        model=type(model).__name__,
        device=model.device,
        sources={s.source_id: s.health(now_s, rate_window_s) for s in states},
    )
