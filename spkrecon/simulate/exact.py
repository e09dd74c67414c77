"""Platform-independent arithmetic for the simulator: the same bits on every CPU.

torch's transcendental functions (``exp``, ``log``, ``sin``, ``cos``, ``atan2``, ``pow``,
``randn``), its resampling kernels (``grid_sample``, ``interpolate``), matrix products and
``addcmul`` are compiled once per instruction set (plain, AVX2, AVX512, NEON/SVE) and may
contract ``a * b + c`` into one fused multiply-add or use vendor math libraries: their last
bit depends on the CPU. Across millions of pixels and hundreds of steps such last bits move
a few pixels across a spike threshold or a PNG rounding step, so the same seed gave different
files on different CPUs.

Everything here is built from operations IEEE 754 rounds exactly, one at a time: ``+``,
``-``, ``*``, ``/``, ``sqrt``, ``floor``/``round``, comparisons, gathers and bit operations,
in float64, each a separate torch call (no fused kernels, no reductions whose order depends
on the vector width). Such an operation gives the same result on every IEEE machine whatever
its SIMD width, so these functions give the same bits on every x86-64 and ARM CPU (the test
suite compares runs under ``ATEN_CPU_CAPABILITY=default`` and the native dispatch).

The functions are accurate to a few units in the last place of float64 (checked against
torch in the tests); they serve reproducibility, not speed.
"""

from __future__ import annotations

import math

import torch

F64 = torch.float64

_LN2_HI = 6.93147180369123816490e-01  # fdlibm: ln 2 split so that k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_PIO2_1 = 1.57079632673412561417e00  # fdlibm: pi / 2 in three parts
_PIO2_2 = 6.07710050650619224932e-11
_PIO2_3 = 2.02226624879595063154e-21
_TWO_OVER_PI = 6.36619772367581382433e-01
_SQRT2 = 1.4142135623730951

_EXP_COEFFS = [1.0 / math.factorial(i) for i in range(14)]  # |r| <= ln2 / 2
_SIN_COEFFS = [(-1.0) ** i / math.factorial(2 * i + 1) for i in range(10)]  # |r| <= pi / 4
_COS_COEFFS = [(-1.0) ** i / math.factorial(2 * i) for i in range(10)]
_ATANH_COEFFS = [1.0 / (2 * i + 1) for i in range(13)]  # |s| <= 0.1716
_ATAN_COEFFS = [(-1.0) ** i / (2 * i + 1) for i in range(13)]  # |z| <= tan(pi / 16)


def _horner(x: torch.Tensor, coeffs: list[float]) -> torch.Tensor:
    """``sum_i coeffs[i] * x**i``, one rounded multiply and one rounded add per term."""
    r = torch.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        r = r * x
        r = r + c
    return r


def _pow2(k: torch.Tensor) -> torch.Tensor:
    """``2**k`` for whole-valued float64 ``k`` in [-1022, 1023], built from its bits."""
    return ((k.to(torch.int64) + 1023) << 52).view(F64)


