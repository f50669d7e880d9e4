"""The built-in procedural dataset: facade scenes with the 12 CMP classes, instances and photos.

A scene is a list of labelled rectangles (:class:`Part`) in fractions of the image side, painted in
order so that later parts occlude earlier ones. From it come, in this order:

layout -> label + instance maps -> albedo (one random material per instance) -> lighting -> rain.

Every instance gets its own material drawn from a class-dependent range, so labels -> photo is
one-to-many as in the CMP facades. Each scene ``i`` is drawn from ``np.random.default_rng([seed, i])``
(dusk and rain from their own streams), so a scene does not depend on ``count`` and the output is
byte-identical for the same seed and size.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pixforge.data.palette import FACADE_CLASSES, ids_to_colors
from pixforge.errors import PixforgeError

BACKGROUND, FACADE, WINDOW, DOOR, CORNICE, SILL, BALCONY, BLIND, DECO, MOLDING, PILLAR, SHOP = range(1, 13)
STUFF_CLASSES = (BACKGROUND, FACADE)
"""Classes without instances: their instance id is the class id. Every other class is a thing
with instance id ``class * 1000 + k`` (Cityscapes style)."""

Box = tuple[float, float, float, float]
Texture = Callable[[np.random.Generator, int, int, float], np.ndarray]


@dataclass(frozen=True)
class Part:
    """One labelled rectangle: CMP class id, box (y0, y1, x0, x1) in fractions of the side, material kind."""

    cls: int
    box: Box
    kind: str = ""


@dataclass
class Scene:
    """A rendered scene: label ids 1..12, instance ids, day photo, dusk photo and rainy photo (uint8)."""

    labels: np.ndarray
    instances: np.ndarray
    photo: np.ndarray
    dusk: np.ndarray
    rainy: np.ndarray


@dataclass(frozen=True)
class _Grid:
    """Facade geometry: body box, ground-floor top, upper floor tops, window columns and window size."""

    top: float
    bottom: float
    left: float
    right: float
    ground_top: float
    floor_tops: tuple[float, ...]
    floor_h: float
    columns: tuple[float, ...]
    pitch: float
    win_w: float
    win_h: float
    win_off: float


# ---------------------------------------------------------------------------------------------- layout


def _frame(rng: np.random.Generator) -> tuple[list[Part], tuple[float, float, float, float]]:
    """Sky over the whole image, optional neighbouring buildings and street, and the facade body."""
    top = rng.uniform(0.03, 0.18)
    left = rng.uniform(0.02, 0.1) if rng.random() < 0.4 else 0.0
    right = 1.0 - (rng.uniform(0.02, 0.1) if rng.random() < 0.4 else 0.0)
    bottom = 1.0 - (rng.uniform(0.02, 0.06) if rng.random() < 0.3 else 0.0)
    parts = [Part(BACKGROUND, (0.0, 1.0, 0.0, 1.0), "sky")]
    if left > 0:
        parts.append(Part(BACKGROUND, (rng.uniform(top, 0.5), 1.0, 0.0, left), "neighbour"))
    if right < 1:
        parts.append(Part(BACKGROUND, (rng.uniform(top, 0.5), 1.0, right, 1.0), "neighbour"))
    if bottom < 1:
        parts.append(Part(BACKGROUND, (bottom, 1.0, 0.0, 1.0), "ground"))
    parts.append(Part(FACADE, (top, bottom, left, right)))
    return parts, (top, bottom, left, right)


def _grid(rng: np.random.Generator, body: tuple[float, float, float, float]) -> _Grid:
    """Floors (a taller ground floor plus 2-4 upper floors) and 2-5 evenly spaced window columns."""
    top, bottom, left, right = body
    height, width = bottom - top, right - left
    ground_top = bottom - height * rng.uniform(0.18, 0.28)
    n_upper = int(rng.integers(2, 5))
    roof = top + height * rng.uniform(0.02, 0.06)
    floor_h = (ground_top - roof) / n_upper
    n_cols = int(rng.integers(2, 6))
    margin = width * rng.uniform(0.0, 0.08)
    pitch = (width - 2 * margin) / n_cols
    columns = tuple(left + margin + pitch * (c + 0.5) for c in range(n_cols))
    return _Grid(
        top=top,
        bottom=bottom,
        left=left,
        right=right,
        ground_top=ground_top,
        floor_tops=tuple(roof + floor_h * f for f in range(n_upper)),
        floor_h=floor_h,
        columns=columns,
        pitch=pitch,
        win_w=pitch * rng.uniform(0.35, 0.6),
        win_h=floor_h * rng.uniform(0.45, 0.68),
        win_off=floor_h * rng.uniform(0.15, 0.28),
    )


def _bands(rng: np.random.Generator, g: _Grid) -> list[Part]:
    """Molding bands between floors and the main cornice under the roof line."""
    parts = []
    if rng.random() < 0.85:
        h = g.floor_h * rng.uniform(0.1, 0.25)
        parts.append(Part(MOLDING, (g.ground_top - h, g.ground_top, g.left, g.right)))
    for y in g.floor_tops[1:]:
        if rng.random() < 0.3:
            h = g.floor_h * rng.uniform(0.06, 0.12)
            parts.append(Part(MOLDING, (y - h, y, g.left, g.right)))
    if rng.random() < 0.7:
        h = g.floor_h * rng.uniform(0.08, 0.16)
        parts.append(Part(CORNICE, (g.top, g.top + h, g.left, g.right)))
    return parts


def _pillars(rng: np.random.Generator, g: _Grid) -> list[Part]:
    """Pilasters between the window columns, over the upper floors or the full height."""
    if rng.random() > 0.5:
        return []
    w = g.pitch * rng.uniform(0.07, 0.14)
    y0 = g.floor_tops[0] if rng.random() < 0.6 else g.top
    y1 = g.ground_top if rng.random() < 0.7 else g.bottom
    xs = [c - g.pitch / 2 for c in g.columns] + [g.columns[-1] + g.pitch / 2]
    return [Part(PILLAR, (y0, y1, x - w / 2, x + w / 2)) for x in xs]


def _window_box(g: _Grid, floor_top: float, x: float) -> Box:
    y0 = floor_top + g.win_off
    return (y0, y0 + g.win_h, x - g.win_w / 2, x + g.win_w / 2)


def _blinds(rng: np.random.Generator, style: str, box: Box) -> list[Part]:
    """Shutters beside a window or a roller blind over its upper part."""
    y0, y1, x0, x1 = box
    w = x1 - x0
    if style == "shutters":
        s = w * 0.4
        return [Part(BLIND, (y0, y1, x0 - s, x0)), Part(BLIND, (y0, y1, x1, x1 + s))]
    return [Part(BLIND, (y0, y0 + (y1 - y0) * rng.uniform(0.2, 0.6), x0, x1))]


def _deco(rng: np.random.Generator, style: str, g: _Grid, box: Box, cornice_h: float) -> list[Part]:
    """Ornaments: a pediment over the cornice, a keystone, or a medallion beside the window."""
    y0, y1, x0, x1 = box
    w = x1 - x0
    if style == "pediment":
        h = g.floor_h * rng.uniform(0.06, 0.1)
        top = y0 - cornice_h
        return [Part(DECO, (top - h, top, x0 + w * 0.1, x1 - w * 0.1))]
    if style == "keystone":
        return [Part(DECO, (y0 - g.floor_h * 0.08, y0 + g.win_h * 0.12, x0 + w * 0.4, x1 - w * 0.4))]
    s = min(g.pitch - w, g.floor_h) * 0.25
    cx, cy = x1 + (g.pitch - w) / 2, (y0 + y1) / 2
    return [Part(DECO, (cy - s / 2, cy + s / 2, cx - s / 2, cx + s / 2))]


def _windows(rng: np.random.Generator, g: _Grid) -> list[Part]:
    """Windows on every upper floor with their sills, cornices, blinds, ornaments and balconies."""
    blind_style = ["none", "shutters", "roller"][int(rng.integers(3))]
    has_sill, has_cornice = rng.random() < 0.9, rng.random() < 0.7
    deco_style = ["none", "pediment", "keystone", "medallion"][int(rng.integers(4))]
    deco_columns = g.columns[:-1] if deco_style == "medallion" else g.columns
    deco_floors = set(rng.choice(len(g.floor_tops), size=int(rng.integers(1, 3)), replace=True).tolist())
    cornice_h = g.floor_h * rng.uniform(0.04, 0.08)
    sill_h = g.floor_h * rng.uniform(0.03, 0.06)
    ext = g.win_w * rng.uniform(0.05, 0.2)
    layers: dict[int, list[Part]] = {c: [] for c in (WINDOW, BLIND, SILL, CORNICE, DECO, BALCONY)}
    for f, floor_top in enumerate(g.floor_tops):
        balcony = ["none", "none", "each", "across"][int(rng.integers(4))] if f > 0 else "none"
        for x in g.columns:
            box = _window_box(g, floor_top, x)
            y0, y1, x0, x1 = box
            layers[WINDOW].append(Part(WINDOW, box))
            if blind_style != "none" and rng.random() < 0.6:
                layers[BLIND] += _blinds(rng, blind_style, box)
            if has_sill:
                layers[SILL].append(Part(SILL, (y1, y1 + sill_h, x0 - ext, x1 + ext)))
            if has_cornice:
                layers[CORNICE].append(Part(CORNICE, (y0 - cornice_h, y0, x0 - ext, x1 + ext)))
            if deco_style != "none" and f in deco_floors and x in deco_columns:
                layers[DECO] += _deco(rng, deco_style, g, box, cornice_h if has_cornice else 0.0)
            if balcony == "each":
                w = g.win_w * 0.25
                layers[BALCONY].append(Part(BALCONY, (y1 - g.win_h * 0.35, y1 + sill_h, x0 - w, x1 + w)))
        if balcony == "across":
            y1 = floor_top + g.win_off + g.win_h
            span = (g.columns[0] - g.pitch * 0.45, g.columns[-1] + g.pitch * 0.45)
            layers[BALCONY].append(Part(BALCONY, (y1 - g.win_h * 0.35, y1 + sill_h, *span)))
    return [p for parts in layers.values() for p in parts]


def _ground_floor(rng: np.random.Generator, g: _Grid) -> list[Part]:
    """A door in one column; shop fronts or windows in the others."""
    parts = []
    gh = g.bottom - g.ground_top
    door_col = int(rng.integers(len(g.columns))) if rng.random() < 0.9 else -1
    shop = rng.random() < 0.65
    shop_top = g.ground_top + gh * rng.uniform(0.1, 0.3)
    for c, x in enumerate(g.columns):
        if c == door_col:
            w = g.pitch * rng.uniform(0.3, 0.5)
            parts.append(Part(DOOR, (g.bottom - gh * rng.uniform(0.6, 0.85), g.bottom, x - w / 2, x + w / 2)))
        elif shop:
            w = g.pitch * rng.uniform(0.7, 0.92)
            parts.append(Part(SHOP, (shop_top, g.bottom, x - w / 2, x + w / 2)))
        else:
            y0 = g.ground_top + gh * 0.25
            parts.append(Part(WINDOW, (y0, y0 + gh * 0.5, x - g.win_w / 2, x + g.win_w / 2)))
    return parts


def layout(rng: np.random.Generator) -> list[Part]:
    """A random facade scene as labelled rectangles in paint order (later parts occlude earlier)."""
    parts, body = _frame(rng)
    g = _grid(rng, body)
    return parts + _bands(rng, g) + _pillars(rng, g) + _windows(rng, g) + _ground_floor(rng, g)


# ------------------------------------------------------------------------------------- label + instance


def _pixel_box(box: Box, size: int) -> tuple[int, int, int, int]:
    """Fractions -> pixel slice bounds, at least one pixel wide and high, clipped to the image."""
    y0, y1, x0, x1 = (int(round(v * size)) for v in box)
    y0, x0 = min(max(y0, 0), size - 1), min(max(x0, 0), size - 1)
    return y0, min(max(y1, y0 + 1), size), x0, min(max(x1, x0 + 1), size)


def rasterize(parts: list[Part], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Paint the parts: (size, size) int32 map of the visible part index, and uint8 label ids 1..12."""
    part_map = np.zeros((size, size), dtype=np.int32)
    for idx, part in enumerate(parts):
        y0, y1, x0, x1 = _pixel_box(part.box, size)
        part_map[y0:y1, x0:x1] = idx
    classes = np.array([p.cls for p in parts], dtype=np.uint8)
    return part_map, classes[part_map]


