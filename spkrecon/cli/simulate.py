"""``spkrecon simulate`` and ``spkrecon dataset make``: the spike camera simulator's commands.

Mounted by ``spkrecon.cli.app``; torch and the simulator are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from spkrecon.cli._common import Force, Quiet, guarded, info
from spkrecon.cli._common import given as given_option

_SENSOR = "Sensor"
_MOTION = "Motion (still images)"
_VIDEO = "Frames and video"
_OUT = "Ground truth and output"

Alpha = Annotated[float, typer.Option("--alpha", help="Conversion rate: spikes per step at "
                                      "full light (REDS convention 0.6).",
                                      rich_help_panel=_SENSOR)]
Theta = Annotated[float, typer.Option("--theta", help="Firing threshold.",
                                      rich_help_panel=_SENSOR)]
Noise = Annotated[str, typer.Option("--noise", help="Sensor noise: off or realistic (SCSim "
                                    "figures).", rich_help_panel=_SENSOR)]
NoiseScale = Annotated[float, typer.Option("--noise-scale", help="Multiply every noise spread "
                                           "by this (with --noise realistic).",
                                           rich_help_panel=_SENSOR)]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (motion, phases, noise).")]
SimHeight = Annotated[int, typer.Option("--height", help="Sensor height.",
                                        rich_help_panel=_SENSOR)]
SimWidth = Annotated[int, typer.Option("--width", help="Sensor width.",
                                       rich_help_panel=_SENSOR)]
MaxSpeed = Annotated[float, typer.Option("--max-speed", help="Fastest moving object, pixels "
                                         "per readout step.", rich_help_panel=_MOTION)]
CameraSpeed = Annotated[float, typer.Option("--camera-speed", help="Fastest camera pan, pixels "
                                            "per readout step.", rich_help_panel=_MOTION)]
Resample = Annotated[str, typer.Option("--resample", help="Resampling of moving images: "
                                       "bilinear, or bicubic (keeps more fine detail).",
                                       rich_help_panel=_MOTION)]
StepsPerFrame = Annotated[float, typer.Option("--steps-per-frame", help="Readout steps per "
                                              "video frame.", rich_help_panel=_VIDEO)]
Interp = Annotated[str, typer.Option("--interp", help="Between video frames: flow (optical-"
                                     "flow warping) or linear (blending).",
                                     rich_help_panel=_VIDEO)]
Threads = Annotated[int | None, typer.Option(
    "--threads", min=1, help="CPU threads for torch (default: torch's choice; 1 is much "
    "faster on a busy machine).")]


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _check_device(device: str) -> None:
    import torch

    from spkrecon.errors import DeviceError

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device '{device}'", "use cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA is not available here", "use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device '{device}' is not supported", "use cpu or cuda[:N]")


def _noise_dict(level: str, scale: float) -> dict[str, Any] | None:
    from spkrecon.simulate.noise import noise_from_name

    model = noise_from_name(level, scale)
    return model.to_dict() if model is not None else None


def _motion_dict(mode: str, objects: int, max_speed: float, camera_speed: float,
                 resample: str = "bilinear") -> dict[str, Any] | None:
    from spkrecon.errors import ParameterError
    from spkrecon.simulate.motion import MotionConfig

    if mode == "none":
        return None
    if mode != "random":
        raise ParameterError(f"unknown motion '{mode}'", "use random or none")
    if objects < 0:
        raise ParameterError(f"--objects must be >= 0, got {objects}")
    return MotionConfig(max_speed=max_speed, camera_max_speed=camera_speed,
                        objects=(objects, objects), resample=resample.lower()).to_dict()


#: ``simulate``'s motion options and the ``MotionConfig`` fields they set.
_MOTION_FIELDS = {"objects": "objects", "max_speed": "max_speed",
                  "camera_speed": "camera_max_speed", "resample": "resample"}


def _override_motion(base: dict[str, Any] | None, config: Path, given: Any, *, motion: str,
                     **options: Any) -> dict[str, Any] | None:
    """The sidecar's motion with the motion options given on the command line on top."""
    from spkrecon.errors import ParameterError
    from spkrecon.simulate.motion import MotionConfig

    named = [k for k in _MOTION_FIELDS if given(k)]
    if given("motion"):
        if motion == "none":
            if named:
                raise ParameterError(f"--{named[0].replace('_', '-')} has no effect with "
                                     "--motion none")
            return None
        if base is None:
            base = _motion_dict(motion, **{k: options[k] for k in _MOTION_FIELDS})
    if not named:
        return base
    if base is None:
        raise ParameterError(f"--{named[0].replace('_', '-')} has no effect: the run in "
                             f"{config} does not move (--motion none)",
                             "add --motion random")
    d = dict(base)
    for k in named:
        v = options[k]
        d[_MOTION_FIELDS[k]] = [v, v] if k == "objects" else (
            v.lower() if k == "resample" else v)
    if given("objects") and options["objects"] < 0:
        raise ParameterError(f"--objects must be >= 0, got {options['objects']}")
    return MotionConfig.from_dict(d).to_dict()


