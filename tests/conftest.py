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


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``cli(*args)`` runs ``batsight ARGS`` in-process with ``tmp_path`` as the working folder.

    Returns a :class:`tests.helpers.CliResult` (``returncode``, ``stdout``, ``stderr``), like
    ``subprocess.run(..., capture_output=True, text=True)`` of the console script.
    """
    from tests.helpers import run_cli

    monkeypatch.chdir(tmp_path)
    return lambda *args: run_cli(args, capsys)


@pytest.fixture(scope="session")
def fake_model_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose ``dist-info`` declares the ``test_fake`` model backend (``tests.helpers.FakeModelPlugin``).

    Put it on a subprocess's ``PYTHONPATH`` with ``tests.helpers.subprocess_env(fake_model_site)``.
    """
    from tests.helpers import write_fake_model_site

    return write_fake_model_site(tmp_path_factory.mktemp("fake_model_site"))


@pytest.fixture
def fake_model(fake_model_site: Path):
    """The ``test_fake`` model backend installed in this process for one test (``--set model.name=test_fake``).

    Yields :class:`tests.helpers.FakeModelPlugin`, whose ``instances`` lists the models created.
    """
    from tests.helpers import FakeModelPlugin, fake_model_installed

    with fake_model_installed(fake_model_site):
        yield FakeModelPlugin
