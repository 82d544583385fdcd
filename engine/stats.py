"""Run counters: per-source statistics and the run summary (read by ``health/``, the CLI and tests)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class SourceStats:
    """Counters of one source, read by the health publisher, the progress bar and the summary.

    Attributes:
        source_id: The source.
        total_frames: Frame count announced by the source (files), else ``None``.
        frames_out: Frames whose ``pose/`` was published.
        batter_frames: Of those, frames with a batter.
        shots: ``shot/`` messages published.
        ended: The source's ``eos/`` was published.
        error: Text of the error that ended the source, or ``None``.
    """

    source_id: str
    total_frames: int | None
    frames_out: int = 0
    batter_frames: int = 0
    shots: int = 0
    ended: bool = False
    error: str | None = None
    #: ``(monotonic s, frames_in, frames_out)`` samples taken by :meth:`rates`.
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


@dataclass(frozen=True)
class SourceSummary:
    """What one source did in a run.

    Attributes:
        frames: Frames published; batter_frames: of those with a batter; shots: shots published.
        dropped: Frames dropped (live drop-oldest); corrupt: undecodable frames or packets.
        error: Text of the error that ended the source, or ``None``.
        concealed: Frames decoded with concealed errors; truncated: the input ended early.
    """

    frames: int
    batter_frames: int
    shots: int
    dropped: int
    corrupt: int
    error: str | None
    concealed: int = 0
    truncated: bool = False


@dataclass
class RunSummary:
    """What a finished run did (printed by the CLI, asserted by tests).

    Attributes:
        frames: Frames published (all sources).
        wall_s: Seconds from the first model call to the last message.
        fps: ``frames / wall_s``: whole-pipeline throughput.
        model_s: Seconds spent inside the model's ``infer`` calls.
        model_fps: ``frames / model_s``: model-only throughput at the same image size.
        dropped, corrupt, concealed: Sums over sources.
        run_s: Seconds from ``start()`` to now (or to the end), frames or not.
        per_source: ``{source_id: SourceSummary}``.
    """

    frames: int = 0
    wall_s: float = 0.0
    fps: float = 0.0
    model_s: float = 0.0
    model_fps: float = 0.0
    dropped: int = 0
    corrupt: int = 0
    concealed: int = 0
    run_s: float = 0.0
    per_source: dict[str, SourceSummary] = field(default_factory=dict)
