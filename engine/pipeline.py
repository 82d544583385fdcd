"""The pipeline: reader threads -> batcher + inference thread -> analytics + publisher thread.

Every stage runs in its own thread and talks through bounded queues. A stage that fails puts a
failure marker downstream in ``finally`` and :meth:`Pipeline.join` re-raises it, so nothing hangs
and nothing dies silently (DESIGN §2). Only the publisher thread touches the ZeroMQ socket.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from engine.analytics import AnalyticsUpdate, SourceAnalytics
from engine.batching import Batcher, SourceReader
from engine.config import Config
from engine.models.base import KeypointModel
from engine.publisher import Publisher
from engine.scenecut import SceneCutDetector
from engine.shots import ShotAnalyzer, ShotClassifier, ShotResult, mirrored_name, shot_message
from engine.sources import Source
from engine.tracking import BatterSelector, PersonTracker
from engine.types import KEYPOINT_INDEX, EndOfStream, Frame, PoseResult

log = logging.getLogger(__name__)

_POLL_S = 0.1


@dataclass
class _Failure:
    """Marker a failed stage sends downstream."""

    stage: str
    error: BaseException


@dataclass
class SourceStats:
    """Counters of one source, read by the health publisher, the progress bar and the summary."""

    source_id: str
    total_frames: int | None
    frames_out: int = 0
    batter_frames: int = 0
    shots: int = 0
    ended: bool = False
    error: str | None = None
    #: ``(monotonic s, frames_in, frames_out)`` samples taken by :meth:`Pipeline.source_health`.
    _rate_samples: deque[tuple[float, int, int]] = field(default_factory=deque)

    def rates(self, now_s: float, frames_in: int, window_s: float) -> tuple[float, float]:
        """Record a sample and return ``(fps_in, fps_out)`` over about the last ``window_s`` seconds.

        The rate is taken against the newest sample at least ``window_s`` old (or the oldest one), so
        a call that comes soon after the previous one (the final ``health/`` at stop) does not divide
        a burst of frames by a tiny interval. Frames per second; ``0.0`` until a second sample.
        """
        samples = self._rate_samples
        samples.append((now_s, frames_in, self.frames_out))
        while len(samples) > 2 and samples[1][0] <= now_s - window_s:
            samples.popleft()
        t0, in0, out0 = samples[0]
        span_s = now_s - t0
        if span_s <= 0:
            return 0.0, 0.0
        return (frames_in - in0) / span_s, (self.frames_out - out0) / span_s


@dataclass
class RunSummary:
    """What a finished run did (printed by the CLI, asserted by tests).

    Attributes:
        frames: Frames published (all sources).
        wall_s: Seconds from the first model call to the last message.
        fps: ``frames / wall_s``: whole-pipeline throughput.
        model_s: Seconds spent inside the model's ``infer`` calls.
        model_fps: ``frames / model_s``: model-only throughput at the same image size.
        dropped, corrupt: Sums over sources.
        run_s: Seconds from ``start()`` to now (or to the end), frames or not.
        per_source: ``{source_id: {"frames", "batter_frames", "dropped", "corrupt", "error"}}``.
    """

    frames: int = 0
    wall_s: float = 0.0
    fps: float = 0.0
    model_s: float = 0.0
    model_fps: float = 0.0
    dropped: int = 0
    corrupt: int = 0
    run_s: float = 0.0
    per_source: dict[str, dict] = field(default_factory=dict)


def _f32(value: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(value, dtype=np.float32)


def pose_message(result: PoseResult) -> tuple[dict, dict[str, np.ndarray]]:
    """Fields and arrays of the ``pose/`` message for one frame (wire table in the README)."""
    frame, persons, b = result.frame, result.persons, result.batter
    fields = {
        "frame_width": frame.width,
        "frame_height": frame.height,
        "n_persons": len(persons),
        "batter_found": b is not None,
        "track_id": None if b is None else int(persons.track_id[b]),
        "heatmap_source": result.heatmap_source if b is not None else "none",
        "inference_ms": round(result.inference_ms, 3),
    }
    arrays = {"persons_xyxy": _f32(persons.xyxy), "persons_track_id": np.ascontiguousarray(persons.track_id)}
    if b is not None:
        arrays.update(
            xyxy=_f32(persons.xyxy[b]),
            keypoints_xy=_f32(persons.keypoints_xy[b]),
            keypoints_conf=_f32(persons.keypoints_conf[b]),
        )
    return fields, arrays


def sim_message(update: AnalyticsUpdate, window_s: float, heatmap_source: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Fields and arrays of the ``sim/`` message (thesis 6.1 Keypoint Dependency Matrix)."""
    fields = {
        "window_s": window_s,
        "window_frames": update.window_frames,
        "pairs": {k: float(v) for k, v in update.pairs.items()},
        "heatmap_source": heatmap_source,
    }
    arrays = {
        "cosine_similarity": _f32(update.similarity),
        "window_mean": _f32(update.window_mean),
        "cumulative_mean": _f32(update.cumulative_mean),
    }
    return fields, arrays