def exp(x: torch.Tensor) -> torch.Tensor:
    """``e**x`` (float64; ``x`` is clamped to [-700, 700])."""
    x = x.to(F64).clamp(-700.0, 700.0)
    k = torch.round(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    return _horner(r, _EXP_COEFFS) * _pow2(k)


def log(x: torch.Tensor) -> torch.Tensor:
    """Natural logarithm (float64) of positive normal numbers; ``log(0) = -inf``."""
    x = x.to(F64)
    bits = x.view(torch.int64)
    e = (bits >> 52) - 1023
    m = ((bits & ((1 << 52) - 1)) | (1023 << 52)).view(F64)  # mantissa in [1, 2)
    big = m > _SQRT2
    m = torch.where(big, m * 0.5, m)
    e = (e + big.to(torch.int64)).to(F64)
    s = (m - 1.0) / (m + 1.0)
    t = _horner(s * s, _ATANH_COEFFS) * s  # atanh(s) = log(m) / 2
    out = e * _LN2_HI + (e * _LN2_LO + 2.0 * t)
    out = torch.where(x == 0, torch.full_like(out, -math.inf), out)
    return torch.where(x < 0, torch.full_like(out, math.nan), out)


def _sincos_reduced(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.to(F64)
    k = torch.round(x * _TWO_OVER_PI)
    r = ((x - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
    r2 = r * r
    return _horner(r2, _SIN_COEFFS) * r, _horner(r2, _COS_COEFFS), k.to(torch.int64) & 3


def _quadrant(s: torch.Tensor, c: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The sine of ``r + q pi / 2`` from ``sin r``, ``cos r`` (its cosine: ``q + 1``)."""
    return torch.where(q == 0, s, torch.where(q == 1, c, torch.where(q == 2, -s, -c)))


def sin(x: torch.Tensor) -> torch.Tensor:
    """Sine (float64; arguments up to about 1e5 in magnitude keep full accuracy)."""
    return _quadrant(*_sincos_reduced(x))


def cos(x: torch.Tensor) -> torch.Tensor:
    """Cosine (float64)."""
    s, c, q = _sincos_reduced(x)
    return _quadrant(s, c, (q + 1) & 3)


def _atan_unit(z: torch.Tensor) -> torch.Tensor:
    """``atan(z)`` for ``z`` in [0, 1]: two half-angle reductions, then the series."""
    for _ in range(2):
        z = z / (torch.sqrt(z * z + 1.0) + 1.0)
    return _horner(z * z, _ATAN_COEFFS) * z * 4.0


def atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``atan2(y, x)`` in [-pi, pi] (float64); ``atan2(0, 0) = 0``."""
    y, x = torch.broadcast_tensors(y.to(F64), x.to(F64))
    ax, ay = x.abs(), y.abs()
    swap = ay > ax
    num, den = torch.where(swap, ax, ay), torch.where(swap, ay, ax)
    z = torch.where(den == 0, torch.zeros_like(num), num / torch.where(den == 0, 1.0, den))
    a = _atan_unit(z)
    a = torch.where(swap, math.pi / 2 - a, a)
    a = torch.where(x < 0, math.pi - a, a)
    return torch.where(y < 0, -a, a)


def pow(base: torch.Tensor, exponent: torch.Tensor | float) -> torch.Tensor:  # noqa: A001
    """``base ** exponent`` for ``base >= 0`` (float64; ``0 ** e = 0``)."""
    base = base.to(F64)
    safe = torch.where(base > 0, base, torch.ones_like(base))
    out = exp(log(safe) * exponent)
    return torch.where(base > 0, out, torch.zeros_like(out))


def normal(shape: tuple[int, ...], generator: torch.Generator | None = None,
           device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
           ) -> torch.Tensor:
    """Standard normal numbers by Box-Muller from ``torch.rand`` (whose uniform numbers are
    exact: they come from the generator's integers), in place of ``torch.randn``."""
    u = torch.rand((2, *shape), generator=generator, device=device, dtype=F64)
    return box_muller(u)[0].to(dtype)


# float32 versions for noise, accurate to about 1e-7 (fewer terms, half the memory)
_F32_LOG_COEFFS = _ATANH_COEFFS[:4]
_F32_SIN_COEFFS = _SIN_COEFFS[:5]
_F32_COS_COEFFS = _COS_COEFFS[:6]


def _log_f32(x: torch.Tensor) -> torch.Tensor:
    """Natural logarithm of positive normal float32 numbers, in float32."""
    bits = x.view(torch.int32)
    e = (bits >> 23) - 127
    m = ((bits & ((1 << 23) - 1)) | (127 << 23)).view(torch.float32)
    big = (m > _SQRT2).to(torch.float32)
    m = m * (1.0 - 0.5 * big)  # halved or as it is, exactly (torch.where is slow here)
    e = e.to(torch.float32) + big
    s = (m - 1.0) / (m + 1.0)
    return e * _LN2_HI + (e * _LN2_LO + (_horner(s * s, _F32_LOG_COEFFS) * s) * 2.0)


def box_muller(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent standard normal float32 arrays from uniform ``u (2, ...)`` in [0, 1)
    (float32 from ``torch.rand`` is exact: whole multiples of 2**-24): ``r cos(2 pi u1)`` and
    ``r sin(2 pi u1)`` with ``r = sqrt(-2 log(1 - u0))``, evaluated in float32 (noise needs
    no more)."""
    one_minus = (1.0 - u[0]).to(torch.float32).clamp(min=2.0**-126)  # > 0: rand < 1
    radius = torch.sqrt(_log_f32(one_minus) * -2.0)
    # 2 pi u1 = (q + 1/2 + f) pi / 2 with quadrant q = floor(4 u1) and f in [-1/2, 1/2):
    # no argument reduction needed (4 u1 and its parts are exact)
    v = u[1].to(torch.float32) * 4.0
    q = torch.floor(v)
    r = ((v - q) - 0.5) * (math.pi / 2)  # |r| <= pi / 4
    r2 = r * r
    s, c = _horner(r2, _F32_SIN_COEFFS) * r, _horner(r2, _F32_COS_COEFFS)
    # angle r + pi/4 + q pi/2: rotate (cos r, sin r) by pi/4, then by q quarter turns
    c45, s45 = (c - s) * math.sqrt(0.5), (c + s) * math.sqrt(0.5)
    # selections and sign flips as exact products with 0, 1 and -1 (torch.where is slow)
    odd = torch.remainder(q, 2.0)
    even = 1.0 - odd
    sign_c = 1.0 - 2.0 * ((q == 1) | (q == 2)).to(torch.float32)
    sign_s = 1.0 - 2.0 * (q >= 2).to(torch.float32)
    cos_ = (s45 * odd + c45 * even) * sign_c
    sin_ = (c45 * odd + s45 * even) * sign_s
    return radius * cos_, radius * sin_


# -- resampling ----------------------------------------------------------------------------
PADDINGS = ("zeros", "border", "reflection")


def _reflect(p: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect coordinates about -0.5 and size - 0.5 (grid_sample, align_corners=False)."""
    span = float(size)
    d = (p + 0.5).abs()
    flips = torch.floor(d / span)
    extra = d - flips * span
    odd = torch.remainder(flips, 2.0) == 1
    return torch.where(odd, span - extra, extra) - 0.5


def _pad_coord(p: torch.Tensor, size: int, padding: str) -> torch.Tensor:
    if padding == "reflection":
        p = _reflect(p, size)
    if padding in ("reflection", "border"):
        p = p.clamp(0.0, size - 1.0)
    return p


def _taps(p0: torch.Tensor, offsets: range, size: int, padding: str) -> list[torch.Tensor]:
    """Whole tap coordinates ``p0 + k`` as in-range int64 indices (moved inside by the
    padding; ``clamp``: the nearest edge pixel, zero where the image was padded with zeros)."""
    idx = []
    for k in offsets:
        p = p0 + k
        if padding != "clamp":
            p = _pad_coord(p, size, padding)
        idx.append(p.clamp(0, size - 1).to(torch.int64))
    return idx


def _cubic_weights(t: torch.Tensor) -> list[torch.Tensor]:
    """Cubic convolution weights (A = -0.75, as torch) for the taps -1, 0, 1, 2."""
    a = -0.75

    def near(d: torch.Tensor) -> torch.Tensor:  # |d| <= 1
        return ((d * (a + 2) - (a + 3)) * d) * d + 1.0

    def far(d: torch.Tensor) -> torch.Tensor:  # 1 < |d| < 2
        return ((d * a - 5 * a) * d + 8 * a) * d - 4 * a

    u = 1.0 - t
    return [far(t + 1.0), near(t), near(u), far(u + 1.0)]


def _inside(x: torch.Tensor, y: torch.Tensor, h: int, w: int) -> bool:
    return bool((x.amin() >= 0) & (x.amax() <= w - 1) & (y.amin() >= 0) & (y.amax() <= h - 1))


def _bilinear(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, h: int, w: int,
              padding: str) -> torch.Tensor:
    if padding != "clamp" and not _inside(x, y, h, w):  # moved inside, as grid_sample does
        x, y = _pad_coord(x, w, padding), _pad_coord(y, h, padding)
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0).to(flat.dtype), (y - y0).to(flat.dtype)
    wx, wy = [1.0 - fx, fx], [1.0 - fy, fy]
    rows = [y0.clamp(0, h - 1).to(torch.int64) * w, (y0 + 1).clamp(0, h - 1).to(torch.int64) * w]
    cols = [x0.clamp(0, w - 1).to(torch.int64), (x0 + 1).clamp(0, w - 1).to(torch.int64)]
    return _separable(flat, rows, cols, wy, wx)


def _separable(flat: torch.Tensor, rows: list[torch.Tensor], cols: list[torch.Tensor],
               wy: list[torch.Tensor], wx: list[torch.Tensor]) -> torch.Tensor:
    """``sum_j wy[j] * sum_i wx[i] * flat[rows[j] + cols[i]]`` in that fixed order: the taps
    of ``flat (B, C, H*W)`` at flat row offsets ``rows`` and columns ``cols`` (each ``(B, P)``,
    int64), weighted per point."""
    c = flat.shape[1]
    out = None
    for r, w_r in zip(rows, wy, strict=True):
        row = None
        for col, w_c in zip(cols, wx, strict=True):
            v = torch.gather(flat, 2, (r + col)[:, None].expand(-1, c, -1)) * w_c[:, None]
            row = v if row is None else row + v
        assert row is not None
        v = row * w_r[:, None]
        out = v if out is None else out + v
    assert out is not None
    return out


def sample(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor, mode: str = "bilinear",
           padding: str = "zeros", dtype: torch.dtype = F64) -> torch.Tensor:
    """Resample ``image (B, C, H, W)`` at pixel coordinates ``x, y (B, *pts)`` (pixel centres
    at whole numbers): ``(B, C, *pts)`` in ``dtype``. ``mode`` is ``bilinear`` or ``bicubic``,
    ``padding`` one of :data:`PADDINGS`; the same function as ``F.grid_sample`` with
    ``align_corners=False`` (to rounding), in exactly rounded steps: coordinates and taps in
    the coordinates' dtype, the weights and the weighted sum in ``dtype``."""
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"unknown resampling mode {mode!r}")
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}")
    pts = x.shape[1:]
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    if padding == "zeros":
        # a border of zeros as wide as the taps reach, then taps clamped into it: a tap
        # outside the image reads 0 (no masks: mixed-type products are slow)
        pad = 1 if mode == "bilinear" else 2
        image = torch.nn.functional.pad(image, (pad, pad, pad, pad))
        x, y, padding = x + pad, y + pad, "clamp"
    b, c, h, w = image.shape
    flat = image.to(dtype).reshape(b, c, h * w)
    if mode == "bilinear":
        out = _bilinear(flat, x, y, h, w, padding)
    else:
        x0, y0 = torch.floor(x), torch.floor(y)
        wx = [t.to(flat.dtype) for t in _cubic_weights(x - x0)]
        wy = [t.to(flat.dtype) for t in _cubic_weights(y - y0)]
        cols = _taps(x0, range(-1, 3), w, padding)
        rows = [t * w for t in _taps(y0, range(-1, 3), h, padding)]
        out = _separable(flat, rows, cols, wy, wx)
    assert out is not None
    return out.reshape(b, c, *pts)


def affine_coords(m: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor,
                  dtype: torch.dtype = F64) -> tuple[torch.Tensor, torch.Tensor]:
    """Source coordinates ``(B, n, h, w)`` in ``dtype`` of the output pixels ``xs (w,)``,
    ``ys (h,)`` under pixel affines ``m (B, n, 2, 3)``: ``x = m00 x + m01 y + m02`` (no
    matrix product)."""
    m = m.to(dtype)
    xs, ys = xs.to(dtype), ys.to(dtype)

    def row(r: int) -> torch.Tensor:
        a = m[:, :, r, 0, None, None] * xs[None, None, None, :]
        bb = m[:, :, r, 1, None, None] * ys[None, None, :, None]
        return (a + bb) + m[:, :, r, 2, None, None]

    return row(0), row(1)


def resize(image: torch.Tensor, height: int, width: int, align_corners: bool = False,
           mode: str = "bilinear") -> torch.Tensor:
    """Scale ``(..., H, W)`` to ``height x width`` (float64).

    ``bilinear`` with ``align_corners=False`` filters like ``F.interpolate(..., antialias=True)``
    (a triangle as wide as the scale when shrinking; plain bilinear when enlarging);
    ``align_corners=True`` (enlarging small grids) samples with ``mode`` at
    ``i * (in - 1) / (out - 1)``, edge pixels repeated.
    """
    lead = image.shape[:-2]
    h, w = image.shape[-2:]
    x = image.to(F64).reshape(-1, h, w)
    if align_corners:
        dev = x.device
        ys = torch.arange(height, device=dev, dtype=F64) * ((h - 1) / max(height - 1, 1))
        xs = torch.arange(width, device=dev, dtype=F64) * ((w - 1) / max(width - 1, 1))
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        out = sample(x[None], xx.expand(1, height, width), yy.expand(1, height, width),
                     mode, "border")[0]
        return out.reshape(*lead, height, width)
    x = _resize_axis(x, width, axis=2)
    x = _resize_axis(x, height, axis=1)
    return x.reshape(*lead, height, width)


def _resize_axis(x: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    """Antialiased bilinear resampling of ``x (N, H, W)`` along ``axis`` to ``size``."""
    n_in = x.shape[axis]
    if n_in == size:
        return x
    scale = n_in / size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    centre = (torch.arange(size, dtype=F64) + 0.5) * scale
    lo = torch.floor(centre - support + 0.5).clamp(min=0)
    hi = torch.floor(centre + support + 0.5).clamp(max=n_in)
    taps = int((hi - lo).max())
    offs = torch.arange(taps, dtype=F64)
    j = lo[:, None] + offs[None, :]  # (size, taps)
    weight = (1.0 - (((j - centre[:, None]) + 0.5) * inv).abs()).clamp(min=0.0)
    weight = torch.where(j < hi[:, None], weight, torch.zeros_like(weight))
    total = weight[:, 0].clone()
    for k in range(1, taps):
        total = total + weight[:, k]
    weight = weight / total[:, None]
    idx = j.clamp(max=n_in - 1).to(torch.int64).to(x.device)
    weight = weight.to(x.device)
    out = None
    for k in range(taps):
        v = x.index_select(axis, idx[:, k])
        wk = weight[:, k].view(-1, 1) if axis == 1 else weight[:, k].view(1, -1)
        v = v * wk
        out = v if out is None else out + v
    assert out is not None
    return out


def box3(x: torch.Tensor) -> torch.Tensor:
    """3x3 mean of ``(H, W)`` with zero padding (``F.avg_pool2d(x, 3, 1, 1)``), exactly."""
    p = torch.nn.functional.pad(x.to(F64), (1, 1, 1, 1))
    h, w = x.shape
    out = None
    for dy in range(3):
        for dx in range(3):
            v = p[dy:dy + h, dx:dx + w]
            out = v if out is None else out + v
    assert out is not None
    return out / 9.0
