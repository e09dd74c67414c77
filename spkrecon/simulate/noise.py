"""Sensor noise model of the spike camera simulator.

The default figures are those of SCSim (Zhao et al., "SCSim: a realistic spike cameras
simulator", ICME 2024), expressed in the simulator's units: light in [0, 1] (grey / 255),
a nominal threshold ``theta`` of 1, one readout step as the time unit.

- dark current, per pixel: N(0.4442, 0.1731) grey levels, i.e. N(0.4442, 0.1731) / 255
  threshold units added every step whatever the light (about one dark spike per 570 steps);
- capacitance, per pixel: N(4.348, 0.0128); the threshold scales with it (C / 4.348);
- threshold offset, per pixel: N(-0.0076, 0.0497) threshold units;
- threshold jitter, per pixel and step: N(0, 0.00636) threshold units;
- photo-response non-uniformity (gain), per pixel: N(1.0128, 0.0584) / 1.0128;
- photon shot noise: Poisson(5e4 * I) / 5e4 per step, drawn as its normal approximation
  N(I, I / 5e4) (exact to well under a grey level above I = 1e-3, where it is negligible).

``scale`` multiplies every spread and the dark current (shot noise variance by ``scale**2``);
``scale=0`` is the noise-free sensor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from spkrecon.errors import ParameterError

#: Names accepted by :func:`noise_from_name`.
NOISE_LEVELS = ("off", "realistic")


@dataclass(frozen=True)
class NoiseModel:
    """Per-pixel fixed-pattern and per-step temporal noise of the sensor (SCSim defaults)."""

    dark_current_mean: float = 0.4442 / 255
    dark_current_std: float = 0.1731 / 255
    capacitance_mean: float = 4.348
    capacitance_std: float = 0.0128
    threshold_offset_mean: float = -0.0076
    threshold_offset_std: float = 0.0497
    threshold_jitter_std: float = 0.00636
    prnu_mean: float = 1.0128
    prnu_std: float = 0.0584
    #: Photons per step at full-scale light; 0 turns shot noise off.
    photons: float = 5e4
    #: Fraction of hot pixels (dark current drawn from ``hot_pixel_rate`` spikes per step).
    hot_pixel_fraction: float = 0.0
    hot_pixel_rate: tuple[float, float] = (0.05, 0.5)
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.scale < 0:
            raise ParameterError(f"noise scale must be >= 0, got {self.scale}")
        if self.capacitance_mean <= 0 or self.prnu_mean <= 0:
            raise ParameterError("capacitance and PRNU means must be positive")
        if self.photons < 0:
            raise ParameterError(f"photons must be >= 0, got {self.photons}")
        if not 0 <= self.hot_pixel_fraction <= 1:
            raise ParameterError(
                f"hot pixel fraction must be in [0, 1], got {self.hot_pixel_fraction}")
        lo, hi = self.hot_pixel_rate
        if not 0 <= lo <= hi:
            raise ParameterError(f"hot pixel rate range must be 0 <= lo <= hi, got {lo, hi}")
        for name in ("dark_current_std", "capacitance_std", "threshold_offset_std",
                     "threshold_jitter_std", "prnu_std"):
            if getattr(self, name) < 0:
                raise ParameterError(f"{name} must be >= 0")

    # -- effective figures after ``scale`` ------------------------------------------------
    @property
    def is_off(self) -> bool:
        return self.scale == 0 and self.hot_pixel_fraction == 0

    @property
    def shot_photons(self) -> float:
        """Effective full-scale photons per step (inf: no shot noise)."""
        if self.photons == 0 or self.scale == 0:
            return float("inf")
        return self.photons / self.scale**2

    @property
    def has_temporal(self) -> bool:
        """Whether fresh random numbers are drawn every step."""
        return self.scale > 0 and (self.threshold_jitter_std > 0 or self.photons > 0)

    def scaled(self, scale: float) -> NoiseModel:
        """The same model at another ``scale``."""
        return replace(self, scale=float(scale))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hot_pixel_rate"] = list(self.hot_pixel_rate)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NoiseModel:
        known = set(cls.__dataclass_fields__)
        bad = [k for k in d if k not in known]
        if bad:
            raise ParameterError(f"unknown noise parameters: {', '.join(bad)}")
        d = dict(d)
        if "hot_pixel_rate" in d:
            d["hot_pixel_rate"] = tuple(d["hot_pixel_rate"])
        return cls(**d)


def noise_from_name(name: str, scale: float = 1.0) -> NoiseModel | None:
    """``"off"`` -> ``None``; ``"realistic"`` -> SCSim figures times ``scale``."""
    key = name.lower()
    if key not in NOISE_LEVELS:
        raise ParameterError(f"unknown noise level '{name}'",
                             f"use one of {', '.join(NOISE_LEVELS)}")
    if key == "off" or scale == 0:
        return None
    return NoiseModel(scale=float(scale))