def simulate(
    ctx: typer.Context,
    input: Annotated[Path | None, typer.Argument(
        help="An image, a folder of frames or a video file (optional with --config).",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Output X.dat (default: the input's name, here); X.json (every "
        "parameter) and X_gt/ (ground truth) go beside it.", show_default=False)] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Readout steps (default: 301 "
                                              "for an image, the whole clip for frames).")
                     ] = None,
    motion: Annotated[str, typer.Option("--motion", help="Still images: random (smooth random "
                                        "camera path) or none.", rich_help_panel=_MOTION)
                      ] = "random",
    objects: Annotated[int, typer.Option("--objects", help="Moving objects over a still image "
                                         "(sprites cut from --sprites or the image).",
                                         rich_help_panel=_MOTION)] = 0,
    max_speed: MaxSpeed = 4.0, camera_speed: CameraSpeed = 1.0, resample: Resample = "bilinear",
    sprites: Annotated[Path | None, typer.Option("--sprites", help="Image or folder to cut "
                                                 "moving objects from.",
                                                 rich_help_panel=_MOTION)] = None,
    steps_per_frame: StepsPerFrame = 8.0, interp: Interp = "flow",
    alpha: Alpha = 0.6, theta: Theta = 1.0, noise: Noise = "off", noise_scale: NoiseScale = 1.0,
    substeps: Annotated[int, typer.Option("--substeps", help="Light samples averaged within "
                                          "each step (motion blur inside a step).",
                                          rich_help_panel=_SENSOR)] = 1,
    height: SimHeight = 250, width: SimWidth = 400, seed: Seed = 0,
    gt_step: Annotated[list[int] | None, typer.Option("--gt-step", help="Save the light at "
                                                      "this step (0-based, repeatable; default "
                                                      "the middle step).",
                                                      rich_help_panel=_OUT)] = None,
    gt_every: Annotated[int | None, typer.Option("--gt-every", help="Also save every N-th "
                                                 "step.", rich_help_panel=_OUT)] = None,
    gt_all: Annotated[bool, typer.Option("--gt-all", help="Also save every step's light as "
                                         "float16 X_gt/light.npy.", rich_help_panel=_OUT)
                      ] = False,
    config: Annotated[Path | None, typer.Option("--config", help="Repeat a run: take every "
                                                "parameter from its sidecar .json (options "
                                                "given here override).")] = None,
    chunk: Annotated[int, typer.Option("--chunk", help="Readout steps generated at a time.")
                     ] = 16,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda[:N].")] = "cpu",
    threads: Threads = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sidecar on stdout.")
                       ] = False,
    force: Force = False, quiet: Quiet = False,
) -> None:
    """Simulate a spike camera watching an image, a frame folder or a video: writes a .dat,
    ground-truth PNGs and a JSON sidecar that repeats the run bit for bit."""
    from spkrecon.errors import InputError, ParameterError
    from spkrecon.simulate.runner import (
        SimulateConfig,
        check_outputs,
        load_sidecar_config,
        simulate_file,
    )
    from spkrecon.simulate.scenes import input_kind

    def given(name: str) -> bool:
        return given_option(ctx, name)

    fields: dict[str, Any] = {
        "height": height, "width": width, "steps": steps, "steps_per_frame": steps_per_frame,
        "interp": interp, "alpha": alpha, "theta": theta,
        "sprites": str(sprites) if sprites is not None else None, "substeps": substeps,
        "seed": seed, "gt_steps": list(gt_step) if gt_step else None, "gt_every": gt_every,
        "gt_all": gt_all, "chunk": chunk, "device": device,
    }
    option_of = {"gt_steps": "gt_step"}
    if config is not None:
        cfg, sidecar = load_sidecar_config(config)
        for key, val in fields.items():
            if given(option_of.get(key, key)):
                setattr(cfg, key, val)
        if given("noise") or given("noise_scale"):
            level = noise if given("noise") else ("realistic" if cfg.noise else "off")
            scale = noise_scale if given("noise_scale") else float(
                (cfg.noise or {}).get("scale", 1.0))
            if level == "off" and given("noise_scale"):
                raise ParameterError("--noise-scale has no effect without noise",
                                     f"the run in {config} is noise-free: add --noise "
                                     "realistic")
            cfg.noise = _noise_dict(level, scale)
        cfg.motion = _override_motion(cfg.motion, config, given, motion=motion, objects=objects,
                                      max_speed=max_speed, camera_speed=camera_speed,
                                      resample=resample)
        if input is None:
            input = Path(sidecar.get("input", {}).get("path", ""))
    else:
        if given("noise_scale") and noise == "off":
            raise ParameterError("--noise-scale has no effect without noise",
                                 "add --noise realistic")
        still = [k for k in _MOTION_FIELDS if given(k)] if motion == "none" else []
        if still:
            raise ParameterError(f"--{still[0].replace('_', '-')} has no effect with "
                                 "--motion none")
        cfg = SimulateConfig(**fields, noise=_noise_dict(noise, noise_scale),
                             motion=_motion_dict(motion, objects, max_speed, camera_speed,
                                                 resample))
    if input is None or not str(input):
        raise InputError("no input given", "pass an image, a folder of frames or a video")
    cfg.validate()
    _check_device(cfg.device)
    kind = input_kind(input)
    only = (("steps_per_frame", "interp") if kind == "image" else
            ("motion", *_MOTION_FIELDS, "sprites"))
    wrong = [k for k in only if given(k)]
    if wrong:
        what = "frame folders and videos" if kind == "image" else "still images"
        raise ParameterError(f"--{wrong[0].replace('_', '-')} applies to {what}, not to "
                             f"{'an image' if kind == 'image' else 'a ' + kind} input")
    if given("sprites"):
        from spkrecon.simulate.motion import MotionConfig

        mcfg = MotionConfig.from_dict(cfg.motion) if cfg.motion is not None else None
        if mcfg is None or not mcfg.objects[1]:
            raise ParameterError("--sprites has no effect without moving objects",
                                 "add --objects N (N >= 1)")
        if not Path(cfg.sprites or "").exists():
            raise InputError(f"--sprites {cfg.sprites}: no such file or folder")
    if output is None:
        output = Path(Path(input).resolve().name).with_suffix(".dat")
    check_outputs(output, force)
    _set_threads(threads)

    if quiet or as_json:
        record = simulate_file(input, output, cfg, force=force)
    else:
        record = _with_progress(input, output, cfg, force)
    if as_json:
        typer.echo(json.dumps(record, indent=2))
    elif not quiet:
        rec = record["recording"]
        info(f"wrote {output} ({rec['frames']} frames, {rec['width']}x{rec['height']}, mean "
             f"rate {rec['mean_rate']:.3f}), {output.with_suffix('.json').name} and "
             f"{record['outputs']['gt_dir']}/ ({len(record['gt_steps'])} ground-truth "
             f"frame{'s' if len(record['gt_steps']) != 1 else ''}); "
             f"{record['steps_per_second']:.0f} steps/s")


