"""Plugins from another package: a source, a sink and a model backend found through entry points.

The fixture writes a tiny package ``thirdparty_demo`` plus its ``thirdparty_demo-0.1.dist-info``
(``METADATA`` and ``entry_points.txt``) into a folder put on ``sys.path``, which is how an installed
distribution looks to ``importlib.metadata``. The run goes through ``engine.cli.main`` in-process.
The unit tests of source selection (:func:`engine.sources.source_plugin`) use an in-memory registry.
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from engine import plugins, sources
from engine.cli import main
from engine.config import SourceConfig
from engine.errors import ConfigError, PluginError
from engine.sources import Source, build_sources, source_plugin
from engine.testing import ListSource

DEMO_MODULE = '''
"""A third-party batsight plugin package: a synthetic source, a recording sink, a fake model."""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from engine.config import BackendOptions
from engine.sources import Source
from engine.testing import FakeKeypointModel
from engine.types import Frame
from sinks.base import Sink

#: Every message the recording sinks received, as (label, message), in arrival order.
RECEIVED = []


class SynthSource(Source):
    """``synth://N``: N grey 48x64 frames at 30 fps, pixel value = frame index."""

    def __init__(self, source_id, n_frames):
        self.source_id = source_id
        self.n_frames = n_frames
        self.total_frames = n_frames

    @classmethod
    def claims(cls, spec):
        return 10 if spec.startswith("synth://") else 0

    @classmethod
    def from_spec(cls, spec, source_id, config):
        return cls(source_id, int(spec.removeprefix("synth://")))

    def open(self):
        pass

    def frames(self):
        for i in range(self.n_frames):
            image = np.full((48, 64, 3), i, np.uint8)
            yield Frame(self.source_id, i, i / 30.0, time.time_ns(), image, raw_pts_s=i / 30.0)

    def close(self):
        pass


class RecordingSink(Sink):
    """Appends what it receives to ``RECEIVED``."""

    primary_option = "label"

    def __init__(self, label="demo", **options):
        super().__init__(**options)
        self.label = label

    def open(self):
        pass

    def write_batch(self, messages):
        RECEIVED.extend((self.label, message) for message in messages)

    def close(self):
        pass


class FailingOpenSink(RecordingSink):
    """A sink whose resource cannot be opened (an ordinary exception, as third-party code raises)."""

    def open(self):
        raise PermissionError("no access to /demo/output")


class DemoOptions(BackendOptions):
    """The demo backend's own key, ``model.demo_no_person_every``."""

    demo_no_person_every: int = Field(0, ge=0, description="demo: every Nth frame value has nobody; 0 = never")


class DemoModel(FakeKeypointModel):
    """engine.testing's fake model, configured by its own option."""

    options = DemoOptions

    @classmethod
    def from_config(cls, config):
        return cls(no_person_every=DemoOptions.from_model_config(config).demo_no_person_every)