def instance_ids(parts: list[Part], part_map: np.ndarray) -> np.ndarray:
    """Cityscapes-style ids: class for stuff, class*1000 + k for things (k counts visible instances)."""
    lut = np.zeros(len(parts), dtype=np.int32)
    seen: Counter[int] = Counter()
    for idx in np.unique(part_map).tolist():
        cls = parts[idx].cls
        if cls in STUFF_CLASSES:
            lut[idx] = cls
        else:
            lut[idx] = cls * 1000 + seen[cls]
            seen[cls] += 1
    return lut[part_map]


# ------------------------------------------------------------------------------------------ materials


def _pick(rng: np.random.Generator, anchors: list[tuple[float, float, float]], jitter: float) -> np.ndarray:
    """A base colour: one of the anchors, jittered per channel and in brightness."""
    base = np.array(anchors[int(rng.integers(len(anchors)))], dtype=np.float32)
    colour = base * rng.uniform(0.85, 1.15) + rng.uniform(-jitter, jitter, 3)
    return np.clip(colour, 0.0, 1.0).astype(np.float32)


def _noise(rng: np.random.Generator, h: int, w: int, amp: float) -> np.ndarray:
    """Grey per-pixel noise, (h, w, 1)."""
    return (rng.standard_normal((h, w, 1)) * amp).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Bilinearly interpolated value noise in [-1, 1] with a feature size of ``cell`` pixels, (h, w, 1)."""
    cell = max(cell, 1.0)
    coarse = rng.uniform(-1, 1, (int(h / cell) + 2, int(w / cell) + 2)).astype(np.float32)
    ys, xs = np.arange(h) / cell, np.arange(w) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy)[..., None].astype(np.float32)


def _fill(colour: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.broadcast_to(colour, (h, w, 3)).astype(np.float32)


def _frame_border(tex: np.ndarray, colour: np.ndarray, width: int) -> None:
    """Paint a border of ``width`` pixels in place (window and door frames)."""
    h, w = tex.shape[:2]
    if h > 2 * width and w > 2 * width:
        tex[:width], tex[-width:], tex[:, :width], tex[:, -width:] = colour, colour, colour, colour


def _sky(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    clear = rng.random() < 0.7
    zenith = _pick(rng, [(0.35, 0.55, 0.85), (0.5, 0.65, 0.9)] if clear else [(0.7, 0.72, 0.76)], 0.05)
    horizon = np.clip(zenith + rng.uniform(0.15, 0.3), 0, 1)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None] ** 0.7
    clouds = np.clip(_smooth_noise(rng, h, w, 12 * unit), 0, 1) * rng.uniform(0.1, 0.35)
    return zenith * (1 - t) + horizon * t + clouds


def _neighbour(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    colour = _pick(rng, [(0.55, 0.5, 0.45), (0.45, 0.45, 0.48), (0.7, 0.62, 0.5)], 0.06)
    return _fill(colour, h, w) + _smooth_noise(rng, h, w, 6 * unit) * 0.06 + _noise(rng, h, w, 0.02)


def _ground(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    colour = _pick(rng, [(0.35, 0.35, 0.36), (0.5, 0.48, 0.45)], 0.04)
    return _fill(colour, h, w) + _noise(rng, h, w, 0.04)


def _facade(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    """Plaster with stains, or brick / ashlar courses with mortar joints."""
    plaster = [(0.86, 0.8, 0.68), (0.74, 0.72, 0.68), (0.9, 0.84, 0.58), (0.7, 0.77, 0.8), (0.85, 0.7, 0.72)]
    colour = _pick(rng, plaster + [(0.82, 0.58, 0.46), (0.62, 0.32, 0.24)], 0.05)
    tex = _fill(colour, h, w) + _smooth_noise(rng, h, w, 8 * unit) * rng.uniform(0.02, 0.08)
    style = int(rng.integers(3))
    if style > 0:
        course = max(2, int(round((2 if style == 1 else 5) * unit * rng.uniform(0.8, 1.3))))
        block = course * (2 if style == 1 else 3)
        yy, xx = np.mgrid[0:h, 0:w]
        row = yy // course
        joint = (yy % course == 0) | ((xx + (row % 2) * block // 2) % block == 0)
        mortar = rng.uniform(-0.18, 0.12)
        tex = tex + joint[..., None] * mortar
    return tex + _noise(rng, h, w, 0.02)


def _window(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    """Glass with a sky reflection, mullions and a frame; sometimes curtains."""
    glass = _pick(rng, [(0.12, 0.15, 0.2), (0.25, 0.3, 0.38), (0.35, 0.4, 0.45), (0.2, 0.2, 0.18)], 0.05)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sheen = ((xx / max(w, 1) - yy / max(h, 1) + rng.uniform(-0.5, 0.5)) > 0) * rng.uniform(0.0, 0.15)
    tex = _fill(glass, h, w) + sheen[..., None] + _noise(rng, h, w, 0.02)
    if rng.random() < 0.3:
        curtain = _pick(rng, [(0.85, 0.82, 0.75), (0.6, 0.3, 0.25)], 0.05)
        cw = int(w * rng.uniform(0.15, 0.35))
        tex[:, :cw], tex[:, w - cw :] = curtain, curtain
    fw = max(1, int(round(unit)))
    frame = _pick(rng, [(0.92, 0.92, 0.9), (0.35, 0.22, 0.15), (0.2, 0.2, 0.2)], 0.04)
    if w > 4 * fw:
        tex[:, w // 2 - fw // 2 : w // 2 - fw // 2 + fw] = frame
    if h > 5 * fw and rng.random() < 0.6:
        tex[h // 3 : h // 3 + fw] = frame
    _frame_border(tex, frame, fw)
    return tex


def _door(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    """Wooden or painted door with grain, recessed panels and a frame."""
    wood = _pick(rng, [(0.4, 0.25, 0.15), (0.25, 0.15, 0.1), (0.15, 0.28, 0.2), (0.5, 0.5, 0.52)], 0.05)
    grain = np.broadcast_to(rng.standard_normal((1, w, 1)) * 0.04, (h, w, 1))
    tex = _fill(wood, h, w) + grain
    m = max(1, int(round(2 * unit)))
    if h > 6 * m and w > 4 * m:
        tex[m : h // 2 - m // 2, m:-m] *= 0.8
        tex[h // 2 + m // 2 : -m, m:-m] *= 0.8
    _frame_border(tex, wood * 0.6, max(1, int(round(unit))))
    return tex


def _stone(rng: np.random.Generator) -> np.ndarray:
    return _pick(rng, [(0.9, 0.88, 0.82), (0.72, 0.7, 0.66), (0.82, 0.75, 0.62), (0.6, 0.55, 0.5)], 0.05)


def _cornice(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    """Stone profile: lit top, darker underside, optional dentils."""
    t = np.linspace(1.1, 0.7, h, dtype=np.float32)[:, None, None]
    tex = _fill(_stone(rng), h, w) * t
    if h >= 3 and rng.random() < 0.5:
        period = max(2, int(round(2 * unit)))
        dentils = (np.arange(w) % period) < period // 2
        tex[-max(1, h // 3) :, dentils] *= 0.75
    return tex + _noise(rng, h, w, 0.015)


def _sill(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    tex = _fill(_stone(rng), h, w) * 1.05
    tex[-1:] *= 0.75
    return tex + _noise(rng, h, w, 0.015)


def _balcony(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    """Metal railing (bars over a dark gap) or a stone balustrade."""
    yy, xx = np.mgrid[0:h, 0:w]
    period = max(2, int(round(rng.uniform(1.5, 3.5) * unit)))
    bars = (xx % period) < max(1, period // 2)
    rail = yy < max(1, int(round(unit)))
    if rng.random() < 0.6:
        metal = _pick(rng, [(0.1, 0.1, 0.1), (0.3, 0.25, 0.2), (0.2, 0.3, 0.25)], 0.04)
        gap = _pick(rng, [(0.3, 0.28, 0.26), (0.15, 0.15, 0.18)], 0.04)
        tex = np.where((bars | rail)[..., None], metal, gap)
    else:
        stone = _stone(rng)
        tex = np.where((bars | rail)[..., None], stone, stone * 0.6)
    return tex.astype(np.float32) + _noise(rng, h, w, 0.015)


def _blind(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    """Shutter or roller blind with horizontal slats."""
    colour = _pick(rng, [(0.2, 0.42, 0.25), (0.55, 0.35, 0.2), (0.88, 0.87, 0.82), (0.45, 0.45, 0.48)], 0.05)
    period = max(2, int(round(rng.uniform(1, 2) * unit)) + 1)
    slats = 1.0 - 0.25 * ((np.arange(h) % period) == 0)
    return _fill(colour, h, w) * slats[:, None, None].astype(np.float32) + _noise(rng, h, w, 0.015)


def _deco_texture(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    """Carved ornament: stone with relief and a dark outline."""
    tex = _fill(_stone(rng), h, w) * (1 + _smooth_noise(rng, h, w, 1.5 * unit) * 0.2)
    _frame_border(tex, tex.mean(axis=(0, 1)) * 0.7, 1)
    return tex


def _molding(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    """Horizontal band with grooves."""
    tex = _fill(_stone(rng) * rng.uniform(0.85, 1.05), h, w)
    if h >= 3:
        tex[h // 3] *= 0.7
        tex[-1] *= 0.8
    return tex + _noise(rng, h, w, 0.015)


def _pillar(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    """Round shading across the shaft and vertical flutes."""
    x = (np.arange(w, dtype=np.float32) + 0.5) / w
    shade = 0.75 + 0.3 * np.cos(np.pi * (x - rng.uniform(0.3, 0.6)))
    flutes = 1.0 - 0.12 * ((np.arange(w) % max(2, int(round(2 * unit)))) == 0)
    return _fill(_stone(rng), h, w) * (shade * flutes)[None, :, None] + _noise(rng, h, w, 0.015)


def _shop(rng: np.random.Generator, h: int, w: int, unit: float) -> np.ndarray:
    """Shop front: coloured sign band over a glass display with bright goods."""
    glass = _pick(rng, [(0.15, 0.18, 0.22), (0.3, 0.32, 0.35)], 0.05)
    tex = _fill(glass, h, w) + np.clip(_smooth_noise(rng, h, w, 3 * unit), 0, 1) * rng.uniform(0.2, 0.5)
    sign_h = max(1, int(h * rng.uniform(0.15, 0.25)))
    tex[:sign_h] = _pick(rng, [(0.8, 0.1, 0.1), (0.1, 0.4, 0.2), (0.1, 0.2, 0.6), (0.9, 0.75, 0.1)], 0.1)
    _frame_border(tex, _pick(rng, [(0.15, 0.15, 0.15), (0.6, 0.6, 0.6)], 0.05), max(1, int(round(unit))))
    return tex


_TEXTURES: dict[str, Texture] = {
    "sky": _sky,
    "neighbour": _neighbour,
    "ground": _ground,
    "facade": _facade,
    "window": _window,
    "door": _door,
    "cornice": _cornice,
    "sill": _sill,
    "balcony": _balcony,
    "blind": _blind,
    "deco": _deco_texture,
    "molding": _molding,
    "pillar": _pillar,
    "shop": _shop,
}
_CLASS_MATERIAL = dict(zip(range(2, 13), list(_TEXTURES)[3:], strict=True))
"""Material of each class id 2..12 (background parts name theirs: sky, neighbour, ground)."""


def albedo(parts: list[Part], part_map: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unlit colours in [0, 1], (S, S, 3) float32: each part gets its own randomly drawn material."""
    size = part_map.shape[0]
    unit = size / 64
    img = np.zeros((size, size, 3), dtype=np.float32)
    for idx, part in enumerate(parts):
        y0, y1, x0, x1 = _pixel_box(part.box, size)
        material = part.kind or _CLASS_MATERIAL[part.cls]
        tex = _TEXTURES[material](rng, y1 - y0, x1 - x0, unit)
        mine = part_map[y0:y1, x0:x1] == idx
        img[y0:y1, x0:x1][mine] = tex[mine]
    return img


