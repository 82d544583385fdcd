"""The ``video`` sink's overlay: pure OpenCV drawing of one frame's typed messages on its image.

Every function draws in place on a BGR uint8 image ``[h, w, 3]``, the decoded JPEG of a ``frame/``
message, and takes the typed messages (:mod:`engine.messages`) it draws. Keypoints and boxes come in
source-frame pixels (``pose/`` ``frame_width`` x ``frame_height``) and are mapped to image pixels by
``(x * w / frame_width, y * h / frame_height)`` (README, ``frame/`` row). Sizes (line widths, dot
radii, text) scale with the image, so a 1080p and a 360p frame look alike.

Colours (BGR, as OpenCV takes them):

* batter skeleton: :data:`LEFT_BGR` cyan for the batter's left side (``left_*`` keypoints and the
  limbs between them), :data:`RIGHT_BGR` magenta for the right side, :data:`CENTRE_BGR` yellow for
  the nose and the limbs crossing the body (shoulders, hips, face); dots are drawn over the limbs,
  so a keypoint's own colour sits at its position;
* other persons: faint grey boxes (``pose/`` carries only their boxes);
* batter box and ``#track_id`` tag: white;
* wrist trail (the wrist relative to the shoulder over the rolling fit window, anchored at the
  batter's current shoulder): white dots outlined in black, the rolling Legendre fit ``numpy.polynomial.Legendre(
  dx_coef, domain=[t_start_s, t_end_s])`` an orange curve outlined in black;
* 17x17 dependency-matrix inset (top right, OpenCV's viridis colour map over [0, 1]) and under it
  the pair-similarity gauge; the shot banner along the bottom.

Method: OpenCV drawing primitives (``cv2.line``, ``cv2.circle``, ``cv2.applyColorMap``;
docs.opencv.org, "Drawing Functions" and "ColorMaps in OpenCV"); skeleton edges
:data:`engine.types.COCO_SKELETON`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.polynomial import Legendre

from engine.messages import Fit, FrameImage, Pose, Similarity
from engine.types import COCO_KEYPOINT_NAMES, COCO_SKELETON, KEYPOINT_INDEX

#: Skeleton colours (BGR): the batter's left side, right side, and the nose / crossing limbs.
LEFT_BGR: tuple[int, int, int] = (255, 255, 0)
RIGHT_BGR: tuple[int, int, int] = (255, 0, 255)
CENTRE_BGR: tuple[int, int, int] = (0, 255, 255)
#: Batter box, others' boxes, trail and fit curve colours (BGR).
BATTER_BOX_BGR: tuple[int, int, int] = (255, 255, 255)
OTHER_BOX_BGR: tuple[int, int, int] = (200, 200, 200)
TRAIL_BGR: tuple[int, int, int] = (255, 255, 255)
FIT_BGR: tuple[int, int, int] = (0, 140, 255)
#: Opacity of the other persons' boxes, 0..1.
OTHER_ALPHA = 0.35
#: Keypoints below this confidence are not drawn (as the ``report`` sink's default).
MIN_KEYPOINT_CONF = 0.3
#: Pair shown by the gauge (a key of ``sim/`` ``pairs``).
GAUGE_PAIR = "left_wrist/left_shoulder"
#: Points the fit curve is evaluated at across its domain.
FIT_SAMPLES = 48

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def keypoint_bgr(k: int) -> tuple[int, int, int]:
    """Colour (BGR) of COCO keypoint ``k`` (0-based): :data:`LEFT_BGR`, :data:`RIGHT_BGR` or :data:`CENTRE_BGR`."""
    name = COCO_KEYPOINT_NAMES[k]
    return LEFT_BGR if name.startswith("left_") else RIGHT_BGR if name.startswith("right_") else CENTRE_BGR


def _edge_bgr(a: int, b: int) -> tuple[int, int, int]:
    colour_a, colour_b = keypoint_bgr(a), keypoint_bgr(b)
    return colour_a if colour_a == colour_b else CENTRE_BGR


@dataclass(frozen=True)
class Style:
    """Sizes for one image, pixels, from its shorter side ``min(h, w)`` (360 px: unit 1).

    Attributes:
        unit: Scale factor, >= 0.6.
        line: Limb and box line width, px.
        radius: Keypoint dot radius, px.
        font: OpenCV font scale of labels.
        text: Text stroke width, px.
    """

    unit: float
    line: int
    radius: int
    font: float
    text: int

    @classmethod
    def for_image(cls, image: np.ndarray) -> Style:
        """The style of a BGR image ``[h, w, 3]``."""
        unit = max(0.6, min(image.shape[:2]) / 360.0)
        return cls(unit, max(1, round(2 * unit)), max(3, round(4 * unit)), 0.45 * unit, max(1, round(unit)))


@dataclass(frozen=True)
class Layout:
    """Where the insets go in a ``w x h`` image: ``(x1, y1, x2, y2)`` pixel rectangles (x2, y2 exclusive).

    Attributes:
        matrix: The 17x17 dependency-matrix inset (top right); its cells shrink to fit a small image.
        gauge: The pair-similarity gauge (under the matrix).
        banner: The shot banner (bottom strip, full width).
        insets: Whether the matrix and gauge fit the image at all (at least 2 px per cell above the
            banner); a smaller image is drawn without them.
    """

    matrix: tuple[int, int, int, int]
    gauge: tuple[int, int, int, int]
    banner: tuple[int, int, int, int]
    insets: bool = True

    @classmethod
    def for_image(cls, image: np.ndarray, style: Style) -> Layout:
        """The layout of a BGR image ``[h, w, 3]`` drawn with ``style``."""
        h, w = image.shape[:2]
        margin = max(4, round(8 * style.unit))
        x2, y1 = w - margin, margin + round(16 * style.unit)  # room for the title above
        banner_h = max(18, round(40 * style.unit))
        gauge_gap, gauge_h = round(18 * style.unit), max(6, round(10 * style.unit))
        # cells of 4.5 units, fewer pixels when the image is too small for that (never past the banner)
        room = min(x2 - margin, h - banner_h - y1 - gauge_gap - gauge_h - margin)
        cell = min(max(3, round(4.5 * style.unit)), room // 17)
        side = 17 * max(cell, 0)
        matrix = (x2 - side, y1, x2, y1 + side)
        gauge_top = matrix[3] + gauge_gap
        gauge = (matrix[0], gauge_top, x2, gauge_top + gauge_h)
        return cls(matrix=matrix, gauge=gauge, banner=(0, max(0, h - banner_h), w, h), insets=cell >= 2)


def frame_scale(pose_size: tuple[int, int], image: np.ndarray) -> tuple[float, float]:
    """``(sx, sy)`` mapping source-frame pixels of size ``(width, height)`` to the image's pixels."""
    width, height = pose_size
    return image.shape[1] / width, image.shape[0] / height


