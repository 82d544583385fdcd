"""The ``batsight`` command line.

``batsight run [SOURCE ...] [--config FILE] [--set key=value ...] [--sink NAME[:ARG] ...]``
runs the pipeline (no SOURCE and no ``sources`` in the config: the built-in default input).
``batsight sink NAME --connect ENDPOINT [--path P] [-o key=value ...]`` runs one sink as its own
process. ``batsight report FILE.jsonl ... --out DIR`` draws the thesis figures from earlier runs.
``batsight bench [SOURCE] [--json]`` measures Ultralytics' loop, the model and the pipeline
(:mod:`engine.tools.bench`).
``batsight classify PATH... [--layout mediapipe33|coco17] [--aspect W:H]`` classifies keypoint
sequences (``.npy``) with the ``shot/`` topic's model, one JSON object per line
(:mod:`engine.shots.classify`).
``batsight probe SOURCE... [--json]`` says what batsight will do with each source without running
the model (:mod:`engine.probe`).
``batsight cluster [SOURCE ...] [--config FILE] ...`` runs the same config on a Ray cluster, the
sources split over worker actors behind one publisher endpoint (:mod:`engine.cluster`).
Errors are one line on stderr (``--debug`` shows the traceback); exit status 0 success,
1 runtime failure, 2 bad usage / config, 130 interrupted (a second SIGINT / SIGTERM, or the first
one while the model is still loading).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from engine.config import Config, load_config
from engine.errors import BatsightError, ConfigError, PluginError
from engine.plugins import SINKS, OfflineReport, SinkPlugin, load
from engine.stats import SourceSummary

log = logging.getLogger("batsight")


def _sink_from_spec(spec: str) -> SinkPlugin:
    """Create a sink plugin from ``NAME[:ARG]`` via the plugin's own ``from_spec``.

    Raises:
        PluginError: unknown sink name (lists the available ones), or no sink class.
        SinkError: bad options.
    """
    return _sink_class(spec.partition(":")[0].strip()).from_spec(spec)


def _sink_class(name: str) -> type[SinkPlugin]:
    """The sink class registered as ``name`` in ``batsight.sinks``, checked against :class:`SinkPlugin`."""
    return load(SINKS, name, SinkPlugin)


def _positive_int(text: str) -> int:
    """An integer >= 1, for argparse (which turns the error into a usage error, exit 2)."""
    value = int(text)
    if value < 1:
        msg = f"must be >= 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            msg = f"-o expects key=value, got {pair!r}"
            raise ConfigError(msg)
        options[key] = yaml.safe_load(value)
    return options


def _install_signal_handlers(stop: dict[str, Any]) -> None:
    """Install SIGINT / SIGTERM handlers: the first signal stops gracefully, the second exits at once.

    The first calls ``stop["fn"]``, or interrupts start-up while it is still ``None``; the second
    exits with status 130.
    """
    state = {"count": 0}

    def handler(signum: int, _frame: Any) -> None:
        state["count"] += 1
        if state["count"] == 1:
            if stop["fn"] is None:
                raise KeyboardInterrupt
            log.warning("%s received: finishing in-flight frames (again to exit at once)", signal.Signals(signum).name)
            stop["fn"]()
        else:
            sys.stderr.write("batsight: interrupted\n")
            sys.stderr.flush()
            import os

            os._exit(130)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _progress_bar(pipeline: Any) -> Any:
    """A tqdm bar over the frames of the file sources, once every file source has opened.

    Returns ``None`` while a file source is still opening (its frame count is not known yet), or
    when there is no file source. A file without a frame count gives a bar with a
    running count and rate but no total.
    """
    files = [r for r in pipeline.readers if not r.source.live]
    if not files or any(r.state == "connecting" for r in files):
        return None
    totals = [r.source.total_frames for r in files]
    return progress_bar(None if any(t is None for t in totals) else sum(totals))


def progress_bar(total: int | None) -> Any:
    """A tqdm bar of ``total`` frames (``None``: a running count and rate), for ``batsight run`` and ``cluster``."""
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="batsight", dynamic_ncols=True, leave=True)


def source_summary_line(source_id: str, st: SourceSummary, where: str = "") -> str:
    """One source's line of the end summary (``batsight run`` and ``batsight cluster``).

    ``"  cam1: 120 frames, batter found 75.0%, shots 2, dropped 0, corrupt 1"``, then ``concealed N``,
    ``truncated``, ``where`` (``cluster``: ``"on worker0"``) and ``error: ...`` when they apply.
    """
    pct = f"{100.0 * st.batter_frames / st.frames:.1f}%" if st.frames else "-"
    line = (
        f"  {source_id}: {st.frames} frames, batter found {pct}, shots {st.shots}, "
        f"dropped {st.dropped}, corrupt {st.corrupt}"
    )
    line += f", concealed {st.concealed}" if st.concealed else ""
    line += ", truncated" if st.truncated else ""
    line += f", {where}" if where else ""
    return line + (f", error: {st.error}" if st.error else "")


def _print_summary(summary: Any, out: Any = None) -> None:
    out = out or sys.stdout
    if summary.frames:
        head = (
            f"batsight: {summary.frames} frames in {summary.wall_s:.2f} s -> {summary.fps:.2f} fps "
            f"(model only {summary.model_fps:.2f} fps)"
        )
    else:
        head = f"batsight: no frames in {summary.run_s:.1f} s of running"
    concealed = f", concealed {summary.concealed}" if summary.concealed else ""
    lines = [f"{head}, dropped {summary.dropped}, corrupt {summary.corrupt}{concealed}"]
    lines += [source_summary_line(source_id, st) for source_id, st in summary.per_source.items()]
    out.write("\n".join(lines) + "\n")
    out.flush()


def join_sink_threads(threads: list[Any], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` seconds in all for in-process sink threads to finish; stop the rest.

    ``threads``: the handles of ``Sink.run_in_thread``. A thread still alive at the deadline is
    stopped and given 2 s more; whether it finished is then ``t.is_alive()`` (the caller counts it).
    """
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
        if t.is_alive():
            t.stop()
            t.join(2.0)


