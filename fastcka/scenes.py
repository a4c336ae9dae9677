"""Deterministic synthetic scenes: coloured shapes on coloured backgrounds, with template captions.

Each scene is one shape (circle, square, triangle, diamond, star, cross) of one colour and size,
at one of nine positions (a 3 x 3 grid, jittered), on a plain background of another colour,
captioned from a template: ``"a large red circle at the top left on a blue background"``.  The
scene list depends only on ``(n, seed)``; rendering depends only on the scene and the image size,
so the same call gives byte-identical images on every machine (PIL drawing, no fonts).

This is the built-in data set of ``fastcka demo``: no download, no external data.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ._io import atomic_path
from .errors import InputError

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 220, 40),
    "purple": (140, 60, 180), "orange": (250, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20),
}
BACKGROUNDS = {
    "gray": (128, 128, 128), "white": (250, 250, 250), "black": (10, 10, 10), "blue": (60, 90, 200),
    "green": (60, 150, 70), "pink": (240, 170, 190),
}
SIZES = {"small": 0.09, "medium": 0.16, "large": 0.25}  # radius as a fraction of the image side
POSITIONS = {  # name -> (column, row) in a 3 x 3 grid
    "top left": (0, 0), "top": (1, 0), "top right": (2, 0),
    "left": (0, 1), "center": (1, 1), "right": (2, 1),
    "bottom left": (0, 2), "bottom": (1, 2), "bottom right": (2, 2),
}
#: distinct captions (the background never has the shape's colour name): the most scenes
MAX_SCENES = (len(SHAPES) * len(SIZES) * len(POSITIONS)
              * sum(len([b for b in BACKGROUNDS if b != c]) for c in COLORS))


@dataclass(frozen=True)
class Scene:
    """One synthetic scene: its attributes, its jitter and its caption."""

    id: str
    shape: str
    color: str
    size: str
    position: str
    background: str
    dx: float  # position jitter, fraction of a grid cell
    dy: float
    angle: float  # rotation in degrees (not said in the caption)

    @property
    def caption(self) -> str:
        if self.position == "center":
            where = "in the center"
        elif self.position in ("left", "right"):
            where = f"on the {self.position}"
        else:
            where = f"at the {self.position}"
        return f"a {self.size} {self.color} {self.shape} {where} on a {self.background} background"


def scene_specs(n: int = 1000, seed: int = 0) -> list[Scene]:
    """The first ``n`` scenes of the sequence seeded by ``seed`` (ids ``scene-00000.png``, ...).

    Attributes are drawn uniformly and independently, except that the background never has the
    shape's colour name, and a scene whose caption an earlier scene already has is drawn again:
    captions are unique, so every image has exactly one right caption (at most
    :data:`MAX_SCENES` scenes).  Complexity O(n) expected draws for n well below MAX_SCENES.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise InputError(f"n must be a positive integer, got {n!r}")
    if n > MAX_SCENES:
        raise InputError(f"n must be at most {MAX_SCENES} (the number of distinct captions), "
                         f"got {n}")
    rng = np.random.default_rng(seed)
    shapes, colors, sizes, pos = list(SHAPES), list(COLORS), list(SIZES), list(POSITIONS)
    bgs = list(BACKGROUNDS)
    out = []
    seen = set()
    width = max(5, len(str(n - 1)))
    while len(out) < n:
        color = colors[rng.integers(len(colors))]
        choices = [b for b in bgs if b != color]
        sc = Scene(
            id=f"scene-{len(out):0{width}d}.png", shape=shapes[rng.integers(len(shapes))],
            color=color, size=sizes[rng.integers(len(sizes))], position=pos[rng.integers(len(pos))],
            background=choices[rng.integers(len(choices))],
            dx=float(rng.uniform(-0.1, 0.1)), dy=float(rng.uniform(-0.1, 0.1)),
            angle=float(rng.uniform(-20, 20)))
        if sc.caption not in seen:
            seen.add(sc.caption)
            out.append(sc)
    return out


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        pts = [(x * r * 0.8, y * r * 0.8) for x, y in pts]
    elif shape == "triangle":
        pts = [(r * math.cos(math.radians(a)), r * math.sin(math.radians(a))) for a in (-90, 30, 150)]
    elif shape == "diamond":
        pts = [(0, -r), (r * 0.7, 0), (0, r), (-r * 0.7, 0)]
    elif shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.42
            a = math.radians(-90 + 36 * k)
            pts.append((rr * math.cos(a), rr * math.sin(a)))
    elif shape == "cross":
        w = r * 0.33
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w),
               (-r, w), (-r, -w), (-w, -w)]
    else:  # pragma: no cover - guarded by SHAPES
        raise InputError(f"unknown shape {shape!r}")
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def render_scene(scene: Scene, size: int = 224, supersample: int = 2):
    """Draw ``scene`` as an RGB ``PIL.Image`` of ``size`` x ``size`` pixels (anti-aliased)."""
    from PIL import Image, ImageDraw

    big = size * supersample
    img = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    col, row = POSITIONS[scene.position]
    cell = big / 3
    cx = (col + 0.5 + scene.dx) * cell
    cy = (row + 0.5 + scene.dy) * cell
    r = SIZES[scene.size] * big
    margin = r * 1.05  # keep the whole shape inside the image
    cx = min(max(cx, margin), big - margin)
    cy = min(max(cy, margin), big - margin)
    fill = COLORS[scene.color]
    if scene.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(_polygon(scene.shape, cx, cy, r, scene.angle), fill=fill)
    return img.resize((size, size), Image.LANCZOS) if supersample > 1 else img


def write_scenes(folder: str | Path, n: int = 1000, seed: int = 0, size: int = 224) -> list[Scene]:
    """Render ``n`` scenes to ``folder/images/*.png`` with ``folder/captions.csv`` (image,caption)
    and ``folder/scenes.csv`` (all attributes); every file is written atomically.

    Returns the scene list.  Time: about 1 ms per 224 px scene.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    scenes = scene_specs(n, seed)
    for sc in scenes:
        with atomic_path(folder / "images" / sc.id, suffix=".png") as tmp:
            render_scene(sc, size).save(tmp, format="PNG")
    with atomic_path(folder / "captions.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption"])
        w.writerows((sc.id, sc.caption) for sc in scenes)
    with atomic_path(folder / "scenes.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        fields = [*asdict(scenes[0]), "caption"]
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for sc in scenes:
            w.writerow({**asdict(sc), "caption": sc.caption})
    return scenes
