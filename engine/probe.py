"""``batsight probe SOURCE...``: what batsight will do with each source, without running the model.

Each spec becomes its source plugin exactly as in ``batsight run`` (:func:`~engine.sources.build_sources`:
same ``ID=SPEC`` rules, same ids); the plugin's :meth:`~engine.sources.Source.probe` looks at the
input (the PyAV sources open it and decode at most a few packets) and the answers are printed as
text or, with ``--json``, as one JSON array. A source that cannot be opened gets its one-line error
and does not stop the others. Pattern: DESIGN §7, ffprobe's ``-show_streams`` / ``-of json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from engine.config import load_config
from engine.errors import SourceError, safe_text
from engine.sources import build_sources

__all__ = ["add_probe_parser", "format_report", "probe_sources"]


def probe_sources(
    specs: list[str], config_path: str | None = None, overrides: list[str] | None = None
) -> list[dict[str, Any]]:
    """Probe every spec; one JSON-ready ``dict`` per source, in order.

    Each has ``source_id``, ``spec`` (UTF-8 safe; a URL's credentials masked), ``plugin`` (class
    name), what the plugin's ``probe()`` returns (:func:`stream.probe.probe_container` for PyAV
    sources), ``warnings`` (a list) and ``error`` (text, or ``None``).

    Raises:
        ConfigError: a bad config, ``--set`` or spec (as ``batsight run``).
        PluginError: a source plugin cannot be loaded.
    """
    config = load_config(config_path, list(overrides or []))
    reports = []
    for source in build_sources(list(specs) or list(config.sources), config.source):
        label = safe_text(str(getattr(source, "label", None) or getattr(source, "spec", None) or source.source_id))
        report: dict[str, Any] = {"source_id": source.source_id, "spec": label, "plugin": type(source).__name__}
        try:
            report.update(source.probe())
        except SourceError as exc:
            report.update(mode="live" if source.live else "file", error=safe_text(str(exc)))
        finally:
            source.close()
        warnings = list(report.get("warnings", []))
        raw = str(getattr(source, "spec", ""))
        if raw != safe_text(raw):
            warnings.append("the name is not valid UTF-8: shown with \\x escapes in messages")
        report["warnings"] = warnings
        report.setdefault("error", None)
        reports.append(report)
    return reports


def _size(report: dict[str, Any]) -> str:
    coded = f"{report['coded_width']}x{report['coded_height']}"
    if report.get("rotation_deg") is None:  # no frame decoded (refused): the display matrix was not read
        return f"{coded}, rotation not read (no frame decoded)"
    if not report.get("transform"):
        return f"{coded}, no rotation"
    turned = f"rotation {report['rotation_deg']:g} ({report['transform']})"
    return f"coded {coded}, {turned} -> {report['width']}x{report['height']}"


def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines of one :func:`probe_sources` entry."""
    lines = [f"{report['source_id']}: {report['spec']} ({report['plugin']}, {report['mode']} mode)"]
    if "container" in report:
        streams = ", ".join(
            f"#{s['index']} {s['type']} {s['codec']}" + (f" {s['width']}x{s['height']}" if s["type"] == "video" else "")
            for s in report["streams"]
        )
        duration = f"{report['duration_s']:.3f} s" if report["duration_s"] is not None else "unknown"
        frames = report["frames"] if report["frames"] is not None else "unknown"
        fps = f"{report['fps']:.4g} fps ({report['rate_field']})" if report["fps"] else "unknown"
        lines += [
            f"  container: {report['container']} ({report['format_long_name']}); streams: {streams}",
            f"  video: stream #{report['video_stream']} ({report['choice']}), {report['codec']}, {_size(report)}",
            f"  rate: {fps}; timestamps: {'yes' if report['timestamps'] else 'no'}; "
            f"duration: {duration}; frames: {frames}",
        ]
    else:
        lines += [f"  {key}: {value}" for key, value in report.items()
                  if key not in ("source_id", "spec", "plugin", "mode", "warnings", "error")]
    lines += [f"  warning: {w}" for w in report["warnings"]]
    if report["error"]:
        lines.append(f"  error: {report['error']}")
    return "\n".join(lines)


def _cmd_probe(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``batsight probe``: print the reports; 1 when a source would fail, else 0."""
    out = out or sys.stdout
    reports = probe_sources(list(args.sources), args.config, list(args.set or []))
    if args.json:
        out.write(json.dumps(reports, indent=2) + "\n")
    else:
        out.write("\n".join(format_report(r) for r in reports) + "\n")
    for report in reports:
        if report["error"]:
            sys.stderr.write(f"batsight: error: source {report['source_id']}: {report['error']}\n")
    return 1 if any(r["error"] for r in reports) else 0


def add_probe_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``probe`` subcommand to the ``batsight`` parser's subparsers ``sub``."""
    probe = sub.add_parser(
        "probe", parents=[common], help="what batsight will do with each source (container, stream, rate, rotation)"
    )
    probe.add_argument("sources", nargs="*", metavar="SOURCE", help="file, rtsp://..., /dev/videoN, ID=SPEC")
    probe.add_argument("--config", "-c", help="YAML config file (see configs/default.yaml)")
    probe.add_argument("--set", "-s", action="append", metavar="KEY=VALUE", help="override a config key")
    probe.add_argument("--json", action="store_true", help="print one JSON array instead of text")
    probe.set_defaults(func=_cmd_probe)
