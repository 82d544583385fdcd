"""Shared fixtures: the real-data folder (../shared/data/real) and small helpers.

Tests that need real footage use :func:`shared_file`. When the folder is missing they skip with a
reason, except under ``BATSIGHT_REQUIRE_SHARED=1`` (set by ``.ci/run``), where they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_REAL = Path(os.environ.get("BATSIGHT_SHARED_REAL", REPO_ROOT.parent / "shared" / "data" / "real"))


def shared_file(relative: str) -> Path:
    """Path of ``relative`` under the shared real-data folder; skip (or fail in CI) when absent."""
    path = SHARED_REAL / relative
    if not path.exists():
        reason = f"real test data not found: {path}"
        if os.environ.get("BATSIGHT_REQUIRE_SHARED") == "1":
            pytest.fail(reason + " (BATSIGHT_REQUIRE_SHARED=1)")
        pytest.skip(reason)
    return path


@pytest.fixture
def cover_drive_clip() -> Path:
    """``clips/cricket/cover_drive_04_nets.mp4``: 272 frames, 720x1280, 60 fps, one batter in nets."""
    return shared_file("clips/cricket/cover_drive_04_nets.mp4")
