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

Modules: this one holds :class:`ReportSink` (the entry point ``sinks.report:ReportSink`` names it
here: :mod:`sinks.base` matches a sink class to its entry point by module); :mod:`.collector` the
:class:`ReportCollector` and its rendering, :mod:`.storage` its bounded per-source storage,
:mod:`.video` the PyAV frame reader, :mod:`.options` the option checks, :mod:`.offline` the
``batsight report`` command (:func:`report_from_jsonl`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from engine.errors import SinkError
from engine.messages import AnyMessage
from sinks.base import Sink
from sinks.figures import DEFAULT_DPI
from sinks.report.collector import (
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_SHOTS,
    DEFAULT_MIN_KEYPOINT_CONF,
    PAIR_SIMILARITY_FILE,
    ReportCollector,
)
from sinks.report.offline import report_from_jsonl
from sinks.report.options import check_videos, make_out_dir, number_option, parse_assignments
from sinks.report.video import read_video_frames

__all__ = [
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_SHOTS",
    "DEFAULT_MIN_KEYPOINT_CONF",
    "PAIR_SIMILARITY_FILE",
    "ReportCollector",
    "ReportSink",
    "parse_assignments",
    "read_video_frames",
    "report_from_jsonl",
]

_LOG = logging.getLogger(__name__)


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
        self.dpi = number_option("dpi", dpi, int, 30, 600)
        self.min_keypoint_conf = number_option("min_keypoint_conf", min_keypoint_conf, float, 0.0, 1.0)
        self.max_frames = number_option("max_frames", max_frames, int, 2, None)
        self.max_shots = number_option("max_shots", max_shots, int, 1, None)
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

    def output_paths(self) -> list[Path]:
        """The figures folder."""
        return [self.out_dir]

    def open(self) -> None:
        """Create the output folder and check the video paths.

        Raises:
            SinkError: the folder cannot be created, or a video file does not exist.
        """
        check_videos(self.video)
        make_out_dir(self.out_dir)
        self._collector = ReportCollector(
            min_keypoint_conf=self.min_keypoint_conf, max_frames=self.max_frames, max_shots=self.max_shots
        )

    def write_batch(self, messages: list[AnyMessage]) -> None:
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
