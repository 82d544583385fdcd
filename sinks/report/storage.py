"""Bounded per-source storage of the report collector: growing numpy columns, shots, per-source state.

Not thread-safe: owned by one :class:`~sinks.report.collector.ReportCollector`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.types import NUM_KEYPOINTS
from sinks.figures import WristSegment


class Columns:
    """Parallel numpy columns that grow by doubling up to ``max_rows``; when full, the oldest half goes.

    Args:
        specs: ``name -> (row shape, dtype)`` of each column; every row has a value in each column.
        max_rows: Most rows kept (>= 2); appending to a full store first forgets its oldest half.

    Attributes:
        rows: Rows held now.
        evicted: Rows forgotten so far.
    """

    def __init__(self, specs: Mapping[str, tuple[tuple[int, ...], type]], max_rows: int) -> None:
        self._specs = dict(specs)
        self._max_rows = int(max_rows)
        self._capacity = min(256, self._max_rows)
        self._data: dict[str, np.ndarray] = {
            name: np.empty((self._capacity, *shape), dtype) for name, (shape, dtype) in specs.items()
        }
        self.rows = 0
        self.evicted = 0

    def append(self, **values: Any) -> None:
        """Add one row, ``column name -> value`` (each cast to its column's row shape and dtype).

        Raises:
            KeyError: a column has no value.
            ValueError: a value does not fit its column's row shape.
        """
        if self.rows == self._capacity:
            if self._capacity < self._max_rows:
                self._capacity = min(self._capacity * 2, self._max_rows)
                for name, array in self._data.items():
                    grown = np.empty((self._capacity, *array.shape[1:]), array.dtype)
                    grown[: self.rows] = array[: self.rows]
                    self._data[name] = grown
            else:
                keep = self.rows // 2
                for array in self._data.values():
                    array[:keep] = array[self.rows - keep : self.rows]
                self.evicted += self.rows - keep
                self.rows = keep
        for name, array in self._data.items():
            array[self.rows] = values[name]
        self.rows += 1

    def __getitem__(self, name: str) -> np.ndarray:
        """Column ``name``, ``[rows, *row shape]``, oldest row first (a view: valid until the next append)."""
        return self._data[name][: self.rows]

    def __len__(self) -> int:
        return self.rows


def pose_columns(max_rows: int) -> Columns:
    """Columns of the batter frames, at most ``max_rows``.

    ``frame_index`` int64, ``pts_s`` float64 seconds, ``frame_width`` / ``frame_height`` int32 pixels,
    ``keypoints_xy`` float32 ``[17, 2]`` pixels, ``keypoints_conf`` float32 ``[17]``, ``xyxy`` float32
    ``[4]`` batter box in pixels (NaN when absent).
    """
    return Columns(
        {
            "frame_index": ((), np.int64),
            "pts_s": ((), np.float64),
            "frame_width": ((), np.int32),
            "frame_height": ((), np.int32),
            "keypoints_xy": ((NUM_KEYPOINTS, 2), np.float32),
            "keypoints_conf": ((NUM_KEYPOINTS,), np.float32),
            "xyxy": ((4,), np.float32),
        },
        max_rows,
    )


def pair_columns(max_rows: int) -> Columns:
    """Columns of one keypoint pair's similarity per frame, at most ``max_rows``.

    ``frame_index`` int64, ``pts_s`` float64 seconds, ``value`` float64 cosine similarity in [0, 1]
    (NaN = missing).
    """
    return Columns({"frame_index": ((), np.int64), "pts_s": ((), np.float64), "value": ((), np.float64)}, max_rows)


@dataclass
class Shot:
    """One ``shot/`` message as kept for the figures.

    Attributes:
        segment: The shot's points and fits.
        start_s: Start of the shot, seconds of source PTS (Fig. 6 normalises time to it).
        end_s: End of the shot, seconds (``> start_s``).
        pair_similarity: float64 ``[n]`` pair similarity at ``segment.t_s``, or ``None``.
    """

    segment: WristSegment
    start_s: float
    end_s: float
    pair_similarity: np.ndarray | None


@dataclass
class SourceState:
    """What the collector keeps for one source.

    Attributes:
        poses: Batter frames (:func:`pose_columns`).
        pairs: ``"a/b" -> ``:func:`pair_columns` per keypoint pair of the ``sim/`` messages.
        shots: The latest shots (a deque bounded by ``max_shots``).
        shots_dropped: Shots forgotten because ``shots`` was full.
        cumulative_mean: float32 ``[17, 17]`` latest cumulative-mean dependency matrix, or ``None``.
        window_mean: float32 ``[17, 17]`` latest rolling-window mean, or ``None``.
        sim_frames: ``sim/`` messages seen (at least the latest ``seq`` + 1).
        heatmap_source: ``"rendered"`` or ``"model"`` as announced by the engine, or ``None``.
        wrist: COCO name of the wrist from ``fit/``, or ``None``.
        shoulder: COCO name of the shoulder from ``fit/``, or ``None``.
        frame_size: ``(W, H)`` pixels of the latest ``pose/`` frame, or ``None``.
    """

    poses: Columns
    pairs: dict[str, Columns] = field(default_factory=dict)
    shots: deque[Shot] = field(default_factory=deque)
    shots_dropped: int = 0
    cumulative_mean: np.ndarray | None = None
    window_mean: np.ndarray | None = None
    sim_frames: int = 0
    heatmap_source: str | None = None
    wrist: str | None = None
    shoulder: str | None = None
    frame_size: tuple[int, int] | None = None