def run_pipeline(
    config: Config,
    sinks: list[tuple[str, SinkPlugin]],
    progress: bool = False,
    install_signals: bool = False,
) -> tuple[Any, list[str]]:
    """Build sources and model, start in-process sinks and the pipeline, wait for the end.

    ``sinks`` holds ``(name, sink)`` pairs; the name selects the sink's error policy. The sinks open
    before the model loads, so a sink that cannot open (a missing folder) fails at once.

    Returns:
        The pipeline's ``RunSummary`` and one ``"NAME: error"`` line per in-process sink that failed
        while the run went on (what was published and written before stays valid), or that did not
        write every message meant for it (``SinkRunner.shortfall``: dropped, skipped, abandoned).

    Raises:
        BatsightError: bad source spec, missing weights, publisher bind failure, a sink that cannot
            open, or a failed stage.
    """
    from engine.models.base import load_model_class
    from engine.pipeline import Pipeline
    from engine.sources import build_sources

    stop: dict[str, Any] = {"fn": None}
    if install_signals:
        _install_signal_handlers(stop)
    sources = build_sources(list(config.sources), config.source)
    model = load_model_class(config.model.name).from_config(config.model)
    pipeline = Pipeline(config, sources, model)
    pipeline.publisher.open()  # a taken port or a bad certificate fails now, not after the model loads
    source_ids = {s.source_id for s in sources}
    threads: list[Any] = []
    try:
        for name, sink in sinks:  # each returns once its sink opened, or raises: refused before any frame
            threads.append(
                sink.run_in_thread(
                    pipeline.publisher.endpoint,  # the bound one: `tcp://127.0.0.1:*` gets its port
                    expected_sources=source_ids,
                    curve=pipeline.publisher.client_curve(),
                    on_error=config.sink_error_policies.get(name, config.sink_error_policy),
                    on_fail=pipeline.stop,
                )
            )
        model.build()
        pipeline.start(
            expected_subscribers=len(threads), sink_subscriptions=sum(t.runner.subscriptions for t in threads)
        )
    except BaseException:
        for t in threads:
            t.stop()
        pipeline.publisher.close()
        raise
    stop["fn"] = pipeline.stop
    bar = None
    try:
        with logging_redirect_tqdm():  # warnings go above the bar, not into it
            while not pipeline.join(timeout_s=0.2):
                if bar is None and progress:
                    bar = _progress_bar(pipeline)
                if bar is not None:
                    bar.update(sum(st.frames_out for st in pipeline.stats.values()) - bar.n)
    finally:
        if bar is not None:
            bar.update(sum(st.frames_out for st in pipeline.stats.values()) - bar.n)
            bar.close()
        join_sink_threads(threads, config.sink_close_timeout_s)
    for t in threads:
        if t.runner.errors:
            log.warning("%s skipped %d batches that raised (sink_error_policy skip)", t.name, t.runner.errors)
    sink_errors = [f"{name}: {t.error}" for (name, _), t in zip(sinks, threads, strict=True) if t.error is not None]
    for (name, _), t in zip(sinks, threads, strict=True):  # nothing lost silently (issue 12)
        abandoned = config.sink_close_timeout_s if t.is_alive() else None
        shortfall = t.runner.shortfall(pipeline.publisher.published, abandoned) if t.error is None else None
        if shortfall is not None:
            sink_errors.append(f"{name}: {shortfall}")
    return pipeline.summary(), sink_errors


