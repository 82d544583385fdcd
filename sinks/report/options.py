"""Option checks shared by the ``report`` sink and the offline ``batsight report`` command."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from engine.errors import SinkError, SinkOptionError


def parse_assignments(value: str | Mapping[str, str] | Iterable[str] | None, what: str) -> dict[str, str]:
    """``{"a": "x", "b": "y"}`` from a mapping, ``"a=x,b=y"`` or ``["a=x", "b=y"]`` (CLI ``--video``).

    Raises:
        SinkOptionError: an item is not ``KEY=VALUE`` with a non-empty key and value (a
            configuration error: the CLI exits 2).
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
    else:
        parts = value.split(",") if isinstance(value, str) else list(value)
        items = []
        for part in parts:
            key, sep, item = str(part).partition("=")
            if not sep:
                msg = f"{what} must be SOURCE_ID=VALUE, got {part!r}"
                raise SinkOptionError(msg)
            items.append((key.strip(), item.strip()))
    for key, item in items:
        if not key or not item:
            msg = f"{what} must be SOURCE_ID=VALUE with both parts non-empty, got {key!r}={item!r}"
            raise SinkOptionError(msg)
    return dict(items)


def check_videos(video: Mapping[str, str]) -> None:
    """Check that every ``source_id -> video path`` names an existing file.

    Raises:
        SinkError: a path is not a file.
    """
    for source_id, path in video.items():
        if not Path(path).is_file():
            msg = f"video for source {source_id!r} not found: expected a file, got {path!r}"
            raise SinkError(msg)


def make_out_dir(out_dir: Path) -> None:
    """Create the report folder ``out_dir`` with its parents (nothing when it exists).

    Raises:
        SinkError: the folder cannot be created, or ``out_dir`` exists and is not a folder.
    """
    if out_dir.exists() and not out_dir.is_dir():  # mkdir(exist_ok=True) would say only "File exists"
        msg = f"cannot create report folder {str(out_dir)!r}: it exists and is not a folder"
        raise SinkError(msg)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create report folder {str(out_dir)!r}: {exc.strerror or exc}"
        raise SinkError(msg) from exc


def number_option(name: str, value: object, kind: type, low: float | None, high: float | None) -> Any:
    """The report option ``name`` as ``kind`` (``int`` or ``float``), checked against ``[low, high]``.

    ``value`` may be a number or its text (from ``--sink report:...``); ``None`` bounds are open.

    Raises:
        SinkError: ``value`` is a bool, not a number (a float with a fraction for ``int``), not
            finite, or out of range.
    """
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if isinstance(value, bool) or number is None or (kind is int and isinstance(value, float) and value != number):
        msg = f"report option {name!r} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        raise SinkError(msg)
    if (low is not None and number < low) or (high is not None and number > high) or not math.isfinite(number):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        msg = f"report option {name!r} must be {bounds}, got {value!r}"
        raise SinkError(msg)
    return number
