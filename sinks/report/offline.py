"""``batsight report FILE.jsonl... --out DIR``: the report figures from ``jsonl`` sink files."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from engine.errors import SinkError
from engine.messages import from_json_dict
from sinks.figures import DEFAULT_DPI
from sinks.report.collector import DEFAULT_MIN_KEYPOINT_CONF, ReportCollector
from sinks.report.options import check_videos, make_out_dir, parse_assignments

_LOG = logging.getLogger(__name__)


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
    check_videos(video)
    out = Path(out_dir)
    make_out_dir(out)
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
                        message = from_json_dict(record)
                        if message.source_id and message.source_id in earlier:  # a source id of an earlier file
                            renamed[message.source_id] = f"{message.source_id}.{number}"
                            message = replace(message, source_id=renamed[message.source_id])
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
