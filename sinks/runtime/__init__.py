"""Subscriber runtime shared by in-process sink threads and ``batsight sink NAME --connect EP``.

:class:`Subscriber` receives and decodes wire messages (:func:`engine.wire.decode`), skipping
malformed ones. :class:`SinkRunner` feeds a :class:`~sinks.base.Sink` in batches until told to stop,
until every expected source has sent ``eos``, or until the engine announces ``engine_state ==
"stopped"`` on ``health/``; it subscribes to those control topics itself when the user's topic filter
leaves them out, and passes the sink only what the filter selects. :class:`SinkThread` runs a runner
on a daemon thread and keeps its error. :func:`serve` runs one sink in the foreground,
:func:`start_thread` one beside the engine.

Modules: :mod:`.subscriber` (:class:`Subscriber`), :mod:`.runner` (:class:`SinkRunner`,
:class:`SinkThread`), :mod:`.serve` (:func:`serve`, :func:`run_standalone`, :func:`start_thread`).
"""

from sinks.runtime.runner import EOS_GRACE_S, EOS_TOPIC, HEALTH_TOPIC, SINK_ERROR_POLICIES, SinkRunner, SinkThread
from sinks.runtime.serve import run_standalone, serve, start_thread
from sinks.runtime.subscriber import DEFAULT_RCVHWM, Subscriber

__all__ = [
    "DEFAULT_RCVHWM",
    "EOS_GRACE_S",
    "EOS_TOPIC",
    "HEALTH_TOPIC",
    "SINK_ERROR_POLICIES",
    "SinkRunner",
    "SinkThread",
    "Subscriber",
    "run_standalone",
    "serve",
    "start_thread",
]
