"""``jsonl`` sink: one JSON object per message, one message per line.

Each line is :meth:`engine.messages.Message.to_json_dict` (header fields, ``topic``, arrays as nested
lists, NaN as ``null``). Every batch is written with one ``write`` and flushed, so the file holds
only complete lines after each batch, also when the engine is stopped mid-run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any, ClassVar

from engine.errors import SinkError
from engine.messages import AnyMessage
from sinks.base import Sink


class JsonlSink(Sink):
    """Write messages as JSON lines (``--sink jsonl:out.jsonl``).

    Args:
        path: Output file, created or truncated by :meth:`open`; its directory must exist. ``"-"``
            writes to standard output (flushed, never closed).

    Raises:
        SinkError: ``path`` is not a non-empty str, or an unknown option is given.
    """

    primary_option: ClassVar[str | None] = "path"
    user_options: ClassVar[tuple[str, ...] | None] = ("path",)

    def __init__(self, path: str, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(path, (str, Path)) or not str(path):
            msg = f"jsonl option 'path' must be a file path or '-', got {path!r}"
            raise SinkError(msg)
        self.path = str(path)
        self._file: IO[str] | None = None
        self._owns_file = False

    def output_paths(self) -> list[Path]:
        """The jsonl file (``[]`` for standard output)."""
        return [] if self.path == "-" else [Path(self.path)]

    @property
    def writes_stdout(self) -> bool:
        """``True`` for ``path="-"``."""
        return self.path == "-"

    def open(self) -> None:
        """Create (or truncate) the output file.

        Raises:
            SinkError: the parent directory does not exist, or the file cannot be opened.
        """
        if self.path == "-":
            self._file, self._owns_file = sys.stdout, False
            return
        target = Path(self.path)
        if not target.parent.is_dir():
            msg = f"cannot open jsonl output {self.path!r}: expected an existing directory {str(target.parent)!r}"
            raise SinkError(msg)
        try:
            self._file = target.open("w", encoding="utf-8")
        except OSError as exc:
            msg = f"cannot open jsonl output {self.path!r}: {exc.strerror or exc}"
            raise SinkError(msg) from exc
        self._owns_file = True

    def write_batch(self, messages: list[AnyMessage]) -> None:
        """Append one line per message and flush.

        Raises:
            SinkError: the sink is not open, a message is not JSON-serialisable, or the write fails.
        """
        if self._file is None:
            msg = "jsonl sink must be open to write"
            raise SinkError(msg)
        try:
            text = "".join(
                json.dumps(message.to_json_dict(), separators=(",", ":"), allow_nan=False) + "\n"
                for message in messages
            )
        except (TypeError, ValueError) as exc:
            msg = f"cannot serialise message to JSON: {exc}"
            raise SinkError(msg) from exc
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as exc:
            msg = f"cannot write jsonl output {self.path!r}: {exc.strerror or exc}"
            raise SinkError(msg) from exc

    def close(self) -> None:
        """Flush and close the file (standard output is only flushed). Idempotent."""
        file, self._file = self._file, None
        if file is None:
            return
        try:
            if self._owns_file:
                file.close()
            else:
                file.flush()
        except OSError as exc:
            msg = f"cannot close jsonl output {self.path!r}: {exc.strerror or exc}"
            raise SinkError(msg) from exc
