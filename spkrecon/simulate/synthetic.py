"""Procedural scenes made by spkrecon's own code (no external images).

:func:`street_scene` draws a textured street (sky, buildings with windows, a sign with text,
trees, a fence, a road); :func:`sample_scene` puts a car and a bouncing ball on it under a
slowly panning, zooming camera: the scene of the bundled sample recording. Everything is
drawn in torch from a seeded generator with exactly rounded operations
(:mod:`spkrecon.simulate.exact` in place of torch's resampling, pooling and trigonometry), so
a seed gives the same pixels on every CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spkrecon.simulate import exact
from spkrecon.simulate.motion import MotionScene, Sprites, Trajectory

# A 5x7 bitmap font: 7 rows of 5 columns per glyph, '#' is ink.
_FONT_ROWS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "-": "..... ..... ..... .###. ..... ..... .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    " ": "..... ..... ..... ..... ..... ..... .....",
}


def text_mask(text: str, scale: int = 1, spacing: int = 1) -> torch.Tensor:
    """Ink mask ``(7 * scale, n * (5 + spacing) * scale)`` float32 of ``text`` (A-Z, 0-9)."""
    cols = []
    for ch in text.upper():
        rows = _FONT_ROWS.get(ch, _FONT_ROWS[" "]).split()
        glyph = torch.tensor([[c == "#" for c in r] for r in rows], dtype=torch.float32)
        cols.append(F.pad(glyph, (0, spacing)))
    m = torch.cat(cols, dim=1) if cols else torch.zeros(7, 0)
    return m.repeat_interleave(scale, 0).repeat_interleave(scale, 1)


def fractal_noise(height: int, width: int, g: torch.Generator, octaves: int = 5,
                  base: int = 3, persistence: float = 0.55) -> torch.Tensor:
    """Smooth value noise ``(H, W)`` in [0, 1]: octaves of upsampled random grids."""
    acc = torch.zeros(height, width)
    amp = 1.0
    for o in range(octaves):
        gh = max(2, round(base * 2**o * height / max(height, width)) + 1)
        gw = max(2, round(base * 2**o * width / max(height, width)) + 1)
        grid = torch.rand((1, 1, gh, gw), generator=g)
        up = exact.resize(grid[0, 0], height, width, align_corners=True, mode="bicubic")
        acc += (amp * up).float()
        amp *= persistence
    acc -= acc.min()
    return acc / acc.max().clamp(min=1e-6)


def _paste(canvas: torch.Tensor, patch: torch.Tensor, top: int, left: int,
           mask: torch.Tensor | None = None) -> None:
    h, w = patch.shape
    ch, cw = canvas.shape
    t0, l0 = max(0, top), max(0, left)
    t1, l1 = min(ch, top + h), min(cw, left + w)
    if t1 <= t0 or l1 <= l0:
        return
    p = patch[t0 - top:t1 - top, l0 - left:l1 - left]
    region = canvas[t0:t1, l0:l1]
    if mask is None:
        region.copy_(p)
    else:
        m = mask[t0 - top:t1 - top, l0 - left:l1 - left]
        region.mul_(1 - m).add_(p * m)


def _disc(size: int, radius: float, cx: float | None = None, cy: float | None = None
          ) -> torch.Tensor:
    c = (size - 1) / 2
    cx = c if cx is None else cx
    cy = c if cy is None else cy
    r = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    rho = torch.sqrt((xx - cx) * (xx - cx) + (yy - cy) * (yy - cy))
    return (radius - rho + 0.5).clamp(0.0, 1.0)


def street_scene(height: int = 290, width: int = 470, seed: int = 0) -> torch.Tensor:
    """A grey street ``(height, width)`` float32 in [0, 1] with edges, texture and text."""
    g = torch.Generator().manual_seed(seed)
    h, w = height, width
    img = torch.zeros(h, w)
    sky_end = int(0.32 * h)
    ys = (torch.arange(h, dtype=torch.float32) / (h - 1))[:, None]
    clouds = fractal_noise(h, w, g, octaves=4, base=2)
    img[:] = (0.78 - 0.18 * ys + 0.12 * (clouds - 0.5)).expand(h, w)
    ground = int(0.74 * h)
    # buildings
    x = -int(torch.randint(0, 30, (1,), generator=g))
    while x < w:
        bw = int(torch.randint(48, 110, (1,), generator=g))
        top = int(torch.randint(int(0.08 * h), sky_end + 20, (1,), generator=g))
        shade = 0.25 + 0.3 * float(torch.rand(1, generator=g))
        tex = fractal_noise(ground - top, bw, g, octaves=5, base=3)
        face = shade + 0.08 * (tex - 0.5)
        win_h, win_w = int(torch.randint(7, 12, (1,), generator=g)), int(torch.randint(6, 11, (1,),
                                                                                       generator=g))
        lit = torch.rand(((ground - top) // (win_h + 6) + 1, bw // (win_w + 5) + 1), generator=g)
        for i in range(lit.shape[0]):
            for j in range(lit.shape[1]):
                wy, wx = 6 + i * (win_h + 6), 5 + j * (win_w + 5)
                if wy + win_h < ground - top - 8 and wx + win_w < bw - 4:
                    level = 0.9 if lit[i, j] > 0.7 else 0.08 + 0.1 * float(lit[i, j])
                    face[wy:wy + win_h, wx:wx + win_w] = level
        face[:3, :] = shade + 0.25  # roof edge
        _paste(img, face, top, x)
        x += bw + int(torch.randint(0, 14, (1,), generator=g))
    # a sign with text on the tallest facade line
    for text, scale, top, left in (("SPIKE CAMERA", 2, int(0.36 * h), int(0.08 * w)),
                                   ("20000 FPS", 2, int(0.36 * h) + 20, int(0.08 * w) + 12),
                                   ("SPKRECON 0.1", 1, int(0.5 * h), int(0.62 * w))):
        ink = text_mask(text, scale)
        board = torch.full((ink.shape[0] + 8, ink.shape[1] + 8), 0.92)
        board[4:-4, 4:-4] -= 0.85 * ink
        board[:1], board[-1:], board[:, :1], board[:, -1:] = 0.1, 0.1, 0.1, 0.1
        _paste(img, board, top, left)
    # trees: textured dark blobs in front of the buildings
    for _ in range(4):
        size = int(torch.randint(50, 90, (1,), generator=g))
        cx = int(torch.randint(0, w, (1,), generator=g))
        leaves = 0.12 + 0.3 * fractal_noise(size, size, g, octaves=5, base=4)
        blob = _disc(size, size / 2 - 2) * (fractal_noise(size, size, g, 3, 2) > 0.3).float()
        blob = exact.box3(blob).float()
        _paste(img, leaves, ground - size - 10, cx - size // 2, blob)
        trunk = torch.full((22, 6), 0.1)
        _paste(img, trunk, ground - 20, cx - 3)
    # fence: thin bright posts and rails
    fence_top = ground - 26
    for px in range(2, w, 9):
        img[fence_top:ground, px:px + 2] = 0.85
    img[fence_top + 4:fence_top + 6, :] = 0.8
    img[fence_top + 16:fence_top + 18, :] = 0.8
    # road with texture and dashed lane markings
    road = 0.22 + 0.1 * (fractal_noise(h - ground, w, g, octaves=6, base=6) - 0.5)
    img[ground:] = road
    img[ground:ground + 2] = 0.55  # kerb
    lane = ground + int(0.55 * (h - ground))
    for lx in range(0, w, 40):
        img[lane:lane + 3, lx:lx + 22] = 0.88
    return img.clamp(0.02, 0.97)


def car_sprite(seed: int = 0, length: int = 150) -> tuple[torch.Tensor, torch.Tensor]:
    """A side view of a car on a square canvas: (light, coverage) ``(S, S)``, S = length + 8."""
    g = torch.Generator().manual_seed(seed)
    s = length + 8
    light = torch.zeros(s, s)
    cover = torch.zeros(s, s)
    c = s // 2
    body_h = int(0.3 * length)
    body_top = c - body_h // 2 + 8
    body = 0.62 + 0.05 * (fractal_noise(body_h, length, g, 3, 3) - 0.5)
    body[: body_h // 3] += 0.12  # light catching the upper panel
    body[body_h // 2, :] = 0.3  # trim line
    _paste(light, body, body_top, 4)
    cover[body_top:body_top + body_h, 4:4 + length] = 1.0
    # rounded corners of the body
    for cy, cx in ((body_top, 4), (body_top, 3 + length)):
        cover[cy:cy + 5, max(cx - 4, 0):cx + 5] *= 0.0
    cab_h = int(0.22 * length)
    cab_top = body_top - cab_h
    for i in range(cab_h):
        inset = int((cab_h - i) * 0.9)
        l0, l1 = 4 + int(0.22 * length) + inset, 4 + int(0.78 * length) - inset // 2
        cover[cab_top + i, l0:l1] = 1.0
        light[cab_top + i, l0:l1] = 0.15 if i > 2 else 0.6
    mid = 4 + int(0.5 * length)
    light[cab_top + 3:body_top, mid - 2:mid + 2] = 0.6  # door pillar
    ink = text_mask("SPKRECON", 1)
    _paste(light, 0.62 - 0.5 * ink, body_top + body_h // 2 + 3, 4 + (length - ink.shape[1]) // 2)
    light[body_top + 4:body_top + 9, 4 + length - 8:4 + length] = 0.97  # headlight
    light[body_top + 4:body_top + 9, 4:10] = 0.45  # tail light
    r = int(0.1 * length)
    for wx in (4 + int(0.2 * length), 4 + int(0.8 * length)):
        wheel = _disc(2 * r + 2, r)
        hub = _disc(2 * r + 2, r * 0.45)
        spokes = torch.zeros_like(wheel)
        spokes[r - 1:r + 3, :] = 1
        spokes[:, r - 1:r + 3] = 1
        tone = 0.06 + 0.5 * hub + 0.2 * spokes * (wheel - hub).clamp(0, 1)
        top, left = body_top + body_h - r - 1, wx - r - 1
        _paste(light, tone, top, left, wheel)
        _paste(cover, torch.ones_like(wheel), top, left, wheel)
    cover = exact.box3(cover).float().clamp(0, 1)
    return light.clamp(0.0, 1.0), cover


def ball_sprite(radius: int = 18) -> tuple[torch.Tensor, torch.Tensor]:
    """A ball with a checker pattern (visible rotation): (light, coverage) ``(S, S)``."""
    s = 2 * radius + 6
    c = (s - 1) / 2
    r = torch.arange(s, dtype=torch.float32) - c
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    ang = exact.atan2(yy, xx).float()
    rho = torch.sqrt(xx * xx + yy * yy)
    sector = (torch.floor(ang / (math.pi / 4)) % 2 == 0) ^ (rho < radius * 0.55)
    light = torch.where(sector, torch.tensor(0.9), torch.tensor(0.12))
    shade = 1 - 0.25 * ((xx + yy) / (2 * radius)).clamp(-1, 1)
    return (light * shade).clamp(0, 1), _disc(s, radius)


def _layers(items: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    size = max(max(t.shape) for t, _ in items)
    out = torch.zeros(1, len(items), 2, size, size)
    for k, (light, cover) in enumerate(items):
        h, w = light.shape
        t, left = (size - h) // 2, (size - w) // 2
        out[0, k, 0, t:t + h, left:left + w] = light * cover
        out[0, k, 1, t:t + h, left:left + w] = cover
    return out


def sample_scene(seed: int = 0, size: tuple[int, int] = (250, 400), steps: int = 240
                 ) -> MotionScene:
    """The bundled sample: a street under a slow pan and zoom, a car passing at 1 px/step
    and a spinning ball thrown across the view (0.7 px/step sideways, up to 1.3 px/step)."""
    h, w = size
    bg = street_scene(h + 40, w + 70, seed)
    mid = (steps - 1) / 2
    # camera: pan right 0.08 px/step, zoom in 0.04 % per step, a slight roll
    camera = Trajectory.linear(torch.tensor([[w / 2 + 20.0, h / 2 + 20.0, 0.0, 0.0]]),
                               torch.tensor([[0.08, -0.02, 0.0004, 0.00005]]), origin=mid)
    car = car_sprite(seed)
    ball = ball_sprite(18)
    # the car's wheels (45 px below its centre for a 150-px car) touch the road
    road_y = int(0.74 * (h + 40)) - 20 + 30 - 45
    span = steps - 1
    ball_top, ball_low = 0.3 * h, 0.72 * h
    acc = 2 * (ball_low - ball_top) / (span / 2) ** 2
    p0 = torch.tensor([[[w * 0.45, road_y, 0.0, 0.0],
                        [w * 0.6, ball_top, 0.0, 0.0]]])
    v = torch.tensor([[[-1.0, 0.0, 0.0, 0.0],
                       [0.7, 0.0, 0.0, 0.03]]])
    a = torch.tensor([[[0.0, 0.0, 0.0, 0.0],
                       [0.0, acc, 0.0, 0.0]]])
    sprites = Sprites(_layers([car, ball]), Trajectory.linear(p0, v, a, origin=mid))
    return MotionScene(bg[None], size, camera, sprites, steps,
                       info={"procedural": "street", "seed": seed})
