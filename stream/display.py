"""Display orientation of decoded frames: the display matrix (phone video) applied as FFmpeg's CLI does.

Phones record landscape sensor frames and store the rotation to show them upright in the
container's display matrix (``rotate=90`` in older tools; FFmpeg reads ``rotation -90``). FFmpeg's
decoders leave the pixels as coded and attach the matrix to every frame (``AV_FRAME_DATA_DISPLAYMATRIX``);
PyAV exposes it as ``VideoFrame.side_data`` and its angle as ``VideoFrame.rotation``. Here the
matrix becomes one of the lossless transforms FFmpeg's CLI inserts (``-autorotate``, on by default),
applied to the numpy image, so keypoints and ``frame_width``/``frame_height`` are in display
orientation.

References: FFmpeg ``fftools/ffmpeg_filter.c`` (``configure_input_video_filter``: ``transpose=clock``,
``cclock``, ``clock_flip``, ``cclock_flip``, ``hflip``, ``vflip`` from the matrix), ``fftools/cmdutils.c``
``get_rotation`` and ``libavutil/display.c`` ``av_display_rotation_get`` (the 3x3 matrix of 16.16
fixed-point values, row-major).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["IDENTITY", "Orientation", "frame_orientation", "orientation_from_matrix"]

#: ``libavutil/display.h``: the 2x2 part of the display matrix is in 16.16 fixed point.
_FIXED_ONE = float(1 << 16)
#: An angle within this many degrees of a right angle counts as that right angle (FFmpeg: 1.0).
_ANGLE_TOLERANCE_DEG = 1.0


@dataclass(frozen=True)
class Orientation:
    """How a decoded image is turned to display orientation.

    Attributes:
        rotation_deg: The display matrix's angle as FFmpeg reports it (``av_display_rotation_get``,
            counter-clockwise degrees in (-180, 180]; ``-90`` for a phone held upright), 0 without one.
        transform: The FFmpeg filter applied: ``""`` (none), ``"transpose=clock"``, ``"transpose=cclock"``,
            ``"transpose=clock_flip"``, ``"transpose=cclock_flip"``, ``"hflip"``, ``"vflip"`` or
            ``"hflip,vflip"``; an angle that is no right angle is not applied (:attr:`unsupported`).
        unsupported: The matrix asks for a rotation that is not a multiple of 90 degrees (left as coded).
    """

    rotation_deg: float = 0.0
    transform: str = ""
    unsupported: bool = False

    @property
    def swaps_axes(self) -> bool:
        """Whether display width and height are the coded height and width (a quarter turn)."""
        return self.transform.startswith("transpose")

    def display_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` in pixels after the transform, of a coded ``width x height`` image."""
        return (height, width) if self.swaps_axes else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (``uint8 [H, W, C]``) in display orientation, C-contiguous; the same array without a transform."""
        op = self.transform
        if not op:
            return image
        if op == "transpose=clock":  # rotate 90 degrees clockwise
            out = np.rot90(image, -1)
        elif op == "transpose=cclock":  # rotate 90 degrees counter-clockwise
            out = np.rot90(image, 1)
        elif op == "transpose=cclock_flip":  # counter-clockwise then vertical flip = plain transpose
            out = image.swapaxes(0, 1)
        elif op == "transpose=clock_flip":  # clockwise then vertical flip = anti-transpose
            out = np.rot90(image, -1)[::-1]
        else:
            out = image
            if "hflip" in op:
                out = out[:, ::-1]
            if "vflip" in op:
                out = out[::-1]
        return np.ascontiguousarray(out)


IDENTITY = Orientation()


def orientation_from_matrix(matrix: np.ndarray | None) -> Orientation:
    """The :class:`Orientation` FFmpeg's CLI derives from a display matrix (``int32 [9]``, row-major).

    ``None`` or a degenerate matrix gives :data:`IDENTITY`.
    """
    if matrix is None or len(matrix) < 9:
        return IDENTITY
    m = [float(v) / _FIXED_ONE for v in matrix[:9]]
    scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if scale0 == 0.0 or scale1 == 0.0:
        return IDENTITY
    rotation = -math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))  # av_display_rotation_get
    theta = -float(round(rotation))  # get_rotation: clockwise degrees, normalised to [0, 360)
    theta -= 360.0 * math.floor(theta / 360.0 + 0.9 / 360.0)
    rotation_deg = rotation + 0.0  # no -0.0
    if abs(theta - 90.0) < _ANGLE_TOLERANCE_DEG:
        transform = "transpose=cclock_flip" if m[3] > 0 else "transpose=clock"
    elif abs(theta - 180.0) < _ANGLE_TOLERANCE_DEG:
        transform = ",".join(op for op, on in (("hflip", m[0] < 0), ("vflip", m[4] < 0)) if on)
    elif abs(theta - 270.0) < _ANGLE_TOLERANCE_DEG:
        transform = "transpose=clock_flip" if m[3] < 0 else "transpose=cclock"
    elif abs(theta) > _ANGLE_TOLERANCE_DEG and abs(theta - 360.0) > _ANGLE_TOLERANCE_DEG:
        return Orientation(rotation_deg, "", unsupported=True)
    else:
        transform = "vflip" if m[4] < 0 else ""
    return Orientation(rotation_deg, transform)


def frame_orientation(frame: Any) -> Orientation:
    """The :class:`Orientation` of a decoded ``av.VideoFrame``, from its ``DISPLAYMATRIX`` side data.

    A frame without side data (or a stand-in without ``side_data``) has :data:`IDENTITY`.
    """
    side_data = getattr(frame, "side_data", None)
    if not side_data:
        return IDENTITY
    for entry in side_data:
        if getattr(getattr(entry, "type", None), "name", "") == "DISPLAYMATRIX":
            return orientation_from_matrix(np.frombuffer(bytes(entry), dtype="<i4"))
    return IDENTITY
