"""Guards of the structure (issue 7 item 5): mypy is clean, and the one-way import contracts hold.

Both read their configuration from ``pyproject.toml`` (``[tool.mypy]``, ``[tool.importlinter]``) and
run from the repository root, so ``mypy`` and ``lint-imports`` run there by hand report the same. The
tools and the stub packages come with the ``test`` extra (``pip install -e '.[test]'``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "stream", "sinks")
#: Modules that must not load torch when imported (their import-linter contract checks direct imports).
TORCH_FREE = ("engine.messages", "engine.wire", "engine.types", "sinks")


def _env() -> dict[str, str]:
    """This checkout's packages first on the path (ahead of an editable install elsewhere)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def test_mypy_is_clean_on_engine_stream_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    from mypy import api

    monkeypatch.chdir(REPO_ROOT)  # the cache (.mypy_cache) and the error paths are relative to the root
    stdout, stderr, status = api.run(["--config-file", "pyproject.toml", *PACKAGES])
    hint = ""
    if "Library stubs not installed" in stdout or "missing library stubs" in stdout:
        hint = "\n(stub packages missing: install the test extra, pip install -e '.[test]')"
    assert status == 0, f"mypy found errors (exit {status}):\n{stdout}{stderr}{hint}"
    assert stdout.startswith("Success: no issues found"), stdout


def test_import_contracts_are_kept() -> None:
    # What the `lint-imports` script runs, with this interpreter (a venv's bin/ need not hold the script).
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    done = subprocess.run(
        [sys.executable, "-c", code, "--no-cache"], cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"import-linter contracts broken (exit {done.returncode}):\n{output}"
    kept = re.search(r"Contracts: (\d+) kept, 0 broken", output)
    assert kept and int(kept.group(1)) >= 4, output  # the four contracts of pyproject.toml were read


def test_torch_free_modules_do_not_load_torch() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        f"names = list({TORCH_FREE!r})\n"
        "import sinks\n"
        "names += [m.name for m in pkgutil.walk_packages(sinks.__path__, 'sinks.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in ('torch', 'torchvision', 'ultralytics') if m in sys.modules)\n"
        "assert not loaded, f'importing {names} loaded {loaded}'\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout) > len(TORCH_FREE) + 10, done.stdout  # every sinks module was imported