def _to_image(points_xy: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Source-frame pixels, float ``[..., 2]``, -> int32 image pixels (OpenCV's integer coordinates)."""
    return np.rint(points_xy * np.asarray(scale)).astype(np.int32)


def _label(
    image: np.ndarray, text: str, org: tuple[int, int], style: Style, bgr: tuple[int, int, int], right: bool = False
) -> None:
    """``text`` with its baseline at ``org`` on a dark tag, so it reads over any footage.

    ``org`` is the text's left end, or its right end with ``right`` (labels of the right-hand insets).
    """
    (tw, th), base = cv2.getTextSize(text, _FONT, style.font, style.text)
    x, y = org
    if right:
        x -= tw
    cv2.rectangle(image, (x - 2, y - th - 3), (x + tw + 2, y + base), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (x, y), _FONT, style.font, bgr, style.text, cv2.LINE_AA)


def batter_index(pose: Pose) -> int | None:
    """Index in ``persons_xyxy`` of the batter (its track id, else its box), or ``None``."""
    if not pose.batter_found or len(pose.persons_xyxy) == 0:
        return None
    if pose.track_id is not None:
        hits = np.flatnonzero(pose.persons_track_id == pose.track_id)
        if len(hits):
            return int(hits[0])
    if pose.xyxy is None:
        return None
    distance = np.abs(pose.persons_xyxy - pose.xyxy).sum(axis=1)
    return int(np.argmin(distance))


def draw_others(image: np.ndarray, pose: Pose, style: Style) -> None:
    """Every person's box but the batter's, faint grey (:data:`OTHER_ALPHA`)."""
    skip = batter_index(pose)
    boxes = [box for i, box in enumerate(pose.persons_xyxy) if i != skip]
    if not boxes:
        return
    scale = frame_scale((pose.frame_width, pose.frame_height), image)
    overlay = image.copy()
    for box in _to_image(np.asarray(boxes).reshape(-1, 2, 2), scale):
        cv2.rectangle(overlay, tuple(box[0]), tuple(box[1]), OTHER_BOX_BGR, style.line)
    cv2.addWeighted(overlay, OTHER_ALPHA, image, 1 - OTHER_ALPHA, 0, dst=image)


def batter_sizes(pose: Pose, image: np.ndarray, style: Style) -> tuple[int, int]:
    """``(line, radius)`` in image pixels for the batter's skeleton: from the box height, capped by ``style``.

    A small batter (far from the camera) gets thin limbs and small dots (box height / 45, at least
    2 px), so the skeleton does not hide the body; a large one gets ``style.line``, ``style.radius``.
    """
    if pose.xyxy is None:
        return style.line, style.radius
    box_h = float(pose.xyxy[3] - pose.xyxy[1]) * image.shape[0] / pose.frame_height
    radius = int(np.clip(round(box_h / 45), 2, style.radius))
    line = int(np.clip(round(box_h / 90), 1, style.line))
    return line, radius


def draw_batter(image: np.ndarray, pose: Pose, style: Style, min_conf: float = MIN_KEYPOINT_CONF) -> None:
    """The batter's box with its ``#track_id`` tag, then the skeleton (limbs, then keypoint dots).

    Keypoints with ``keypoints_conf < min_conf`` and the limbs touching them are left out; sizes
    from :func:`batter_sizes`. Nothing is drawn when ``pose.batter_found`` is false.
    """
    if not pose.batter_found or pose.xyxy is None or pose.keypoints_xy is None or pose.keypoints_conf is None:
        return
    scale = frame_scale((pose.frame_width, pose.frame_height), image)
    (x1, y1), (x2, y2) = _to_image(pose.xyxy.reshape(2, 2), scale)
    cv2.rectangle(image, (int(x1), int(y1)), (int(x2), int(y2)), BATTER_BOX_BGR, style.line)
    tag = "batter" if pose.track_id is None else f"batter #{pose.track_id}"
    _label(image, tag, (int(x1), max(int(y1) - 4, 12)), style, BATTER_BOX_BGR)
    line, radius = batter_sizes(pose, image, style)
    points = _to_image(pose.keypoints_xy, scale)
    visible = pose.keypoints_conf >= min_conf
    for a, b in COCO_SKELETON:
        if visible[a] and visible[b]:
            cv2.line(image, tuple(points[a]), tuple(points[b]), _edge_bgr(a, b), line, cv2.LINE_AA)
    for k in np.flatnonzero(visible):
        cv2.circle(image, tuple(points[k]), radius + 1, (0, 0, 0), cv2.FILLED, cv2.LINE_AA)
        cv2.circle(image, tuple(points[k]), radius, keypoint_bgr(int(k)), cv2.FILLED, cv2.LINE_AA)


def draw_trail(image: np.ndarray, pose: Pose, fit: Fit, trail: np.ndarray, style: Style) -> None:
    """The wrist's recent path relative to the shoulder, and the rolling fit, anchored at the shoulder.

    Each offset ``(dx, dy)`` (wrist - shoulder, frame widths / heights; ``fit/``) is drawn at the
    batter's current ``fit.shoulder`` keypoint plus ``(dx * frame_width, dy * frame_height)``, so
    the newest point sits on the wrist and older ones show where the wrist was relative to the body.

    Args:
        image: BGR uint8 ``[h, w, 3]``, drawn in place.
        pose: This frame's ``pose/`` (its shoulder is the anchor; nothing drawn without a batter).
        fit: This frame's ``fit/``: the curve is ``Legendre(dx_coef, domain=[t_start_s, t_end_s])``
            and the same for ``dy``, sampled at :data:`FIT_SAMPLES` times.
        trail: float64 ``[T, 2]`` the ``(dx, dy)`` of the ``fit/`` messages in the window, oldest first.
        style: Sizes.
    """
    if pose.keypoints_xy is None:
        return
    shoulder = pose.keypoints_xy[KEYPOINT_INDEX[fit.shoulder]].astype(np.float64)
    frame_size = np.array([pose.frame_width, pose.frame_height], np.float64)
    scale = frame_scale((pose.frame_width, pose.frame_height), image)
    if fit.t_end_s > fit.t_start_s:
        t = np.linspace(fit.t_start_s, fit.t_end_s, FIT_SAMPLES)
        domain = [fit.t_start_s, fit.t_end_s]
        curve = np.stack([Legendre(fit.dx_coef, domain=domain)(t), Legendre(fit.dy_coef, domain=domain)(t)], axis=1)
        curve_px = _to_image(shoulder + curve * frame_size, scale)
        line = batter_sizes(pose, image, style)[0] + 1
        cv2.polylines(image, [curve_px.reshape(-1, 1, 2)], False, (0, 0, 0), line + 2, cv2.LINE_AA)
        cv2.polylines(image, [curve_px.reshape(-1, 1, 2)], False, FIT_BGR, line, cv2.LINE_AA)
    points = _to_image(shoulder + trail * frame_size, scale)
    radius = max(2, batter_sizes(pose, image, style)[1] // 2)
    for point in points:
        cv2.circle(image, tuple(point), radius + 1, (0, 0, 0), cv2.FILLED, cv2.LINE_AA)
        cv2.circle(image, tuple(point), radius, TRAIL_BGR, cv2.FILLED, cv2.LINE_AA)


def draw_matrix(image: np.ndarray, sim: Similarity, layout: Layout, style: Style) -> None:
    """The rolling 17x17 dependency matrix (``window_mean``, values in [0, 1]) as a viridis inset."""
    x1, y1, x2, y2 = layout.matrix
    values = np.clip(np.nan_to_num(sim.window_mean, nan=0.0), 0.0, 1.0)
    cells = cv2.applyColorMap(np.rint(values * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    image[y1:y2, x1:x2] = cv2.resize(cells, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
    cv2.rectangle(image, (x1 - 1, y1 - 1), (x2, y2), (255, 255, 255), 1)
    _label(image, f"dependency {sim.window_s:g}s", (x2, y1 - 4), style, (255, 255, 255), right=True)


def draw_gauge(image: np.ndarray, sim: Similarity, layout: Layout, style: Style, pair: str = GAUGE_PAIR) -> None:
    """A horizontal bar of ``sim.pairs[pair]`` (cosine similarity, [0, 1]) with its value; grey without it."""
    x1, y1, x2, y2 = layout.gauge
    value = sim.pairs.get(pair)
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (60, 60, 60), cv2.FILLED)
    text = "L wrist/shoulder -"
    if value is not None and np.isfinite(value):
        fraction = float(np.clip(value, 0.0, 1.0))
        bgr = cv2.applyColorMap(np.array([[round(fraction * 255)]], np.uint8), cv2.COLORMAP_VIRIDIS)[0, 0]
        cv2.rectangle(image, (x1, y1), (x1 + round(fraction * (x2 - x1 - 1)), y2 - 1), tuple(int(c) for c in bgr),
                      cv2.FILLED)
        text = f"L wrist/shoulder {value:.2f}"
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (255, 255, 255), 1)
    _label(image, text, (x2, y1 - 4), style, (255, 255, 255), right=True)


def draw_banner(image: np.ndarray, text: str, layout: Layout, style: Style) -> None:
    """``text`` (the shot's label and confidence) on a dark half-transparent strip along the bottom."""
    x1, y1, x2, y2 = layout.banner
    strip = image[y1:y2, x1:x2]
    strip[:] = (strip * 0.35).astype(np.uint8)
    font = style.font * 1.6
    thickness = max(1, round(style.text * 1.5))
    (tw, th), _ = cv2.getTextSize(text, _FONT, font, thickness)
    org = (max(4, (x2 - x1 - tw) // 2), y1 + (y2 - y1 + th) // 2)
    cv2.putText(image, text, org, _FONT, font, (255, 255, 255), thickness, cv2.LINE_AA)


def draw_clock(image: np.ndarray, frame_index: int, pts_s: float, style: Style) -> None:
    """``frame_index`` and ``pts_s`` (seconds) in the top-left corner."""
    _label(image, f"#{frame_index}  {pts_s:.3f} s", (6, 6 + round(14 * style.unit)), style, (255, 255, 255))


@dataclass(frozen=True)
class FrameOverlay:
    """What is drawn on one frame besides the image itself.

    Attributes:
        pose: The frame's ``pose/`` or ``None`` (the frame is drawn plain, with its clock).
        sim: The latest ``sim/`` of the source (matrix inset and gauge), or ``None``.
        fit: The frame's ``fit/`` (trail and fit curve), or ``None``.
        trail: float64 ``[T, 2]`` wrist - shoulder offsets ``(dx, dy)`` in the fit window, oldest first.
        banner: Text of the shot banner, or ``None``.
    """

    pose: Pose | None = None
    sim: Similarity | None = None
    fit: Fit | None = None
    trail: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    banner: str | None = None


def decode_jpeg(frame: FrameImage) -> np.ndarray:
    """The BGR uint8 image ``[height, width, 3]`` of a ``frame/`` message (``cv2.imdecode``).

    Raises:
        ValueError: the bytes are not a decodable image.
    """
    image = cv2.imdecode(frame.jpeg, cv2.IMREAD_COLOR)
    if image is None:
        msg = f"frame {frame.frame_index} of {frame.source_id!r}: JPEG of {len(frame.jpeg)} bytes does not decode"
        raise ValueError(msg)
    return image


def annotate(image: np.ndarray, frame: FrameImage, overlay: FrameOverlay) -> np.ndarray:
    """Draw everything on ``image`` (BGR uint8 ``[h, w, 3]``, the decoded ``frame``) in place; return it.

    Order, bottom to top: other persons, wrist trail and fit, batter box and skeleton, matrix inset
    and gauge, shot banner, clock.
    """
    style = Style.for_image(image)
    layout = Layout.for_image(image, style)
    pose = overlay.pose
    if pose is not None:
        draw_others(image, pose, style)
        if overlay.fit is not None:
            draw_trail(image, pose, overlay.fit, overlay.trail, style)
        draw_batter(image, pose, style)
    if overlay.sim is not None and layout.insets:
        draw_matrix(image, overlay.sim, layout, style)
        draw_gauge(image, overlay.sim, layout, style)
    if overlay.banner:
        draw_banner(image, overlay.banner, layout, style)
    draw_clock(image, frame.frame_index or 0, frame.pts_s or 0.0, style)
    return image
