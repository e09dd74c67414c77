"""Spk2ImgNet: the network, its configuration and the paper's ablations.

Zhao, Xiong, Liu, Zhang, Huang. "Spk2ImgNet: Learning to Reconstruct Dynamic Scene from
Continuous Spike Stream", CVPR 2021.

A 41-frame spike window ``(B, 41, H, W)`` is cut into five 13-frame blocks at stride 7
(centres 6, 13, 20, 27, 34; the key block is the middle one). Each block goes through the
same feature extractor: SALI (four light-intensity estimates over centred sub-windows of
13/11/9/7 frames, re-weighted by an attention block) followed by a residual CNN. The four
neighbour blocks are aligned to the key block by an EDVR-style pyramid of modulated
deformable convolutions (PDA), weighted by per-neighbour reliability masks (RE) and fused
into one image ``(B, 1, H, W)`` (an estimate of ``0.6 * intensity``, i.e. a firing rate).

Parameter names are the authors' (``extractor.conv0_0``, ``pcd_align.pcd_align.L3_dcnpack_1``,
``mask0``, ``rec_conv0``...), so their state dict loads without a name mapping. H and W must
be multiples of 4 (the pyramid halves them twice).

The network is split so that work can be shared between output frames:
:meth:`Spk2ImgNet.encode` turns 13-frame blocks into :class:`BlockFeatures` (SALI, feature
extractor and alignment pyramid: everything that depends on one block only) and
:meth:`Spk2ImgNet.fuse` turns the five blocks of an output frame into the image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

__all__ = [
    "PRESETS", "BlockFeatures", "Spk2ImgNet", "block_flow", "window_velocity", "Spk2ImgNetConfig",
    "count_parameters",
]

#: The paper's ablations (Table 3): which of SALI / PDA / RE each network has.
PRESETS: dict[str, dict[str, bool]] = {
    "net_a": {"sali": False, "pda": False, "re": False},
    "net_b": {"sali": True, "pda": False, "re": False},
    "net_c": {"sali": False, "pda": True, "re": False},
    "net_d": {"sali": True, "pda": True, "re": False},
    "net_e": {"sali": True, "pda": True, "re": True},
}


@dataclass(frozen=True)
class Spk2ImgNetConfig:
    """Architecture of a Spk2ImgNet. The defaults are the authors' released network (Net_e).

    ``features`` is the width (feature channels), ``num_blocks`` the depth (residual blocks
    of the feature extractor; the paper says 15, the released code uses 10). ``sali``,
    ``pda`` and ``re`` switch the three components of the ablation study:

    - without SALI, one fixed temporal range: a single estimate branch over the whole
      13-frame block (``conv0_0``/``conv1_0``), no attention; the estimate stacks have 1
      channel instead of 4;
    - without PDA, neighbour features are not aligned (plain concatenation);
    - without RE, the (aligned) neighbour features are not weighted by reliability masks.

    ``raw_skip`` (not in the paper) also feeds each block's spike frames to the feature CNN;
    ``motion_input`` (not in the paper) gives the fusion head the window's velocity;
    ``separate_encoders`` (not in the paper) gives each block position its own extractor;
    ``fusion_blocks`` (not in the paper) deepens the fusion head with residual blocks;
    ``flow_align`` (not in the paper) warps each neighbour's features by a learned flow.
    """

    features: int = 64
    num_blocks: int = 10
    sali: bool = True
    pda: bool = True
    re: bool = True
    sali_features: int = 16
    deform_groups: int = 8
    block_radius: int = 6
    block_step: int = 7
    num_temporal_blocks: int = 5
    #: spkrecon's addition: feed each block's raw spike frames to the feature CNN beside the
    #: SALI estimates (the estimates alone are a 4-channel bottleneck).
    raw_skip: bool = False
    #: spkrecon's addition for networks without PDA: the fusion head also gets the per-pixel
    #: velocity of the window (block matching of the blocks' SALI estimates), in pixels per
    #: ``block_step`` steps.
    motion_input: bool = False
    #: spkrecon's addition: every block position has its own feature extractor (the key
    #: block's is ``extractor``, the neighbours' ``side_extractors``), so a block's features
    #: depend on where it sits in the window and cannot be shared between output frames.
    separate_encoders: bool = False
    #: spkrecon's addition: residual blocks (width ``features``) in the fusion head, after the
    #: blocks' features are joined: the only place where the five blocks meet without PDA.
    fusion_blocks: int = 0
    #: spkrecon's addition for networks without PDA: a small learned flow per neighbour block
    #: moves its features onto the key block (bilinear warp) before the fusion.
    flow_align: bool = False

    def __post_init__(self) -> None:
        if self.features < 1 or self.num_blocks < 0 or self.sali_features < 1 \
                or self.fusion_blocks < 0:
            raise ValueError(f"invalid width/depth in {self}")
        if self.block_radius < 3:
            raise ValueError("block_radius must be at least 3 (SALI's 7-frame branch)")
        if self.block_step < 1 or self.num_temporal_blocks < 1 or \
                self.num_temporal_blocks % 2 == 0:
            raise ValueError("block_step >= 1 and an odd num_temporal_blocks are required")
        if self.pda and self.flow_align:
            raise ValueError("flow_align is for networks without PDA (PDA aligns already)")
        if self.pda and self.features % self.deform_groups:
            raise ValueError(f"features ({self.features}) must be a multiple of "
                             f"deform_groups ({self.deform_groups})")

    # -- geometry --------------------------------------------------------------------
    @property
    def block_length(self) -> int:
        """Frames per short-term block (13)."""
        return 2 * self.block_radius + 1

    @property
    def window(self) -> int:
        """Frames of one input window (41)."""
        return (self.num_temporal_blocks - 1) * self.block_step + self.block_length

    @property
    def key_block(self) -> int:
        """Index of the key (reference) block (2)."""
        return self.num_temporal_blocks // 2

    def block_offsets(self) -> list[int]:
        """Centre of each block relative to the window's centre frame: ``[-14, -7, 0, 7, 14]``."""
        return [(k - self.key_block) * self.block_step for k in range(self.num_temporal_blocks)]

    @property
    def estimates(self) -> int:
        """Channels of each SALI estimate stack (4, or 1 without SALI)."""
        return 4 if self.sali else 1

    @property
    def variant(self) -> str | None:
        """``net_a`` .. ``net_e`` when the switches match a preset, else ``None``."""
        flags = {"sali": self.sali, "pda": self.pda, "re": self.re}
        return next((k for k, v in PRESETS.items() if v == flags), None)

    # -- (de)serialisation -------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Spk2ImgNetConfig:
        """Config of ablation ``net_a`` .. ``net_e`` (case-insensitive), with overrides."""
        key = name.lower().replace("-", "_")
        if key not in PRESETS:
            raise ValueError(f"unknown Spk2ImgNet variant {name!r} (known: {', '.join(PRESETS)})")
        return cls(**{**PRESETS[key], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spk2ImgNetConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise ValueError(f"unknown Spk2ImgNet config keys {extra}")
        return cls(**data)

    def with_(self, **changes: Any) -> Spk2ImgNetConfig:
        return replace(self, **changes)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- building blocks (names as in the authors' code) -------------------------------------
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=True)


class BasicBlock(nn.Module):
    """conv-ReLU-conv-ReLU-conv plus identity, then ReLU."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = _conv(features, features)
        self.conv2 = _conv(features, features)
        self.conv3 = _conv(features, features)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return F.relu(x + out)


class CALayer(nn.Module):
    """SALI's attention over the intensity estimates: conv(c->2c), ReLU, conv(2c->c), Sigmoid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ca_block = nn.Sequential(
            _conv(channels, 2 * channels), nn.ReLU(), _conv(2 * channels, channels), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return self.ca_block(x)


class FeatureExtractor(nn.Module):
    """SALI + residual CNN: ``(N, 13, H, W) -> (features (N, C, H, W), estimates (N, 4, H, W))``.

    Branch ``i`` reads the centred sub-window ``x[:, i:13-i]`` (13, 11, 9, 7 frames).
    """

    def __init__(self, cfg: Spk2ImgNetConfig) -> None:
        super().__init__()
        n, s = cfg.block_length, cfg.sali_features
        self.branches = 4 if cfg.sali else 1
        for i in range(self.branches):
            setattr(self, f"conv0_{i}", _conv(n - 2 * i, s))
            setattr(self, f"conv1_{i}", _conv(s, 1))
        self.ca = CALayer(4) if cfg.sali else None
        self.raw_skip = cfg.raw_skip
        self.conv = _conv(self.branches + (n if cfg.raw_skip else 0), cfg.features)
        self.net = nn.Sequential(*[BasicBlock(cfg.features) for _ in range(cfg.num_blocks)])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n = x.shape[1]
        est = torch.cat([
            getattr(self, f"conv1_{i}")(F.relu(getattr(self, f"conv0_{i}")(x[:, i:n - i])))
            for i in range(self.branches)], dim=1)
        out = est * self.ca(est) if self.ca is not None else est
        if self.raw_skip:
            out = torch.cat([out, x], 1)
        out = F.relu(self.conv(out))
        return self.net(out) + out, est


class ModulatedDeformConv(nn.Module):
    """DCNv2 whose offsets and mask come from other features (the authors' ``DCN_sep``).

    ``conv_offset_mask`` makes ``3 * groups * 9`` channels: two offset halves (concatenated
    in order, torchvision's interleaved (dy, dx) layout) and a mask through a sigmoid.
    """

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.conv_offset_mask = _conv(cin, 3 * groups * 9)
        stdv = 1.0 / (cin * 9) ** 0.5
        nn.init.uniform_(self.weight, -stdv, stdv)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: Tensor, fea: Tensor) -> Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset_mask(fea), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
        weight, bias = self.weight, self.bias
        if torch.is_autocast_enabled(x.device.type) or x.dtype != weight.dtype:
            # torchvision has no reduced-precision CPU kernel and no CPU autocast rule: run
            # the deformable convolution in float32 (what its CUDA autocast rule does too).
            with torch.autocast(x.device.type, enabled=False):
                return self._dcn(x.float(), offset.float(), weight.float(), bias.float(),
                                 mask.float())
        return self._dcn(x, offset, weight, bias, mask)

    @staticmethod
    def _dcn(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor, mask: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.shape[0] > 1:
            # torchvision's CPU kernel is slower per image on a batch (large im2col buffers).
            return torch.cat([deform_conv2d(x[i:i + 1], offset[i:i + 1], weight, bias,
                                            padding=(1, 1), mask=mask[i:i + 1])
                              for i in range(x.shape[0])])
        return deform_conv2d(x, offset, weight, bias, padding=(1, 1), mask=mask)


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.1)


def _up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class PCDAlign(nn.Module):
    """Pyramid, cascading and deformable alignment of a neighbour pyramid to the key's."""

    def __init__(self, nf: int, groups: int) -> None:
        super().__init__()
        self.L3_offset_conv1_1 = _conv(2 * nf, nf)
        self.L3_offset_conv2_1 = _conv(nf, nf)
        self.L3_dcnpack_1 = ModulatedDeformConv(nf, nf, groups)
        self.L2_offset_conv1_1 = _conv(2 * nf, nf)
        self.L2_offset_conv2_1 = _conv(2 * nf, nf)
        self.L2_offset_conv3_1 = _conv(nf, nf)
        self.L2_dcnpack_1 = ModulatedDeformConv(nf, nf, groups)
        self.L2_fea_conv_1 = _conv(2 * nf, nf)
        self.L1_offset_conv1_1 = _conv(2 * nf, nf)
        self.L1_offset_conv2_1 = _conv(2 * nf, nf)
        self.L1_offset_conv3_1 = _conv(nf, nf)
        self.L1_dcnpack_1 = ModulatedDeformConv(nf, nf, groups)
        self.L1_fea_conv_1 = _conv(2 * nf, nf)
        self.cas_offset_conv1 = _conv(2 * nf, nf)
        self.cas_offset_conv2 = _conv(nf, nf)
        self.cas_dcnpack = ModulatedDeformConv(nf, nf, groups)

    def forward(self, nbr: tuple[Tensor, Tensor, Tensor],
                key: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        off3 = _lrelu(self.L3_offset_conv1_1(torch.cat([nbr[2], key[2]], 1)))
        off3 = _lrelu(self.L3_offset_conv2_1(off3))
        fea3 = _lrelu(self.L3_dcnpack_1(nbr[2], off3))

        off2 = _lrelu(self.L2_offset_conv1_1(torch.cat([nbr[1], key[1]], 1)))
        off2 = _lrelu(self.L2_offset_conv2_1(torch.cat([off2, _up2(off3) * 2], 1)))
        off2 = _lrelu(self.L2_offset_conv3_1(off2))
        fea2 = self.L2_dcnpack_1(nbr[1], off2)
        fea2 = _lrelu(self.L2_fea_conv_1(torch.cat([fea2, _up2(fea3)], 1)))

        off1 = _lrelu(self.L1_offset_conv1_1(torch.cat([nbr[0], key[0]], 1)))
        off1 = _lrelu(self.L1_offset_conv2_1(torch.cat([off1, _up2(off2) * 2], 1)))
        off1 = _lrelu(self.L1_offset_conv3_1(off1))
        fea1 = self.L1_dcnpack_1(nbr[0], off1)
        fea1 = self.L1_fea_conv_1(torch.cat([fea1, _up2(fea2)], 1))

        off = _lrelu(self.cas_offset_conv1(torch.cat([fea1, key[0]], 1)))
        off = _lrelu(self.cas_offset_conv2(off))
        return _lrelu(self.cas_dcnpack(fea1, off))


class PyramidAlign(nn.Module):
    """The authors' ``Easy_PCD``: a 3-level feature pyramid plus :class:`PCDAlign`."""

    def __init__(self, nf: int, groups: int) -> None:
        super().__init__()
        self.fea_L2_conv1 = _conv(nf, nf, stride=2)
        self.fea_L2_conv2 = _conv(nf, nf)
        self.fea_L3_conv1 = _conv(nf, nf, stride=2)
        self.fea_L3_conv2 = _conv(nf, nf)
        self.pcd_align = PCDAlign(nf, groups)

    def pyramid(self, l1: Tensor) -> tuple[Tensor, Tensor]:
        """Levels 2 and 3 (1/2 and 1/4 size) of features ``(N, C, H, W)``."""
        l2 = _lrelu(self.fea_L2_conv2(_lrelu(self.fea_L2_conv1(l1))))
        l3 = _lrelu(self.fea_L3_conv2(_lrelu(self.fea_L3_conv1(l2))))
        return l2, l3

    def forward(self, nbr: Tensor, key: Tensor) -> Tensor:
        n2, n3 = self.pyramid(nbr)
        k2, k3 = self.pyramid(key)
        return self.pcd_align((nbr, n2, n3), (key, k2, k3))


class FusionMask(nn.Module):
    """Reliability (RE): conv(2C->C), PReLU, conv, PReLU, conv, Sigmoid on [neighbour, key]."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv0 = _conv(2 * features, features)
        self.conv1 = _conv(features, features)
        self.conv2 = _conv(features, features)
        self.prelu0 = nn.PReLU()
        self.prelu1 = nn.PReLU()

    def forward(self, nbr: Tensor, key: Tensor) -> Tensor:
        fea = self.prelu0(self.conv0(torch.cat((nbr, key), 1)))
        return torch.sigmoid(self.conv2(self.prelu1(self.conv1(fea))))


def block_flow(nbr: Tensor, key: Tensor, radius: int, box: int = 9, min_gain: float = 0.7
               ) -> Tensor:
    """Displacements ``(N, 2, H, W)``: ``key``'s content at ``x`` is ``nbr``'s at ``x + d``.

    ``nbr`` and ``key`` are images ``(N, C, H, W)`` (channels averaged). Block matching at half
    resolution: for every pixel the displacement within ``radius`` full-resolution pixels that
    minimises the mean squared difference over a ``box`` x ``box`` window, refined by a
    parabola to sub-pixel precision, then upsampled; 0 where the best match is not at least
    ``1 / min_gain`` times better than no displacement. Not differentiable (no gradient).
    """
    with torch.no_grad():
        full = key.shape[-2:]
        nbr = F.avg_pool2d(nbr.float().mean(1, keepdim=True), 2, ceil_mode=True)
        key = F.avg_pool2d(key.float().mean(1, keepdim=True), 2, ceil_mode=True)
        r = max(1, (radius + 1) // 2)
        h, w = key.shape[-2:]
        padded = F.pad(nbr, (r, r, r, r), mode="replicate")
        side = 2 * r + 1
        cost = torch.cat([(padded[..., dy:dy + h, dx:dx + w] - key).square()
                          for dy in range(side) for dx in range(side)], 1)
        cost = _box_mean(cost, max(1, box // 2) | 1)
        idx = cost.argmin(1, keepdim=True)
        iy, ix = idx // side, idx % side

        def at(yy: Tensor, xx: Tensor) -> Tensor:
            return cost.gather(1, yy.clamp(0, side - 1) * side + xx.clamp(0, side - 1))

        c0 = at(iy, ix)

        def sub(i: Tensor, cm: Tensor, cp: Tensor) -> Tensor:
            den = cm - 2 * c0 + cp
            inside = (i > 0) & (i < side - 1) & (den > 1e-12)
            step = (cm - cp) / (2 * den.clamp_min(1e-12))
            return torch.where(inside, step.clamp(-0.5, 0.5), torch.zeros_like(step))

        fy = (iy - r).to(cost.dtype) + sub(iy, at(iy - 1, ix), at(iy + 1, ix))
        fx = (ix - r).to(cost.dtype) + sub(ix, at(iy, ix - 1), at(iy, ix + 1))
        # Keep a displacement only where it matches clearly better than none: in flat or
        # blurred regions the minimum is noise.
        still = cost[:, side * r + r:side * r + r + 1]
        sure = c0 <= min_gain * still
        flow = torch.cat([fy, fx], 1) * 2 * sure
        return F.interpolate(flow, size=full, mode="bilinear", align_corners=False)


def _box_mean(x: Tensor, size: int) -> Tensor:
    """Mean over ``size`` x ``size`` windows (replicated edges), by cumulative sums."""
    p = size // 2
    x = F.pad(x, (p + 1, size - p - 1, p + 1, size - p - 1), mode="replicate")
    x = x.cumsum(-2)
    x = x[..., size:, :] - x[..., :-size, :]
    x = x.cumsum(-1)
    return (x[..., size:] - x[..., :-size]) / (size * size)


def window_velocity(ests: list[Tensor], offsets: list[int], key: int, radius: int = 4
                    ) -> Tensor:
    """Per-pixel velocity ``(B, 2, H, W)`` (dy, dx in pixels per step) of a window.

    ``ests`` are the blocks' intensity images ``(B, C, H, W)`` in time order, centred at
    ``offsets`` steps from the key block's centre. Each neighbour's :func:`block_flow` to
    the key block is fitted by least squares to its offset; displacements at the search
    limit (motion beyond ``radius``) are left out. No gradient.
    """
    with torch.no_grad():
        b = ests[key].shape[0]
        nbrs = [k for k in range(len(ests)) if k != key]
        flows = block_flow(torch.cat([ests[k] for k in nbrs]),
                           ests[key].repeat(len(nbrs), 1, 1, 1), radius).split(b)
        num = torch.zeros_like(flows[0])
        den = torch.zeros_like(flows[0][:, :1])
        for k, f in zip(nbrs, flows, strict=True):
            o = float(offsets[k])
            ok = (f.abs().amax(1, keepdim=True) < radius - 0.5).to(f.dtype)
            num += ok * f * o
            den += ok * o * o
        return num / den.clamp_min(1e-6)


class FlowHead(nn.Module):
    """Flow ``(N, 2, H, W)`` (dy, dx in pixels) that moves a neighbour block's features onto
    the key block's, from both features (and the velocity's expected displacement).

    The last convolution starts at zero: no flow, the unaligned network.
    """

    def __init__(self, features: int, extra: int) -> None:
        super().__init__()
        self.conv0 = _conv(2 * features + extra, features)
        self.conv1 = _conv(features, features)
        self.conv2 = _conv(features, 2)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(self.conv0(x)))))


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """Sample ``x (N, C, H, W)`` at each pixel plus ``flow (N, 2, H, W)`` (dy, dx in pixels);
    bilinear, border values outside."""
    n, _, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=torch.float32)
    xs = torch.arange(w, device=x.device, dtype=torch.float32)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    f = flow.float()
    sx = (gx + f[:, 1]) * (2 / max(w - 1, 1)) - 1
    sy = (gy + f[:, 0]) * (2 / max(h - 1, 1)) - 1
    # contiguous NCHW: the CPU backward of grid_sample crashed on channels-last input
    out = F.grid_sample(x.float().contiguous(), torch.stack([sx, sy], -1).contiguous(),
                        mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(x.dtype)


class BlockFeatures(NamedTuple):
    """What one 13-frame block contributes, whatever output frame it serves.

    ``l1`` (N, C, H, W) extractor features; ``l2``/``l3`` their pyramid levels (``None``
    without PDA); ``est`` (N, 4, H, W) SALI estimates.
    """

    l1: Tensor
    l2: Tensor | None
    l3: Tensor | None
    est: Tensor

    def index(self, i: int | slice | Tensor) -> BlockFeatures:
        return BlockFeatures(*(None if t is None else t[i] for t in self))


def _stack(items: list[BlockFeatures]) -> BlockFeatures:
    return BlockFeatures(*(None if parts[0] is None else torch.cat(parts, 0)  # type: ignore[arg-type]
                           for parts in zip(*items, strict=True)))


class Spk2ImgNet(nn.Module):
    """``(B, 41, H, W)`` float 0/1 spikes -> ``(image (B, 1, H, W), [5 x estimates (B, 4, H, W)])``.

    H and W must be multiples of 4.
    """

    def __init__(self, config: Spk2ImgNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or Spk2ImgNetConfig()
        f = cfg.features
        self.extractor = FeatureExtractor(cfg)
        self.neighbours = [k for k in range(cfg.num_temporal_blocks) if k != cfg.key_block]
        self.side_extractors = nn.ModuleList(
            [FeatureExtractor(cfg) for _ in self.neighbours]) if cfg.separate_encoders else None
        if cfg.re:
            for k in self.neighbours:
                setattr(self, f"mask{k}", FusionMask(f))
        self.flow_heads = nn.ModuleList(
            [FlowHead(f, 2 if cfg.motion_input else 0) for _ in self.neighbours]
        ) if cfg.flow_align else None
        self.rec_conv0 = _conv(cfg.num_temporal_blocks * f + (2 if cfg.motion_input else 0),
                               3 * f)
        self.rec_conv1 = _conv(3 * f, f)
        self.fusion_net = nn.Sequential(
            *[BasicBlock(f) for _ in range(cfg.fusion_blocks)]) if cfg.fusion_blocks else None
        self.rec_conv2 = _conv(f, 1)
        self.pcd_align = PyramidAlign(f, cfg.deform_groups) if cfg.pda else None

    # -- the two halves ----------------------------------------------------------------
    def encode(self, blocks: Tensor, position: int | None = None) -> BlockFeatures:
        """Blocks ``(N, 13, H, W)`` at window ``position`` -> their :class:`BlockFeatures`.

        ``position`` (0 .. 4) matters only with ``separate_encoders``.
        """
        extractor = self.extractor
        if self.side_extractors is not None and position is not None \
                and position != self.config.key_block:
            extractor = self.side_extractors[self.neighbours.index(position)]
        l1, est = extractor(blocks)
        if self.pcd_align is None:
            return BlockFeatures(l1, None, None, est)
        l2, l3 = self.pcd_align.pyramid(l1)
        return BlockFeatures(l1, l2, l3, est)

    def fuse(self, blocks: list[BlockFeatures]) -> Tensor:
        """Five blocks' features (each batch B, in time order) -> images ``(B, 1, H, W)``."""
        cfg = self.config
        key = blocks[cfg.key_block]
        nbrs = [blocks[k] for k in self.neighbours]
        b = key.l1.shape[0]
        if self.pcd_align is not None:
            # The one alignment module serves all neighbours: run them as one batch.
            nb = _stack(nbrs)
            rep = len(nbrs)
            kk = [t.repeat(rep, 1, 1, 1) for t in (key.l1, key.l2, key.l3)]  # type: ignore[union-attr]
            aligned_all = self.pcd_align.pcd_align((nb.l1, nb.l2, nb.l3), tuple(kk))  # type: ignore[arg-type]
            aligned = list(aligned_all.split(b, 0))
        else:
            aligned = [n.l1 for n in nbrs]
        v = window_velocity([bl.est for bl in blocks], cfg.block_offsets(), cfg.key_block) \
            if cfg.motion_input else None
        if self.flow_heads is not None:
            offsets = cfg.block_offsets()
            flows = [head(torch.cat([key.l1, a] + ([(v * offsets[k]).to(a.dtype)]
                                                    if v is not None else []), 1))
                     for head, k, a in zip(self.flow_heads, self.neighbours, aligned,
                                           strict=True)]
            # one warp for all neighbours (one grid, one grid_sample)
            aligned = list(warp(torch.cat(aligned), torch.cat(flows)).split(b, 0))
        if cfg.re:
            aligned = [a * getattr(self, f"mask{k}")(a, key.l1)
                       for k, a in zip(self.neighbours, aligned, strict=True)]
        parts = aligned[:cfg.key_block] + [key.l1] + aligned[cfg.key_block:]
        if v is not None:
            parts.append((v * cfg.block_step).to(key.l1.dtype))
        out = F.relu(self.rec_conv0(torch.cat(parts, 1)))
        out = F.relu(self.rec_conv1(out))
        if self.fusion_net is not None:
            out = self.fusion_net(out)
        return self.rec_conv2(out)

    def split_blocks(self, x: Tensor) -> list[Tensor]:
        """A window ``(B, 41, H, W)`` -> its five blocks ``(B, 13, H, W)``."""
        cfg = self.config
        if x.shape[1] != cfg.window:
            raise ValueError(f"expected {cfg.window} spike frames, got {x.shape[1]}")
        n = cfg.block_length
        return [x[:, k * cfg.block_step:k * cfg.block_step + n]
                for k in range(cfg.num_temporal_blocks)]

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        blocks = self.split_blocks(x)
        if self.side_extractors is not None:
            per_block = [self.encode(blk, k) for k, blk in enumerate(blocks)]
            return self.fuse(per_block), [f.est for f in per_block]
        b = x.shape[0]
        feats = self.encode(torch.cat(blocks, 0))
        per_block = [feats.index(slice(k * b, (k + 1) * b)) for k in range(len(blocks))]
        return self.fuse(per_block), [f.est for f in per_block]