def _with_progress(input: Path, output: Path, cfg: Any, force: bool) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from spkrecon.simulate.runner import simulate_file

    columns = (TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(),
               TextColumn("steps"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("simulate", total=None)

        return simulate_file(input, output, cfg, force=force,
                             on_start=lambda n: bar.update(task, total=n),
                             on_chunk=lambda n: bar.advance(task, n))


dataset_app = typer.Typer(help="Build simulated spike datasets.", no_args_is_help=True,
                          add_completion=False)


@dataset_app.command("make")
@guarded
def make(
    output: Annotated[Path, typer.Argument(help="Folder to create.", show_default=False)],
    kind: Annotated[str, typer.Option("--kind", help="test: X.dat + X.png, 301 steps, ground "
                                      "truth at key frame 151 (Spike40/REDS layout); train: "
                                      "input/X.dat + gt/X_{7,14,21,28,35}.png, 41 steps "
                                      "(Spk2ImgNet layout).")] = "test",
    images: Annotated[list[Path] | None, typer.Option("--images", help="Folder of still images "
                                                      "(searched recursively; repeatable).")
                      ] = None,
    videos: Annotated[list[Path] | None, typer.Option("--videos", help="Folder of frame "
                                                      "folders or video files (repeatable).")
                      ] = None,
    count: Annotated[int | None, typer.Option("--count", help="Recordings to make (default 40 "
                                              "for test, 200 for train).")] = None,
    video_share: Annotated[float, typer.Option("--video-share", help="Share of recordings made "
                                               "from frame sequences when both are given.")
                           ] = 0.5,
    objects: Annotated[int, typer.Option("--objects", help="At most this many moving objects "
                                         "over a still image.", rich_help_panel=_MOTION)] = 3,
    max_speed: MaxSpeed = 4.0, camera_speed: CameraSpeed = 1.0, resample: Resample = "bilinear",
    steps_per_frame: StepsPerFrame = 10.0, interp: Interp = "flow",
    alpha: Alpha = 0.6, noise: Noise = "off", noise_scale: NoiseScale = 1.0,
    height: SimHeight = 250, width: SimWidth = 400, seed: Seed = 0, threads: Threads = None,
    force: Force = False, quiet: Quiet = False,
) -> None:
    """Build a test set (Spike40/REDS layout) or a training set (Spk2ImgNet layout) from
    folders of images and frame sequences."""
    from spkrecon.datasets import DatasetConfig, collect_sources, dataset_foreign, make_dataset
    from spkrecon.errors import ParameterError
    from spkrecon.export.atomic import check_output
    from spkrecon.simulate.motion import MotionConfig

    if objects < 0:
        raise ParameterError(f"--objects must be >= 0, got {objects}")
    n = count if count is not None else (40 if kind == "test" else 200)
    cfg = DatasetConfig(kind=kind, count=n, height=height, width=width, seed=seed, alpha=alpha,
                        noise=_noise_dict(noise, noise_scale),
                        motion=MotionConfig(max_speed=max_speed, camera_max_speed=camera_speed,
                                            objects=(0, objects),
                                            resample=resample.lower()).to_dict(),
                        steps_per_frame=steps_per_frame, interp=interp,
                        video_share=video_share)
    cfg.validate()
    check_output(output, force, kind="dir", foreign=dataset_foreign)
    sources = collect_sources(images or [], videos or [])
    _set_threads(threads)
    if not quiet:
        info(f"{len(sources.images)} images and {len(sources.clips)} frame sequences found")
    if quiet:
        manifest = make_dataset(output, cfg, sources, force=force)
    else:
        manifest = _dataset_with_bar(output, cfg, sources, force)
    if not quiet:
        info(f"wrote {len(manifest['samples'])} {kind} recordings to {output}")


def _dataset_with_bar(output: Path, cfg: Any, sources: Any, force: bool) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from spkrecon.datasets import make_dataset

    columns = (TextColumn(f"[bold]{cfg.kind} set"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("dataset", total=cfg.count)
        return make_dataset(output, cfg, sources, force=force,
                            on_sample=lambda _: bar.advance(task))


__all__ = ["dataset_app", "simulate"]