'''

ENTRY_POINTS = """
[batsight.sources]
synth = thirdparty_demo:SynthSource

[batsight.sinks]
demo_recorder = thirdparty_demo:RecordingSink
demo_failing = thirdparty_demo:FailingOpenSink
demo_missing = thirdparty_demo:DoesNotExist

[batsight.models]
demo_fake = thirdparty_demo:DemoModel
"""


@pytest.fixture
def thirdparty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``thirdparty_demo`` installed (on ``sys.path`` with its dist-info) for one test; yields the module."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "thirdparty_demo.py").write_text(textwrap.dedent(DEMO_MODULE))
    dist_info = site / "thirdparty_demo-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-demo\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))  # also invalidates importlib's finder caches
    plugins.refresh()
    try:
        yield importlib.import_module("thirdparty_demo")
    finally:
        sys.modules.pop("thirdparty_demo", None)
        monkeypatch.undo()  # off sys.path before the entry points are read again
        plugins.refresh()


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """``batsight run`` installs SIGINT / SIGTERM handlers; give pytest its own back afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_thirdparty_source_sink_and_model_run_from_the_cli(thirdparty, tmp_path, capsys, keep_signal_handlers):
    assert {"synth"} <= set(plugins.names(plugins.SOURCES))
    out = tmp_path / "out.jsonl"
    status = main(
        [
            "run", "synth://3", "cam=synth://2", "--no-progress",
            "--sink", "demo_recorder", "--sink", f"jsonl:{out}",
            "--set", "publisher.endpoint=tcp://127.0.0.1:*",  # ephemeral port: sinks follow the bound one
            "--set", "model.name=demo_fake", "--set", "model.demo_no_person_every=0",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "stream0: 3 frames, batter found 100.0%" in captured.out
    assert "cam: 2 frames, batter found 100.0%" in captured.out
    received = [message for label, message in thirdparty.RECEIVED if label == "demo"]
    assert len(received) == len(thirdparty.RECEIVED)
    for source_id, n_frames in (("stream0", 3), ("cam", 2)):
        poses = [m for m in received if m.kind == "pose" and m.source_id == source_id]
        assert [m.frame_index for m in poses] == list(range(n_frames))
        assert all(m.batter_found and m.heatmap_source == "rendered" for m in poses)
        (eos,) = [m for m in received if m.kind == "eos" and m.source_id == source_id]
        assert eos.frames == n_frames and eos.reason == "end" and not eos.error
    # the third-party sink got exactly what the built-in jsonl sink wrote (same decoded messages)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m.to_json_dict() for m in received if m.kind in ("pose", "eos")] == [
        r for r in written if r["kind"] in ("pose", "eos")
    ]


def test_a_thirdparty_backend_option_is_validated_under_its_dotted_key(thirdparty, capsys, keep_signal_handlers):
    status = main(["run", "synth://1", "--set", "model.name=demo_fake", "--set", "model.demo_no_person_every=-1"])
    err = capsys.readouterr().err
    assert status == 2
    (line,) = [line for line in err.splitlines() if line.startswith("batsight: error:")]
    assert "model.demo_no_person_every: Input should be greater than or equal to 0" in line
    from engine.config import Config

    assert Config().model.demo_no_person_every == 0  # declared keys get their defaults
    assert Config().model.keypoint_mode == "topdown"  # the built-in backends' keys stay


def test_a_thirdparty_sink_that_cannot_open_is_one_error_line(thirdparty, capsys, keep_signal_handlers):
    status = main(
        ["run", "synth://2", "--no-progress", "--sink", "demo_failing", "--set", "publisher.endpoint=tcp://127.0.0.1:*",
         "--set", "model.name=demo_fake"]
    )
    err = capsys.readouterr().err
    assert status == 1, err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("batsight: error:")]
    assert "demo_failing" in line and "PermissionError: no access to /demo/output" in line


def test_an_entry_point_naming_a_missing_class_is_a_plugin_error(thirdparty, capsys, keep_signal_handlers):
    from sinks.base import Sink

    with pytest.raises(PluginError, match=r"cannot import plugin 'demo_missing' .*AttributeError.*DoesNotExist"):
        plugins.load(plugins.SINKS, "demo_missing", Sink)
    status = main(["run", "synth://1", "--sink", "demo_missing", "--set", "model.name=demo_fake"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "cannot import plugin 'demo_missing'" in err


def test_without_the_package_its_plugins_are_unknown():
    from engine.config import Config

    assert "synth" not in plugins.names(plugins.SOURCES)
    assert "demo_no_person_every" not in Config().model.model_dump()


# -- source selection by claims, on an in-memory registry ----------------------------------------


def _double(name: str, claim: object) -> type[Source]:
    """A ``ListSource`` subclass whose ``claims`` returns ``claim(spec)`` (callable) or ``claim``."""

    def claims(cls: type[Source], spec: str) -> object:
        return claim(spec) if callable(claim) else claim

    return type(name, (ListSource,), {"claims": classmethod(claims), "from_spec": classmethod(_from_spec)})


def _from_spec(cls: type[ListSource], spec: str, source_id: str, config: SourceConfig) -> ListSource:
    source = cls(source_id=source_id, n_frames=1)
    source.spec = spec  # type: ignore[attr-defined]
    return source


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[Source]]:
    """Replace the ``batsight.sources`` group seen by :mod:`engine.sources` with a dict, filled by the test."""
    table: dict[str, type[Source]] = {}
    monkeypatch.setattr(sources, "names", lambda group: sorted(table))

    def load_source_class(name: str) -> type[Source]:
        return table[name]

    monkeypatch.setattr(sources, "load_source_class", load_source_class)
    return table


def _builtin_like(table: dict[str, type[Source]]) -> None:
    """Doubles with the claims that stream/ gives the built-in plugins."""
    import re

    url = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.IGNORECASE)
    table["default"] = _double("DefaultDouble", lambda spec: 100 if spec == "default" else 0)
    table["url"] = _double("UrlDouble", lambda spec: 10 if url.match(spec) else 0)
    table["webcam"] = _double("WebcamDouble", lambda spec: 10 if re.fullmatch(r"/dev/video\d+", spec) else 0)
    table["file"] = _double("FileDouble", 1)


def test_the_highest_claim_wins_and_ids_follow_the_plugin(registry):
    _builtin_like(registry)
    registry["synth"] = _double("SynthDouble", lambda spec: 10 if spec.startswith("synth://") else 0)
    specs = ["net session.mp4", "default", "cam1=rtsp://user:pw@10.0.0.1/x", "/dev/video3", "synth://4", "s=synth://a=b"]
    built = build_sources(specs, SourceConfig())
    assert [type(s).__name__ for s in built] == [
        "FileDouble", "DefaultDouble", "UrlDouble", "WebcamDouble", "SynthDouble", "SynthDouble",
    ]
    assert [s.source_id for s in built] == ["net_session", "default", "cam1", "video3", "stream4", "s"]
    assert [s.spec for s in built] == [  # type: ignore[attr-defined]
        "net session.mp4", "default", "rtsp://user:pw@10.0.0.1/x", "/dev/video3", "synth://4", "synth://a=b",
    ]
    assert source_plugin("RTSP://cam/x")[0] == "url" and source_plugin("video.mp4")[0] == "file"


def test_a_url_spec_with_equals_is_never_taken_as_id_equals_spec(registry):
    registry["synth"] = _double("SynthDouble", lambda spec: 10 if spec.startswith("synth://") else 0)
    (source,) = build_sources(["synth://clip?fps=30"], SourceConfig())
    assert source.source_id == "stream0" and source.spec == "synth://clip?fps=30"  # type: ignore[attr-defined]


def test_a_tie_at_the_top_names_both_plugins(registry):
    _builtin_like(registry)
    registry["rtsp_a"] = _double("A", lambda spec: 10 if spec.startswith("rtsp://") else 0)
    with pytest.raises(ConfigError) as info:
        build_sources(["rtsp://cam/x"], SourceConfig())
    text = str(info.value)
    assert text == "source 'rtsp://cam/x' is claimed equally (10) by source plugins 'rtsp_a' and 'url'"
    assert isinstance(info.value, ValueError)


def test_a_spec_nobody_claims_lists_the_plugins(registry):
    registry["default"] = _double("DefaultDouble", lambda spec: 100 if spec == "default" else 0)
    registry["synth"] = _double("SynthDouble", 0)
    with pytest.raises(ConfigError, match=r"^no source plugin claims 'clip\.mp4' \(installed: default, synth\)$"):
        build_sources(["clip.mp4"], SourceConfig())


@pytest.mark.parametrize("claim", [-1, 1.5, "10", None, True])
def test_a_claim_that_is_no_count_is_a_plugin_error(registry, claim):
    registry["odd"] = _double("OddDouble", claim)
    with pytest.raises(PluginError, match=r"source plugin 'odd': claims\('x'\) must return an int >= 0, got "):
        source_plugin("x")


def test_no_source_plugins_at_all(registry):
    with pytest.raises(PluginError, match="no source plugins are registered"):
        source_plugin("clip.mp4")


def test_the_default_claim_is_nothing():
    assert Source.claims("anything") == 0
    assert ListSource.claims("default") == 0


def test_load_returns_the_class_typed_and_checked():
    from engine.models.base import KeypointModel, load_model_class
    from engine.models.ultralytics_pose import UltralyticsPose

    assert load_model_class("ultralytics") is UltralyticsPose
    assert plugins.load(plugins.MODELS, "ultralytics", KeypointModel) is UltralyticsPose  # type: ignore[type-abstract]
    with pytest.raises(PluginError, match="plugin 'ultralytics' of batsight.models must be a subclass of Source"):
        plugins.load(plugins.MODELS, "ultralytics", Source)  # type: ignore[type-abstract]
    with pytest.raises(PluginError, match="must be a class implementing SinkPlugin"):
        plugins.load(plugins.MODELS, "ultralytics", plugins.SinkPlugin)  # type: ignore[type-abstract]
    with pytest.raises(PluginError, match="unknown model 'nosuch'; available: .*keypointrcnn.*ultralytics"):
        load_model_class("nosuch")
    assert plugins.load(plugins.SINKS, "jsonl", plugins.SinkPlugin).__name__ == "JsonlSink"  # type: ignore[type-abstract]
    assert plugins.load(plugins.SINKS, "report", plugins.OfflineReport).__name__ == "ReportSink"  # type: ignore[type-abstract]