def _check_sink_outputs(specs: list[str], sinks: list[SinkPlugin]) -> None:
    """Refuse two sinks (of any kinds) that would write the same file or folder.

    Paths come from each sink's ``output_paths()`` (``sinks.base.Sink``; a plugin without it writes
    nothing checkable) and are compared resolved, so ``a.csv`` and ``./a.csv`` are one file.

    Raises:
        ConfigError: two outputs resolve to the same path (names both sink specs).
    """
    owners: dict[Path, str] = {}
    for spec, sink in zip(specs, sinks, strict=True):
        paths: list[str | Path] = getattr(sink, "output_paths", list)()
        for path in dict.fromkeys(Path(p).expanduser().resolve() for p in paths):
            if path in owners:
                msg = f"sinks {owners[path]!r} and {spec!r} would both write {str(path)!r}"
                raise ConfigError(msg)
            owners[path] = spec


def _cmd_run(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    config = load_config(args.config, overrides)
    if args.sources:
        config = config.model_copy(update={"sources": list(args.sources)})
    sink_specs = list(args.sink) if args.sink else list(config.sinks)
    sinks = [(spec.partition(":")[0].strip(), _sink_from_spec(spec)) for spec in sink_specs]  # refused before start
    seen: dict[tuple[str, str], str] = {}
    for spec, (name, sink) in zip(sink_specs, sinks, strict=True):
        options = getattr(sink, "user_option_values", {})
        key = (name, repr(sorted(options.items())))
        if not getattr(sink, "output_paths", list)() and str(options.get("port")) == "0":
            continue  # e.g. two `web:0`: each gets its own free port, nothing is written twice
        if key in seen:  # `jsonl:a.jsonl` and `jsonl:path=a.jsonl` are the same sink
            msg = f"sink {spec!r} is given twice (also as {seen[key]!r}): two sinks would write the same output"
            raise ConfigError(msg)
        seen[key] = spec
    _check_sink_outputs(sink_specs, [sink for _, sink in sinks])
    for spec, (_, sink) in zip(sink_specs, sinks, strict=True):
        if getattr(sink, "needs_frames", False) and config.publisher.frames == "off":
            log.warning("sink %r draws on the video, but publisher.frames is off: it gets no frames", spec)
    summary, sink_errors = run_pipeline(
        config, sinks, progress=config.progress and not args.no_progress, install_signals=True
    )
    # With a sink writing to stdout (`jsonl:-`, `jsonl:path=-`), stdout carries data: the summary goes to stderr.
    writes_stdout = any(getattr(sink, "writes_stdout", False) for _, sink in sinks)
    _print_summary(summary, sys.stderr if writes_stdout else sys.stdout)
    failed = {sid: st.error for sid, st in summary.per_source.items() if st.error}
    for source_id, error in failed.items():
        sys.stderr.write(f"batsight: error: source {source_id}: {error}\n")
    for error in sink_errors:
        sys.stderr.write(f"batsight: error: sink {error}\n")
    return 1 if failed or sink_errors else 0


def _cmd_sink(args: argparse.Namespace) -> int:
    options = _parse_options(args.option or [])
    cls = _sink_class(args.name)
    if args.path is not None:
        primary = getattr(cls, "primary_option", None)
        if primary is None:
            msg = f"sink {args.name!r} takes no --path"
            raise ConfigError(msg)
        options[primary] = args.path
    sink = cls.from_options(options, name=args.name)
    topics = tuple(args.topic) if args.topic else ("",)
    curve = None
    if args.curve_server_key is not None:
        from engine.security import ClientCurve

        curve = ClientCurve.from_files(args.curve_server_key, args.curve_key)
    elif args.curve_key is not None:
        msg = "--curve-key needs --curve-server-key (the publisher's public certificate)"
        raise ConfigError(msg)
    return sink.run_forever(args.connect, topics=topics, exit_on_stop=not args.keep_running, curve=curve)


def _cmd_report(args: argparse.Namespace) -> int:
    # The report sink's offline entry point, found through the plugin (the engine never imports sinks).
    report_cls = load(SINKS, "report", OfflineReport)
    paths = report_cls.report_files(args.files, args.out, video=args.video, labels=args.label, dpi=args.dpi)
    for path in paths:
        sys.stdout.write(f"{path}\n")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from engine.tools.bench import main_bench

    config = load_config(args.config, list(args.set or []))
    return main_bench(config, args.source, args.frames, args.json, latency=not args.no_latency)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batsight")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the README's usage text)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="tracebacks and debug logs")
    parser = argparse.ArgumentParser(
        prog="batsight", description="batsight: real-time pose analysis of cricket batting", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="run the pipeline on sources (default: the built-in demo input)")
    run.add_argument("sources", nargs="*", metavar="SOURCE", help="file, rtsp://..., /dev/videoN, ID=SPEC, default")
    run.add_argument("--config", "-c", help="YAML config file (see configs/default.yaml)")
    run.add_argument("--set", "-s", action="append", metavar="KEY=VALUE", help="override a config key")
    run.add_argument("--sink", action="append", metavar="NAME[:ARG]", help="in-process sink, e.g. jsonl:out.jsonl")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    sink = sub.add_parser("sink", parents=[common], help="run one sink as a separate subscriber process")
    sink.add_argument("name", help="sink name (entry point in batsight.sinks)")
    sink.add_argument("--connect", default="tcp://127.0.0.1:5556", help="publisher endpoint")
    sink.add_argument("--path", help="the sink's main option: output file (jsonl) or folder (report)")
    sink.add_argument("--topic", action="append", help="topic prefix to subscribe (default all)")
    sink.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="sink option")
    sink.add_argument("--keep-running", action="store_true", help="do not exit when the engine stops")
    sink.add_argument("--curve-server-key", metavar="FILE", help="publisher's CURVE certificate (.key)")
    sink.add_argument("--curve-key", metavar="FILE", help="this sink's CURVE certificate (.key_secret)")
    sink.set_defaults(func=_cmd_sink)

    rep = sub.add_parser(
        "report", parents=[common], help="thesis-style PNG figures (Figs. 3-6) from jsonl files of earlier runs"
    )
    rep.add_argument("files", nargs="+", metavar="FILE.jsonl")
    rep.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files")
    rep.add_argument("--video", action="append", metavar="SOURCE_ID=PATH", help="draw keypoints on this video")
    rep.add_argument("--label", action="append", metavar="SOURCE_ID=LABEL", help="known class of a source")
    rep.add_argument("--dpi", type=_positive_int, default=150, help="resolution of the PNG files, dots per inch")
    rep.set_defaults(func=_cmd_report)

    bench = sub.add_parser(
        "bench", parents=[common], help="fps of Ultralytics' loop, the model and the pipeline on the same frames"
    )
    bench.add_argument("source", nargs="?", metavar="SOURCE", help="file, URL, ID=SPEC (default: the built-in input)")
    bench.add_argument("--config", "-c", help="YAML config file (see configs/default.yaml)")
    bench.add_argument("--set", "-s", action="append", metavar="KEY=VALUE", help="override a config key")
    bench.add_argument("--frames", type=_positive_int, help="decode at most this many frames (default: all)")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    bench.add_argument("--no-latency", action="store_true", help="skip the paced live-source latency run")
    bench.set_defaults(func=_cmd_bench)
    from engine.shots.classify import add_classify_parser

    add_classify_parser(sub, common)
    from engine.probe import add_probe_parser

    add_probe_parser(sub, common)
    from engine.cluster.cli import add_cluster_parser

    add_cluster_parser(sub, common, _sink_from_spec, _install_signal_handlers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``batsight`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = getattr(args, "debug", False)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="batsight: %(levelname)s: %(message)s",
    )
    # progress of long one-off work (the first export of the model) shows at the default level
    logging.getLogger("engine.models.export").setLevel(logging.DEBUG if args.debug else logging.INFO)
    for noisy in ("matplotlib", "PIL"):  # their DEBUG output (font and tick searches) buries ours
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger(noisy).level))
    try:
        return int(args.func(args) or 0)
    except (ConfigError, PluginError) as exc:
        if args.debug:
            raise
        sys.stderr.write(f"batsight: error: {exc}\n")
        return 2
    except BatsightError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"batsight: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("batsight: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
