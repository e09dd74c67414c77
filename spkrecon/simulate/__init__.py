"""Spike camera simulator: integrate-and-fire core, noise, motion synthesis, scenes.

Batched torch API (CPU or GPU), e.g. for training on the fly::

    g = make_generator(seed, device)
    scene = random_motion_scene(crops, (40, 40), 41, MotionConfig(), g)   # crops (B, H, W)
    res = simulate_batch(scene, 41, noise=NoiseModel(), generator=g, gt_steps=BLOCK_CENTRES)
    res.spikes  # (B, 41, 40, 40) bool;  res.gt  # (B, 5, 40, 40) light in [0, 1]

File-level simulation (``spkrecon simulate``) is :func:`spkrecon.simulate.runner.simulate_file`.
"""

from spkrecon.simulate.core import (
    SimChunk,
    SimResult,
    SpikeCamera,
    iter_simulation,
    make_generator,
    simulate_batch,
)
from spkrecon.simulate.motion import (
    MotionConfig,
    MotionScene,
    Sprites,
    Trajectory,
    prepare_background,
    random_motion_scene,
    random_sprites,
)
from spkrecon.simulate.noise import NOISE_LEVELS, NoiseModel, noise_from_name
from spkrecon.simulate.scenes import FrameScene, Scene, StaticScene, VideoScene
from spkrecon.simulate.training import BLOCK_CENTRES, random_crops, training_batch

__all__ = [
    "BLOCK_CENTRES", "NOISE_LEVELS", "FrameScene", "MotionConfig", "MotionScene", "NoiseModel",
    "Scene", "SimChunk", "SimResult", "SpikeCamera", "Sprites", "StaticScene", "Trajectory",
    "VideoScene", "iter_simulation", "make_generator", "noise_from_name", "prepare_background",
    "random_crops", "random_motion_scene", "random_sprites", "simulate_batch", "training_batch",
]