def fit_message(update: AnalyticsUpdate, window_s: float, wrist: str, shoulder: str) -> tuple[dict, dict] | None:
    """Fields and arrays of the ``fit/`` message (thesis 6.2), or ``None`` when there is no fit."""
    fit = update.fit
    if fit is None:
        return None
    fields = {
        "window_s": window_s,
        "wrist": wrist,
        "shoulder": shoulder,
        "basis": "legendre",
        "dx": update.dx,
        "dy": update.dy,
        "n_points": fit.n_points,
        "t_start_s": fit.t_start_s,
        "t_end_s": fit.t_end_s,
        "degree_xy": fit.degree_xy,
        "rms_dx": fit.rms_dx,
        "rms_dy": fit.rms_dy,
        "rms_r": fit.rms_r,
        "horizontal_span": fit.horizontal_span,
        "vertical_span": fit.vertical_span,
        "mean_elevation_deg": fit.mean_elevation_deg,
        "peak_r": fit.peak_r,
        "peak_r_time_s": fit.peak_r_time_s,
        "r_vertex_time_s": fit.r_vertex_time_s,
    }
    arrays = {
        "dx_coef": np.ascontiguousarray(fit.dx_coef, np.float64),
        "dy_coef": np.ascontiguousarray(fit.dy_coef, np.float64),
        "r_coef": np.ascontiguousarray(fit.r_coef, np.float64),
    }
    return fields, arrays


