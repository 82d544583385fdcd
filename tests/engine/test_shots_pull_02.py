"""`batsight run` on ``pull_02.mp4`` (issue 10 items 6, 7): the whole stroke, fitted honestly.

The clip (ECB broadcast, 25 fps, 116 frames): the striker at the far end is in his stance until
frame 13, lifts the bat from frame 14 (top of the backlift 16-18), swings 19-23 and follows through
24-29; then the camera follows the ball and he is gone. Until frame 19 the engine's batter was the
non-striker nearer the camera, so the shot used to start at frame 20, at the top of the backlift.
Those frame numbers come from looking at the frames (``ffmpeg``-extracted PNGs), not from the program.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from numpy.polynomial import Legendre

from sinks.figures.values import WristSegment
from sinks.figures.wrist import wrist_figure
from tests.conftest import shared_file
from tests.helpers import port_taken, reference_fit_degree, retry_if_port_taken, subprocess_env

BACKLIFT_FIRST_FRAME = 14
FOLLOW_THROUGH_FRAMES = range(24, 30)
MARGIN = 0.10  # share of the points' span the fitted curve may leave their range by


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> list[dict]:
    """The ``shot/`` records of one CLI run (a subprocess) on the clip."""
    clip = shared_file("clips/cricket/pull_02.mp4")
    tmp = tmp_path_factory.mktemp("pull_02")

    def attempt(endpoint: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine.cli", "run", str(clip), "--no-progress",
             "--sink", f"jsonl:{tmp / 'out.jsonl'}", "--set", f"publisher.endpoint={endpoint}"],
            capture_output=True, text=True, timeout=600, cwd=tmp, env=subprocess_env(),
        )

    run = retry_if_port_taken(attempt, port_taken)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (tmp / "out.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "shot"]


def test_the_shot_holds_the_whole_stroke_from_the_backlift(shots):
    assert len(shots) == 1
    (shot,) = shots
    assert shot["start_frame"] <= BACKLIFT_FIRST_FRAME
    assert shot["end_frame"] >= FOLLOW_THROUGH_FRAMES[-1] - 2


@pytest.mark.xfail(strict=True, reason="known miss (README clip table, issue 10): the CV-chosen frame MLP labels "
                   "pull_02 other 0.50 (pull 0.36); strict: a model that gets it right makes this test fail "
                   "until the mark is removed")
def test_the_stroke_is_labelled_pull(shots):
    (shot,) = shots
    assert shot["label"] == "pull"


def _points(shot: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, dx, dy = (np.asarray(shot["arrays"][k], np.float64) for k in ("t_s", "dx", "dy"))
    ok = np.isfinite(dx) & np.isfinite(dy)
    return t[ok], dx[ok], dy[ok]


def test_the_fit_stays_within_the_data_over_the_segment(shots):
    (shot,) = shots
    t, dx, dy = _points(shot)
    degree = reference_fit_degree(t, 10)
    assert shot["degree_xy"] == degree
    domain = [t.min(), t.max()]
    assert [shot["t_start_s"], shot["t_end_s"]] == pytest.approx(domain)
    grid = np.linspace(*domain, 1000)
    for name, y in (("dx_coef", dx), ("dy_coef", dy)):
        np.testing.assert_allclose(shot["arrays"][name], Legendre.fit(t, y, degree, domain=domain).coef, atol=1e-7)
        curve = Legendre(shot["arrays"][name], domain=domain)(grid)
        pad = MARGIN * (y.max() - y.min())
        assert y.min() - pad <= curve.min() and curve.max() <= y.max() + pad, name


def test_the_wrist_figure_draws_the_fit_within_the_data(shots):
    (shot,) = shots
    arrays = shot["arrays"]
    segment = WristSegment(
        source_id="pull_02", t_s=np.asarray(arrays["t_s"]), dx=np.asarray(arrays["dx"]), dy=np.asarray(arrays["dy"]),
        dx_coef=np.asarray(arrays["dx_coef"]), dy_coef=np.asarray(arrays["dy_coef"]),
        r_coef=np.asarray(arrays["r_coef"]), t_start_s=shot["t_start_s"], t_end_s=shot["t_end_s"],
    )
    figure = wrist_figure(segment)
    centre = figure.axes[1]
    x_curve, y_curve = (np.asarray(v) for v in centre.lines[0].get_data())
    t, dx, dy = _points(shot)
    for curve, y in ((x_curve, dx), (y_curve, dy)):
        pad = MARGIN * (y.max() - y.min())
        assert y.min() - pad <= curve.min() and curve.max() <= y.max() + pad
    r_times = np.asarray(figure.axes[2].lines[0].get_xdata())
    assert r_times.min() == pytest.approx(t.min()) and r_times.max() == pytest.approx(t.max())