# ------------------------------------------------------------------------------------------- lighting


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move a boolean mask down by dy and right by dx pixels (dy, dx >= or < 0), filling with False."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    src = mask[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = src
    return out


def _cast_shadow(
    caster: np.ndarray, receiver: np.ndarray, depth: int, dx: int, strength: float
) -> np.ndarray:
    """Soft shadow below the caster on the receiver pixels: darkening in [0, strength], fading with depth."""
    shadow = np.zeros(caster.shape, dtype=np.float32)
    for d in range(1, depth + 1):
        hit = _shift(caster, d, int(round(dx * d / depth))) & receiver
        shadow = np.maximum(shadow, hit * strength * (1 - (d - 1) / depth))
    return shadow


def _shadows(labels: np.ndarray, rng: np.random.Generator, light_x: float) -> np.ndarray:
    """Shadows under cornices, sills, balconies and moldings, and inside window recesses."""
    unit = labels.shape[0] / 64
    depth = max(1, int(round(unit * rng.uniform(1.0, 3.0))))
    dx = -int(np.sign(light_x)) * max(1, depth // 2)
    casters = np.isin(labels, (CORNICE, SILL, BALCONY, MOLDING, DECO))
    receivers = np.isin(labels, (FACADE, WINDOW, PILLAR, BLIND, DOOR, SHOP))
    shadow = _cast_shadow(casters, receivers, depth, dx, rng.uniform(0.2, 0.45))
    window = labels == WINDOW
    recess = _cast_shadow(~window, window, max(1, int(round(unit))), 0, rng.uniform(0.2, 0.4))
    return np.maximum(shadow, recess)


def _gradient(size: int, gx: float, gy: float) -> np.ndarray:
    """Directional light falloff 1 + gx (x - 1/2) + gy (y - 1/2), (S, S, 1)."""
    t = np.linspace(0, 1, size, dtype=np.float32) - 0.5
    return (1 + gy * t[:, None] + gx * t[None, :])[..., None]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def light_day(base: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Daylight: directional gradient, cast shadows, exposure and white balance, sensor noise."""
    gx = rng.uniform(-0.35, 0.35)
    shade = _gradient(labels.shape[0], gx, rng.uniform(-0.15, 0.1))
    shadow = _shadows(labels, rng, gx)[..., None]
    tint = rng.uniform(0.96, 1.04, 3).astype(np.float32) * rng.uniform(0.9, 1.1)
    photo = base * shade * (1 - shadow) * tint + _noise(rng, *labels.shape, 0.01)
    return _to_uint8(photo)


def light_dusk(
    base: np.ndarray, parts: list[Part], part_map: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Dusk: a dark warm exposure, an orange-to-violet sky and some lit windows and shops."""
    size = labels.shape[0]
    gx = rng.uniform(-0.3, 0.3)
    shadow = _shadows(labels, rng, gx)[..., None]
    warm = np.array([1.0, 0.72, 0.5], dtype=np.float32) * rng.uniform(0.3, 0.45)
    photo = base * _gradient(size, gx, 0.0) * (1 - shadow) * warm
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    top, horizon = np.array([0.2, 0.12, 0.3], np.float32), np.array([0.95, 0.5, 0.22], np.float32)
    sky_ids = [i for i, p in enumerate(parts) if p.kind == "sky"]
    sky = np.isin(part_map, sky_ids)[..., None]
    photo = np.where(sky, top * (1 - t) + horizon * t * rng.uniform(0.7, 1.0), photo)
    glow = np.zeros((len(parts), 3), dtype=np.float32)
    for i, p in enumerate(parts):
        if p.cls in (WINDOW, SHOP) and rng.random() < 0.45:
            glow[i] = np.array([1.0, 0.78, 0.4], np.float32) * rng.uniform(0.6, 0.95)
    lit = glow[part_map]
    photo = np.where(lit.any(axis=-1, keepdims=True), base * 0.25 + lit, photo)
    return _to_uint8(photo + _noise(rng, size, size, 0.01))


# ----------------------------------------------------------------------------------------------- rain


def _box_blur(img: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window with edge padding."""
    pad = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out += pad[dy : dy + h, dx : dx + w]
    return out / (2 * r + 1) ** 2


def _streaks(rng: np.random.Generator, size: int) -> np.ndarray:
    """Thin bright slanted lines in [0, 1], (S, S, 1): one shared angle, random lengths and brightness."""
    n = int(size * size * rng.uniform(0.004, 0.012))
    length = max(3, int(size * rng.uniform(0.08, 0.2)))
    angle = rng.uniform(-0.4, 0.4) + rng.normal(0, 0.03, n)
    start_y = rng.uniform(-length, size, n)
    start_x = rng.uniform(-length, size + length, n)
    t = np.arange(length, dtype=np.float64)[None, :] * rng.uniform(0.5, 1.0, n)[:, None]
    ys = np.round(start_y[:, None] + t * np.cos(angle)[:, None]).astype(int)
    xs = np.round(start_x[:, None] + t * np.sin(angle)[:, None]).astype(int)
    value = np.broadcast_to(rng.uniform(0.4, 1.0, n)[:, None], ys.shape)
    inside = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
    layer = np.zeros((size, size), dtype=np.float32)
    np.maximum.at(layer, (ys[inside], xs[inside]), value[inside])
    return layer[..., None]


def add_rain(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rain over a clean uint8 photo: slight blur and haze, then bright, softened streaks."""
    img = photo.astype(np.float32) / 255
    img = img + (_box_blur(img, 1) - img) * rng.uniform(0.2, 0.6)
    haze = rng.uniform(0.05, 0.2)
    img = img * (1 - haze) + haze * rng.uniform(0.6, 0.85)
    layer = _streaks(rng, photo.shape[0])
    layer = layer * 0.6 + _box_blur(layer, 1) * 0.8
    alpha = np.clip(layer * rng.uniform(0.5, 0.85), 0, 1)
    return _to_uint8(img * (1 - alpha) + alpha * 0.92)


# ---------------------------------------------------------------------------------------------- scene


def render_scene(seed: int, index: int, size: int) -> Scene:
    """Scene ``index`` of the dataset with this seed, at ``size`` x ``size`` pixels."""
    rng = np.random.default_rng([seed, index])
    parts = layout(rng)
    part_map, labels = rasterize(parts, size)
    base = albedo(parts, part_map, rng)
    photo = light_day(base, labels, rng)
    dusk = light_dusk(base, parts, part_map, labels, np.random.default_rng([seed, index, 1]))
    rainy = add_rain(photo, np.random.default_rng([seed, index, 2]))
    return Scene(labels, instance_ids(parts, part_map), photo, dusk, rainy)


def split_names(count: int) -> list[str]:
    """Split of each scene index: 80/10/10 train/val/test in order, val and test non-empty when count >= 3."""
    n_held = max(1, int(round(count * 0.1))) if count >= 3 else 0
    n_train = count - 2 * n_held
    return ["train"] * n_train + ["val"] * n_held + ["test"] * n_held


def _save(img: np.ndarray, path: Path) -> None:
    """PNG with light compression: the noisy photos hardly compress, and level 1 is several times faster."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, compress_level=1)


def _write_scene(out: Path, split: str, index: int, scene: Scene) -> list[str]:
    """Write one scene into every layout; returns the folders it went to (relative to ``out``)."""
    name = f"{index:05d}.png"
    colours = ids_to_colors(scene.labels)
    side = "A" if index % 2 == 0 else "B"
    unaligned = f"unaligned/{'train' if split == 'train' else 'test'}{side}"
    files = {
        f"aligned/{split}": np.concatenate([scene.photo, colours], axis=1),
        f"labeled/{split}/images": scene.photo,
        f"labeled/{split}/labels": scene.labels,
        f"labeled/{split}/instances": scene.instances.astype(np.uint16),
        unaligned: scene.photo if side == "A" else scene.dusk,
        f"derain/{split}": np.concatenate([scene.rainy, scene.photo], axis=1),
    }
    for folder, img in files.items():
        _save(img, out / folder / name)
    return [f"aligned/{split}", f"labeled/{split}", unaligned, f"derain/{split}"]


def synthesize(out: Path, count: int = 200, size: int = 64, seed: int = 0) -> dict[str, int]:
    """Render ``count`` facade scenes of ``size`` x ``size`` pixels under ``out``; returns images per folder.

    Layouts written (file ``NNNNN.png`` = scene index, the same scene under the same name everywhere):

    - ``aligned/{train,val,test}``: photo (A, left) | label colours (B, right); labels -> photo is BtoA.
    - ``labeled/{split}/images``, ``labels`` (8-bit ids 1..12), ``instances`` (16-bit PNG, read as
      integers: class for background/facade, class*1000 + k for the other classes); ``classes.txt``
      names ids 0 (unlabeled) to 12, so the labeled data has 13 classes.
    - ``unaligned/{trainA,trainB,testA,testB}``: even scenes in daylight (A), odd scenes at dusk (B);
      train from the train split, test from val + test.
    - ``derain/{split}``: photo with rain (A) | clean photo (B).
    """
    if count < 1:
        raise PixforgeError(f"--count must be at least 1 (got {count})")
    if size < 16:
        raise PixforgeError(f"--size must be at least 16 pixels (got {size})")
    if seed < 0:
        raise PixforgeError(f"--seed must be a non-negative integer (got {seed})")
    out = Path(out)
    (out / "labeled").mkdir(parents=True, exist_ok=True)
    (out / "labeled" / "classes.txt").write_text("\n".join(("unlabeled", *FACADE_CLASSES)) + "\n")
    summary: Counter[str] = Counter()
    for index, split in enumerate(split_names(count)):
        summary.update(_write_scene(out, split, index, render_scene(seed, index, size)))
    return dict(sorted(summary.items()))