class Pipeline:
    """Runs sources through the model and analytics and publishes every result.

    Lifecycle: construct (stores collaborators), ``start()`` (opens the publisher, waits for
    ``expected_subscribers`` in-process sinks to subscribe, starts all threads), then ``join()``
    (blocks until every source has ended and its ``eos/`` is published, re-raising the first stage
    failure), or ``stop()`` from any thread to end early: sources stop, frames already queued are
    finished, ``eos/`` still goes out per source.

    Args:
        config: Validated configuration.
        sources: Unopened sources (their reader threads open them).
        model: Keypoint model, already built (``model.build()``).
        publisher: Unopened publisher; built from ``config.publisher`` when ``None``.
        now_ns: Clock for ``publish_time_ns`` and health, injectable for tests.
    """

    def __init__(
        self,
        config: Config,
        sources: list[Source],
        model: KeypointModel,
        publisher: Publisher | None = None,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.sources = sources
        self.model = model
        self.publisher = publisher or Publisher(config.publisher)
        self.now_ns = now_ns
        self._notify = threading.Event()
        self.readers = [
            SourceReader(
                s,
                config.source.live_queue_size if s.live else config.source.file_queue_size,
                self._notify,
            )
            for s in sources
        ]
        self.stats = {s.source_id: SourceStats(s.source_id, s.total_frames) for s in sources}
        self._results: queue.Queue[PoseResult | EndOfStream | _Failure] = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self._classifier: ShotClassifier | None = None
        # cells of the 17x17 matrix a shot's pair similarity comes from: the configured front arm and
        # its mirror (a left-hander's front arm), fixed by the config
        wrist, shoulder = config.analytics.wrist, config.analytics.shoulder
        self._shot_pair_cells = (
            (KEYPOINT_INDEX[wrist], KEYPOINT_INDEX[shoulder]),
            (KEYPOINT_INDEX[mirrored_name(wrist)], KEYPOINT_INDEX[mirrored_name(shoulder)]),
        )
        self._failure: _Failure | None = None
        self._threads: list[threading.Thread] = []
        self.model_s = 0.0
        self._t0: float | None = None
        self._t_end: float | None = None
        self._start_ns = 0
        self._end_ns = 0

    # ----------------------------------------------------------------------------------- lifecycle
    def start(self, expected_subscribers: int = 0) -> None:
        """Open the publisher (unless already open), wait for subscribers, start every thread.

        ``expected_subscribers`` in-process sinks (their marker subscriptions) and
        ``config.publisher.min_subscribers`` external subscriptions are awaited for at most
        ``config.publisher.wait_subscribers_s``, so they see the run from its first message.

        Raises:
            PublishError: before any source is opened, so nothing is half-started.
        """
        if self.config.shots.enabled and self._classifier is None:
            self._classifier = ShotClassifier.load(self.config.shots.classifier or None)
        if not self.publisher.is_open:  # the CLI opens it early to fail fast on a taken port
            self.publisher.open()
        pub = self.config.publisher
        if expected_subscribers or pub.min_subscribers:
            ready, others = self.publisher.wait_for_subscribers(
                pub.min_subscribers, pub.wait_subscribers_s, ready_topics=expected_subscribers
            )
            if ready < expected_subscribers or others < pub.min_subscribers:
                log.warning(
                    "starting after %.1f s with %d of %d in-process sinks and %d of %d external subscriptions",
                    pub.wait_subscribers_s, ready, expected_subscribers, others, pub.min_subscribers,
                )
        self._start_ns = self.now_ns()
        for reader in self.readers:
            reader.start()
        self._threads = [
            threading.Thread(target=self._inference_loop, name="inference", daemon=True),
            threading.Thread(target=self._publish_loop, name="publisher", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """End early: stop the sources; queued frames still finish and ``eos/`` goes out.

        A source that has not ended ``config.source.read_timeout_s + 2`` seconds later (stuck in
        I/O) gets its ``eos/`` anyway, with ``reason: "timeout"``, so shutdown time is bounded.
        """
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.config.source.read_timeout_s + 2.0
        for reader in self.readers:
            reader.stop()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the run to finish; True when finished. Re-raises the first stage failure."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for t in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            t.join(remaining)
            if t.is_alive():
                return False
        for reader in self.readers:
            reader.abandon()  # nobody reads the queues any more
            reader.join(0.2)  # ended already, or stuck in I/O (a daemon thread, abandoned)
        self.publisher.close()
        if self._failure is not None:
            raise self._failure.error
        return True

    # ----------------------------------------------------------------------------------- stages
    def _inference_loop(self) -> None:
        batcher = Batcher(self.readers, self.config.batch.max_batch, self.config.batch.max_wait_ms, self._notify)
        trackers = {s.source_id: PersonTracker() for s in self.sources}
        selectors = {s.source_id: BatterSelector(self.config.batter) for s in self.sources}
        cut_threshold = self.config.batter.scene_cut_threshold
        cut_detectors = {s.source_id: SceneCutDetector(cut_threshold) for s in self.sources} if cut_threshold else {}
        open_sources = {s.source_id for s in self.sources}
        try:
            while open_sources and not self._stop.is_set():
                batch = batcher.next_batch(_POLL_S)
                frames = [item for item in batch if isinstance(item, Frame)]
                persons_list = []
                per_frame_ms = 0.0
                if frames:
                    t = time.perf_counter()
                    if self._t0 is None:
                        self._t0 = t
                    persons_list = self.model.infer([f.image for f in frames])
                    dt = time.perf_counter() - t
                    self.model_s += dt
                    per_frame_ms = dt * 1000.0 / len(frames)
                results: list[PoseResult | EndOfStream] = []
                persons_iter = iter(persons_list)
                for item in batch:
                    if isinstance(item, EndOfStream):
                        open_sources.discard(item.source_id)
                        results.append(item)
                        continue
                    persons = next(persons_iter)
                    tracker = trackers[item.source_id]
                    cut_detector = cut_detectors.get(item.source_id)
                    if item.timeline_break and cut_detector is not None:
                        cut_detector.reset()
                    scene_cut = cut_detector is not None and cut_detector.update(item.image)
                    if item.timeline_break or scene_cut:  # the media jumped or the camera cut: old
                        tracker.reset()  # tracks and scores no longer apply
                        selectors[item.source_id].reset()
                    persons = tracker.update(persons)
                    batter = selectors[item.source_id].update(persons, item.width, item.height)
                    results.append(
                        PoseResult(
                            frame=item,
                            persons=persons,
                            batter=batter,
                            heatmap_source=self.model.heatmap_source if batter is not None else "none",
                            inference_ms=per_frame_ms,
                            scene_cut=scene_cut,
                        )
                    )
                if hasattr(self.model, "refine"):
                    results = self._refine_batters(results)
                for result in results:
                    self._put_result(result)
        except BaseException as exc:  # noqa: BLE001 - forwarded to join()
            log.exception("inference stage failed")
            self.stop()
            self._put_result(_Failure("inference", exc))

    def _refine_batters(self, results: list[PoseResult | EndOfStream]) -> list[PoseResult | EndOfStream]:
        """Run the model's keypoint refinement (Keypoint R-CNN) on every batter box of the batch.

        The batter's keypoints are replaced and its heatmap logits attached (``"model"``); where
        the refinement finds nothing (``full`` mode, NaN keypoints) the detector's keypoints stay
        and analytics render heatmaps (``"rendered"``).
        """
        todo = [i for i, r in enumerate(results) if isinstance(r, PoseResult) and r.batter is not None]
        if not todo:
            return results
        t = time.perf_counter()
        refined = self.model.refine(
            [results[i].frame.image for i in todo],
            [results[i].persons.xyxy[results[i].batter][None] for i in todo],
        )
        dt = time.perf_counter() - t
        self.model_s += dt
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
        return out

    def _put_result(self, item: PoseResult | EndOfStream | _Failure) -> None:
        """Queue for the publisher thread; gives up only when that thread is gone (never hangs)."""
        while True:
            try:
                self._results.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if not self._threads[1].is_alive():
                    return

    def _publish_loop(self) -> None:
        cfg = self.config
        analytics = {
            s.source_id: SourceAnalytics(cfg.analytics, cfg.batter.min_keypoint_conf) for s in self.sources
        }
        shots = (
            {
                s.source_id: ShotAnalyzer(
                    cfg.shots, cfg.analytics, cfg.batter.min_keypoint_conf, classifier=self._classifier
                )
                for s in self.sources
            }
            if cfg.shots.enabled
            else {}
        )
        open_sources = {s.source_id for s in self.sources}
        next_health = time.monotonic()
        try:
            while open_sources:
                if time.monotonic() >= next_health:
                    self._publish_health("running")
                    next_health = time.monotonic() + cfg.publisher.health_period_s
                try:
                    item = self._results.get(timeout=_POLL_S)
                except queue.Empty:
                    if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                        for source_id in sorted(open_sources):
                            log.warning("source %s did not stop in time; ending it", source_id)
                            self._publish_eos(EndOfStream(source_id), reason="timeout")
                        open_sources.clear()
                    continue
                if isinstance(item, _Failure):
                    self._failure = self._failure or item
                    for source_id in sorted(open_sources):
                        self._publish_eos(EndOfStream(source_id, error=item.error), reason="error")
                    open_sources.clear()
                    break
                if isinstance(item, EndOfStream):
                    if item.source_id in shots:
                        self._publish_shot(item.source_id, shots[item.source_id].flush())
                    self._publish_eos(item, reason="error" if item.error else "stopped" if item.stopped else "end")
                    open_sources.discard(item.source_id)
                    continue
                self._publish_result(item, analytics[item.frame.source_id], shots.get(item.frame.source_id))
        except BaseException as exc:  # noqa: BLE001 - forwarded to join()
            log.exception("publisher stage failed")
            self._failure = self._failure or _Failure("publisher", exc)
            self.stop()
        finally:
            self._t_end = time.perf_counter()
            self._end_ns = self.now_ns()
            self._stop.set()  # the inference thread ends with this thread
            try:
                self._publish_health("stopped")
            except Exception:  # noqa: BLE001 - best effort on the way out
                log.exception("final health message failed")

    def _publish_result(
        self, result: PoseResult, analytics: SourceAnalytics, shots: ShotAnalyzer | None = None
    ) -> None:
        frame = result.frame
        common = {
            "frame_index": frame.frame_index,
            "pts_s": frame.pts_s,
            "capture_time_ns": frame.capture_time_ns,
        }
        fields, arrays = pose_message(result)
        fields["raw_pts_s"] = frame.raw_pts_s
        fields["timeline_break"] = frame.timeline_break
        fields["scene_cut"] = result.scene_cut
        self.publisher.publish("pose", frame.source_id, {**common, **fields}, arrays)
        if frame.timeline_break or result.scene_cut:  # rolling windows restart where the timeline broke
            # or the camera cut to another view
            analytics.reset_window()
            if shots is not None:  # a shot cannot span the break: end it here
                self._publish_shot(frame.source_id, shots.flush())
                shots.reset()
        stats = self.stats[frame.source_id]
        stats.frames_out += 1
        update = None
        if result.batter is not None:
            stats.batter_frames += 1
            update = analytics.update(result)
        if update is not None:
            acfg = self.config.analytics
            fields, arrays = sim_message(update, acfg.window_s, result.heatmap_source)
            self.publisher.publish("sim", frame.source_id, {**common, **fields}, arrays)
            fit = fit_message(update, acfg.window_s, acfg.wrist, acfg.shoulder)
            if fit is not None:
                self.publisher.publish("fit", frame.source_id, {**common, **fit[0]}, fit[1])
        if shots is not None:
            b = result.batter
            sim = None if update is None else update.similarity
            front, other = self._shot_pair_cells
            shot = shots.update(
                frame.pts_s,
                frame.frame_index,
                None if b is None else result.persons.keypoints_xy[b],
                None if b is None else result.persons.keypoints_conf[b],
                frame.width,
                frame.height,
                None if sim is None else float(sim[front]),
                None if sim is None else float(sim[other]),
            )
            self._publish_shot(frame.source_id, shot)

    def _publish_shot(self, source_id: str, shot: ShotResult | None) -> None:
        """Publish a finished shot (``shot/``); ``frame_index`` / ``pts_s`` are the shot's last frame."""
        if shot is None:
            return
        fields, arrays = shot_message(shot)
        fields.update(frame_index=fields["end_frame"], pts_s=fields["end_s"], capture_time_ns=None)
        self.publisher.publish("shot", source_id, fields, arrays)
        self.stats[source_id].shots += 1

    def _publish_eos(self, eos: EndOfStream, reason: str) -> None:
        stats = self.stats[eos.source_id]
        stats.ended = True
        stats.error = None if eos.error is None else str(eos.error)
        reader = next(r for r in self.readers if r.source_id == eos.source_id)
        fields = {
            "frame_index": None,
            "pts_s": None,
            "capture_time_ns": None,
            "frames": stats.frames_out,
            "dropped": reader.dropped,
            "corrupt": reader.source.corrupt,
            "error": stats.error,
            "reason": reason,
        }
        self.publisher.publish("eos", eos.source_id, fields)

    def source_health(self) -> dict[str, dict]:
        """Per-source health fields (also used by the CLI's status)."""
        now = time.monotonic()
        out = {}
        for reader in self.readers:
            st = self.stats[reader.source_id]
            fps_in, fps_out = st.rates(now, reader.frames_in, max(1.0, self.config.publisher.health_period_s))
            source = reader.source
            if st.ended:
                state = "failed" if st.error else "ended"
            else:  # the source knows best (stalled, reconnecting); else the reader's view
                state = getattr(source, "state", None) or reader.state
            out[reader.source_id] = {
                "state": state,
                "reconnects": int(getattr(source, "reconnects", 0)),
                "frames_in": reader.frames_in,
                "frames_out": st.frames_out,
                "dropped": reader.dropped,
                "corrupt": reader.source.corrupt,
                "queue_depth": reader.queue.qsize(),
                "fps_in": round(fps_in, 2),
                "fps_out": round(fps_out, 2),
                "batter_frames": st.batter_frames,
            }
        return out

    def _publish_health(self, engine_state: str) -> None:
        fields = {
            "frame_index": None,
            "pts_s": None,
            "capture_time_ns": None,
            "engine_state": engine_state,
            "uptime_s": round((self.now_ns() - self._start_ns) / 1e9, 3),
            "model": type(self.model).__name__,
            "device": self.model.device,
            "sources": self.source_health(),
        }
        self.publisher.publish("health", "", fields)

    # ----------------------------------------------------------------------------------- results
    def summary(self) -> RunSummary:
        """Counters of the run so far (complete after ``join()``)."""
        frames = sum(s.frames_out for s in self.stats.values())
        wall = (self._t_end or time.perf_counter()) - self._t0 if self._t0 is not None else 0.0
        per_source = {}
        for reader in self.readers:
            st = self.stats[reader.source_id]
            per_source[reader.source_id] = {
                "frames": st.frames_out,
                "batter_frames": st.batter_frames,
                "shots": st.shots,
                "dropped": reader.dropped,
                "corrupt": reader.source.corrupt,
                "error": st.error,
            }
        return RunSummary(
            frames=frames,
            wall_s=wall,
            fps=frames / wall if wall > 0 else 0.0,
            model_s=self.model_s,
            model_fps=frames / self.model_s if self.model_s > 0 else 0.0,
            dropped=sum(r.dropped for r in self.readers),
            corrupt=sum(r.source.corrupt for r in self.readers),
            run_s=((self._end_ns or self.now_ns()) - self._start_ns) / 1e9 if self._start_ns else 0.0,
            per_source=per_source,
        )
