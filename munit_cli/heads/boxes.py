"""Box maths in photo pixels. A box is (left, top, right, bottom) floats, right/bottom
exclusive, like `heads/boxes.json`; a head window is a square that may reach past the photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

Box = tuple[float, float, float, float]


def area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def iou_tensor(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise IoU of (N, 4) and (N, 4) boxes -> (N,)."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    return inter / (area_a + area_b - inter).clamp(min=1e-9)


def centre_side(b: Box) -> tuple[float, float, float]:
    """(cx, cy, side) of a square box (side: the mean of width and height)."""
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, ((b[2] - b[0]) + (b[3] - b[1])) / 2


def from_centre(cx: float, cy: float, side: float) -> Box:
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def square(b: Box) -> Box:
    """The smallest square with the same centre that holds `b` (side = the longer side)."""
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    return from_centre(cx, cy, max(b[2] - b[0], b[3] - b[1]))


def scale(b: Box, factor: float) -> Box:
    """`b` grown (factor > 1) or shrunk about its centre: the --margin of a head window."""
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    hw, hh = (b[2] - b[0]) * factor / 2, (b[3] - b[1]) * factor / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def clip(b: Box, width: float, height: float) -> Box:
    """The part of `b` inside a width x height photo (may be empty: right <= left)."""
    return (min(max(b[0], 0.0), width), min(max(b[1], 0.0), height),
            max(min(b[2], width), 0.0), max(min(b[3], height), 0.0))


def fit_inside(b: Box, width: float, height: float) -> Box:
    """A square of `b`'s side moved the least to lie inside the photo, shrunk about its centre
    to the photo's shorter side first when it is larger: every pixel of it is a photo pixel."""
    cx, cy, side = centre_side(square(b))
    side = min(side, width, height)
    left = min(max(cx - side / 2, 0.0), width - side)
    top = min(max(cy - side / 2, 0.0), height - side)
    return (left, top, left + side, top + side)


def to_int(b: Box) -> tuple[int, int, int, int]:
    """Integer pixel edges; a square stays square (the side is rounded once)."""
    side = round((b[2] - b[0] + b[3] - b[1]) / 2)
    left, top = round(b[0]), round(b[1])
    if abs((b[2] - b[0]) - (b[3] - b[1])) > 1e-6:  # not a square: round each edge
        return (left, top, round(b[2]), round(b[3]))
    return (left, top, left + side, top + side)


@dataclass(frozen=True)
class Letterbox:
    """A photo resized to fit a side x side canvas, centred, the rest padded. Maps boxes
    between the photo's pixels and the canvas's."""

    side: int  # canvas side
    width: int  # photo size
    height: int
    new_w: int  # resized photo on the canvas
    new_h: int
    left: int  # where it is placed
    top: int

    @classmethod
    def fit(cls, width: int, height: int, side: int) -> "Letterbox":
        s = side / max(width, height)
        new_w, new_h = max(1, round(width * s)), max(1, round(height * s))
        return cls(side, width, height, new_w, new_h, (side - new_w) // 2, (side - new_h) // 2)

    def to_canvas(self, b: Box) -> Box:
        sx, sy = self.new_w / self.width, self.new_h / self.height
        return (b[0] * sx + self.left, b[1] * sy + self.top, b[2] * sx + self.left, b[3] * sy + self.top)

    def to_photo(self, b: Box) -> Box:
        sx, sy = self.new_w / self.width, self.new_h / self.height
        return ((b[0] - self.left) / sx, (b[1] - self.top) / sy, (b[2] - self.left) / sx, (b[3] - self.top) / sy)
