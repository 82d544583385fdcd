"""Bad streams: resolution changes mid-way, truncated files: clear errors or frames, never a crash."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from engine.config import SourceConfig
from engine.errors import SourceError
from engine.testing import FakeKeypointModel
from stream.pyav import FileSource
from tests.conftest import shared_file
from tests.helpers import by_kind, run_pipeline


def _h264_ts(path: Path, sizes: list[tuple[int, int, int]], fps: int = 25) -> None:
    """MPEG-TS, H.264: for each ``(width, height, n)`` a run of ``n`` frames, one file (new SPS per run)."""
    with path.open("wb") as out:
        pts = 0
        for width, height, n in sizes:
            part = path.with_suffix(f".{width}x{height}.ts")
            with av.open(str(part), "w", format="mpegts") as container:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.time_base = Fraction(1, fps)
                for i in range(n):
                    image = np.full((height, width, 3), 40 + (5 * i) % 200, np.uint8)
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts, frame.time_base = pts, Fraction(1, fps)
                    pts += 1
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            out.write(part.read_bytes())


def test_a_resolution_change_mid_stream_is_followed_frame_by_frame(tmp_path):
    clip = tmp_path / "resize.ts"
    _h264_ts(clip, [(64, 48, 20), (96, 72, 20)])
    source = FileSource.from_spec(str(clip), "resize", SourceConfig())
    pipeline, messages, error = run_pipeline([source], FakeKeypointModel(), tmp_path)
    assert error is None
    poses = by_kind(messages, "pose")
    assert [m.frame_index for m in poses] == list(range(40))
    sizes = [(m.frame_width, m.frame_height) for m in poses]
    assert sizes == [(64, 48)] * 20 + [(96, 72)] * 20
    assert all(m.batter_found for m in poses)
    assert np.all(np.diff([m.pts_s for m in poses]) > 0)
    (eos,) = by_kind(messages, "eos")
    assert eos.reason == "end" and eos.frames == 40


def test_a_truncated_stream_delivers_what_it_holds(tmp_path):
    clip = tmp_path / "whole.ts"
    _h264_ts(clip, [(64, 48, 60)])
    cut = tmp_path / "cut.ts"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    source = FileSource.from_spec(str(cut), "cut", SourceConfig())
    source.open()
    frames = list(source.frames())
    source.close()
    assert 15 <= len(frames) < 60
    assert [f.frame_index for f in frames] == list(range(len(frames)))


def test_a_truncated_real_mp4_gives_a_clear_error(tmp_path):
    real = shared_file("clips/cricket/cover_drive_04_nets.mp4")
    cut = tmp_path / "half.mp4"
    data = real.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: nothing is playable
    source = FileSource.from_spec(str(cut), "half", SourceConfig())
    with pytest.raises(SourceError, match="half.mp4"):
        source.open()
