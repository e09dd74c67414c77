"""Training configuration: one dataclass holding every option of ``spkrecon train``.

No torch import here (the CLI builds and validates a config before importing torch).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from spkrecon.errors import ParameterError

#: Architectures ``--model`` accepts: the full network, the CPU lite network, the paper's
#: ablations. Width/depth overrides apply on top.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "full": {"sali": True, "pda": True, "re": True, "features": 64, "num_blocks": 10},
    "lite": {"sali": True, "pda": False, "re": False, "features": 24, "num_blocks": 3,
             "raw_skip": True, "motion_input": True, "separate_encoders": True,
             "flow_align": True},
    "net_a": {"sali": False, "pda": False, "re": False},
    "net_b": {"sali": True, "pda": False, "re": False},
    "net_c": {"sali": False, "pda": True, "re": False},
    "net_d": {"sali": True, "pda": True, "re": False},
    "net_e": {"sali": True, "pda": True, "re": True},
}
SCHEDULES = ("cosine", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16")


def default_validation_dir() -> Path | None:
    """The shared REDS samples (``../shared/data/spikes/reds_sim`` beside the repository, or
    under ``$SPKRECON_SHARED``) when present, else ``None``."""
    import spkrecon

    env = os.environ.get("SPKRECON_SHARED")
    root = Path(env) if env else Path(spkrecon.__file__).resolve().parents[1].parent / "shared"
    d = root / "data" / "spikes" / "reds_sim"
    return d if d.is_dir() and any(d.glob("*.dat")) else None


@dataclass
class TrainConfig:
    """Every option of a training run (saved in checkpoints and weights metadata).

    Batch size is per process: with ``torchrun --nproc-per-node N`` each step sees
    ``N * batch_size`` samples. ``steps`` is the length of the learning-rate schedule;
    ``max_minutes`` stops a run cleanly before that (and, with ``time_schedule``, squeezes
    the schedule into the budget so the run ends at the low learning rate).
    """

    # -- model
    model: str = "full"
    features: int | None = None
    num_blocks: int | None = None
    fusion_blocks: int | None = None
    flow_align: bool | None = None
    # -- data
    images: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    dataset: list[str] = field(default_factory=list)
    #: Share of each batch from frame sequences (when images are given too).
    video_share: float = 0.25
    #: Share of each batch from dataset folders (when simulated sources are given too).
    dataset_share: float = 0.5
    patch: int = 40
    batch_size: int = 16
    augment: bool = True
    alpha: float = 0.6
    # -- simulation on the fly
    max_speed: float = 4.0
    camera_max_speed: float = 2.0
    static_prob: float = 0.15
    objects: int = 3
    #: Probability that a batch gets sensor noise, and the largest noise scale (x SCSim).
    noise_prob: float = 0.3
    noise_max: float = 1.0
    #: Probability that a sample is dimmed, and the dimmest light gain.
    dim_prob: float = 0.3
    dim_min: float = 0.2
    #: Source-image zoom-out range (a crop covers ``patch / scale`` source pixels).
    scale_min: float = 0.5
    scale_max: float = 1.0
    #: Readout steps per video frame (random in this range).
    video_steps_per_frame: tuple[float, float] = (8.0, 40.0)
    video_interp: str = "flow"
    #: Time of the simulated ground truth relative to each block centre, in readout steps
    #: (the REDS samples' key frame sits 0.5 steps after its spike frame).
    gt_offset: float = 0.0
    #: Resampling of moving images (``bilinear`` or ``bicubic``; see ``MotionConfig``).
    resample: str = "bilinear"
    #: Resampling of the ground truth of moving photos (default: as ``resample``); sharper
    #: truth than input teaches the network to sharpen.
    gt_resample: str | None = None
    #: Moving photos seen at a whole-pixel position at the key frame's ground-truth time:
    #: an unresampled, sharp truth (like an original frame among interpolated ones).
    sharp_key: bool = False
    #: Longest image side kept in memory (larger images are scaled down once when loaded).
    max_side: int = 800
    # -- optimisation
    steps: int = 200_000
    lr: float = 1e-4
    lr_min: float = 1e-6
    schedule: str = "cosine"
    warmup: int = 0
    lam: float = 0.02
    grad_clip: float = 0.0
    #: Decay of an exponential moving average of the weights (0: off). With it, validation,
    #: best.pt and weights.pt use the averaged weights.
    ema: float = 0.0
    time_schedule: bool = False
    #: Weights to start from (fine-tuning): a spkrecon weights file or a run's ``last.pt``.
    #: The optimizer, step count and schedule start afresh; ``--resume`` takes precedence.
    init: str | None = None
    # -- run
    max_minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    #: NHWC memory format (faster convolutions on CPUs and recent GPUs).
    channels_last: bool = True
    out: str = "runs/spk2imgnet"
    checkpoint_minutes: float = 10.0
    log_every: int = 20
    # -- validation
    val_dir: str | None = None
    val_every: int = 1000
    val_minutes: float | None = None
    val_limit: int | None = None

    def model_config(self) -> Any:
        """The :class:`~spkrecon.models.spk2imgnet.Spk2ImgNetConfig` to train."""
        from spkrecon.models.spk2imgnet import Spk2ImgNetConfig

        base = dict(MODEL_PRESETS[self.model])
        if self.features is not None:
            base["features"] = self.features
        if self.num_blocks is not None:
            base["num_blocks"] = self.num_blocks
        if self.fusion_blocks is not None:
            base["fusion_blocks"] = self.fusion_blocks
        if self.flow_align is not None:
            base["flow_align"] = self.flow_align
        try:
            return Spk2ImgNetConfig(**base)
        except ValueError as exc:
            raise ParameterError(f"invalid model: {exc}") from None

    def validate(self) -> None:
        """Raise ParameterError for inconsistent options (no file access)."""
        if self.model not in MODEL_PRESETS:
            raise ParameterError(f"unknown model '{self.model}'",
                                 f"use one of {', '.join(MODEL_PRESETS)}")
        if self.patch < 8 or self.patch % 4:
            raise ParameterError(f"patch must be a multiple of 4 and at least 8, got {self.patch}")
        if self.batch_size < 1:
            raise ParameterError(f"batch size must be at least 1, got {self.batch_size}")
        if self.steps < 1:
            raise ParameterError(f"steps must be at least 1, got {self.steps}")
        if not self.lr > 0 or self.lr_min < 0 or self.lr_min > self.lr:
            raise ParameterError(f"need 0 <= lr_min <= lr and lr > 0 (lr {self.lr}, "
                                 f"lr_min {self.lr_min})")
        if self.schedule not in SCHEDULES:
            raise ParameterError(f"unknown schedule '{self.schedule}'",
                                 f"use one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ParameterError(f"unknown precision '{self.precision}'",
                                 f"use one of {', '.join(PRECISIONS)}")
        if self.video_interp not in ("linear", "flow"):
            raise ParameterError(f"unknown video interpolation '{self.video_interp}'",
                                 "use linear or flow")
        for name in ("video_share", "dataset_share", "noise_prob", "dim_prob", "static_prob"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ParameterError(f"{name.replace('_', ' ')} must be in [0, 1], got {v}")
        if not 0 < self.dim_min <= 1:
            raise ParameterError(f"dim min must be in (0, 1], got {self.dim_min}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ParameterError(f"need 0 < scale min <= scale max, got "
                                 f"{self.scale_min}, {self.scale_max}")
        lo, hi = self.video_steps_per_frame
        if not 0 < lo <= hi:
            raise ParameterError(f"video steps per frame must be 0 < lo <= hi, got {lo, hi}")
        from spkrecon.simulate.motion import RESAMPLE

        for r in (self.resample, self.gt_resample or self.resample):
            if r not in RESAMPLE:
                raise ParameterError(f"unknown resampling '{r}'",
                                     f"use one of {', '.join(RESAMPLE)}")
        if not -7 <= self.gt_offset <= 7:
            raise ParameterError(f"gt_offset must be in [-7, 7] readout steps, got "
                                 f"{self.gt_offset}")
        if not 0 < self.alpha <= 1:
            raise ParameterError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ParameterError(f"max minutes must be positive, got {self.max_minutes}")
        if not 0 <= self.ema < 1:
            raise ParameterError(f"ema must be in [0, 1), got {self.ema}",
                                 "use a decay such as 0.999, or 0 to turn it off")
        if self.lam < 0 or self.noise_max < 0 or self.max_speed < 0 or self.camera_max_speed < 0:
            raise ParameterError("lambda, noise max and speeds must be >= 0")
        if self.log_every < 1 or self.val_every < 0 or self.warmup < 0:
            raise ParameterError("log every >= 1, val every >= 0 and warmup >= 0 are required")
        if not (self.images or self.videos or self.dataset):
            raise ParameterError("no training data given",
                                 "pass --images FOLDER, --videos FOLDER or --dataset FOLDER")
        self.model_config()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["video_steps_per_frame"] = list(self.video_steps_per_frame)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ParameterError(f"unknown training options: {', '.join(bad)}")
        d = dict(d)
        if "video_steps_per_frame" in d:
            d["video_steps_per_frame"] = tuple(d["video_steps_per_frame"])
        return cls(**d)
