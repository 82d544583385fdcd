"""``batsight cluster [SOURCE ...] [--config FILE] [--set key=value ...] [--sink NAME[:ARG] ...]``.

The same command line and config file as ``batsight run``; the ``cluster:`` section says where and
how the sources run (:mod:`engine.cluster.driver`). In-process sinks run on the driver, subscribed
to the forwarder's endpoint like any other subscriber.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from engine.config import load_config


def add_cluster_parser(
    sub: Any, common: argparse.ArgumentParser, sink_from_spec: Callable[[str], Any],
    install_signal_handlers: Callable[[dict[str, Any]], None],
) -> None:
    """Add the ``cluster`` subcommand to the ``batsight`` parser's subparsers ``sub``.

    Args:
        sub: The subparsers of the ``batsight`` parser.
        common: The parent parser with the options every subcommand takes (``--debug``).
        sink_from_spec: ``batsight run``'s way from ``NAME[:ARG]`` to a sink plugin.
        install_signal_handlers: ``batsight run``'s SIGINT / SIGTERM handlers (first: ``stop["fn"]()``;
            second: exit 130).
    """
    cluster = sub.add_parser(
        "cluster", parents=[common],
        help="run the pipeline on a Ray cluster: sources split over workers, one publisher endpoint",
    )
    cluster.add_argument("sources", nargs="*", metavar="SOURCE", help="file, rtsp://..., /dev/videoN, ID=SPEC")
    cluster.add_argument("--config", "-c", help="YAML config file (see configs/default.yaml, section cluster)")
    cluster.add_argument("--set", "-s", action="append", metavar="KEY=VALUE", help="override a config key")
    cluster.add_argument("--sink", action="append", metavar="NAME[:ARG]", help="sink on the driver: jsonl:out.jsonl")
    cluster.add_argument("--no-progress", action="store_true", help="no progress bar")
    cluster.set_defaults(func=partial(
        cmd_cluster, sink_from_spec=sink_from_spec, install_signal_handlers=install_signal_handlers
    ))


def _start_sinks(run: Any, specs: list[str], sinks: list[Any], config: Any) -> list[Any]:
    """Start the in-process ``sinks`` on the forwarder's endpoint (each refused before any frame)."""
    source_ids = {sid for group in run.groups for sid in group}
    threads = []
    for spec, sink in zip(specs, sinks, strict=True):
        name = spec.partition(":")[0].strip()
        threads.append(sink.run_in_thread(
            run.forwarder.endpoint, expected_sources=source_ids, curve=run.forwarder.client_curve(),
            on_error=config.sink_error_policies.get(name, config.sink_error_policy), on_fail=run.stop,
        ))
    return threads


def _print_summary(summary: Any, out: Any) -> None:
    """The end summary: a head line, then ``batsight run``'s line per source with its worker."""
    from engine.cli import source_summary_line

    fps = summary.frames / summary.wall_s if summary.wall_s > 0 else 0.0
    sources = summary.per_source.values()
    lines = [f"batsight cluster: {summary.frames} frames in {summary.wall_s:.2f} s -> {fps:.2f} fps, "
             f"{summary.restarts} worker restarts, dropped {sum(st.dropped for st in sources)}, "
             f"corrupt {sum(st.corrupt for st in sources)}"]
    lines += [source_summary_line(sid, st, f"on {summary.workers[sid]}") for sid, st in summary.per_source.items()]
    out.write("\n".join(lines) + "\n")
    out.flush()


def _join(run: Any, progress: bool) -> None:
    """Wait for the end of ``run``; with ``progress``, a bar of the frames forwarded once the workers opened.

    The bar has no total (the workers open the files) and shows only when a file source runs.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from engine.cli import progress_bar

    bar = None
    try:
        with logging_redirect_tqdm():  # the driver's log lines go above the bar
            while True:
                ended = run.join(timeout_s=0.5)
                opened = all(w.phase != "opening" for w in run.workers)
                files = any(not live for w in run.workers for live in w.live.values())
                if bar is None and progress and opened and files and not ended:
                    bar = progress_bar(None)
                if bar is not None:
                    bar.update(run.summary().frames - bar.n)
                if ended:
                    return
    finally:
        if bar is not None:
            bar.close()


def cmd_cluster(
    args: argparse.Namespace, sink_from_spec: Callable[[str], Any],
    install_signal_handlers: Callable[[dict[str, Any]], None],
) -> int:
    """Run ``batsight cluster`` (see :func:`add_cluster_parser`); exit status 0, or 1 when a source or sink failed.

    Raises:
        ConfigError: bad config or sink spec (before Ray is reached).
        ClusterError: Ray missing or unreachable. PublishError: ``publisher.endpoint`` cannot be bound.
    """
    from engine.cli import join_sink_threads
    from engine.cluster.driver import ClusterRun

    logging.getLogger("engine.cluster").setLevel(logging.DEBUG if args.debug else logging.INFO)  # workers, restarts
    config = load_config(args.config, list(args.set or []))
    if args.sources:
        config = config.model_copy(update={"sources": list(args.sources)})
    specs = list(args.sink) if args.sink is not None else list(config.sinks)
    sinks = [sink_from_spec(spec) for spec in specs]  # a bad sink spec is refused before Ray starts
    stop: dict[str, Any] = {"fn": None}
    install_signal_handlers(stop)
    run = ClusterRun(config)
    threads: list[Any] = []
    try:
        run.open()
        threads = _start_sinks(run, specs, sinks, config)
        run.start(expected_subscribers=len(threads),
                  sink_subscriptions=sum(t.runner.subscriptions for t in threads))
        stop["fn"] = run.stop
        _join(run, config.progress and not args.no_progress)
    finally:
        run.close()
        join_sink_threads(threads, config.sink_close_timeout_s)
    summary = run.summary()
    writes_stdout = any(getattr(sink, "writes_stdout", False) for sink in sinks)
    _print_summary(summary, sys.stderr if writes_stdout else sys.stdout)
    failed = {sid: st.error for sid, st in summary.per_source.items() if st.error}
    for sid, error in failed.items():
        sys.stderr.write(f"batsight: error: source {sid}: {error}\n")
    sink_errors = [f"{spec}: {t.error}" for spec, t in zip(specs, threads, strict=True) if t.error is not None]
    for error in sink_errors:
        sys.stderr.write(f"batsight: error: sink {error}\n")
    return 1 if failed or sink_errors else 0
