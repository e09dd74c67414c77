"""``spkrecon train``: train Spk2ImgNet on data simulated on the fly or a dataset folder.

Mounted by ``spkrecon.cli.app``; torch is imported inside the command. Under ``torchrun``
every process runs this command; only process 0 prints.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from spkrecon.cli._common import Force, Quiet, err_console, info

_DATA = "Data"
_SIM = "Simulation on the fly"
_MODEL = "Model"
_OPT = "Optimisation"
_RUN = "Run"
_VAL = "Validation"


def train(
    images: Annotated[list[Path] | None, typer.Option(
        "--images", help="Folder of still images (searched recursively; repeatable), moved "
        "and simulated on the fly.", rich_help_panel=_DATA, show_default=False)] = None,
    videos: Annotated[list[Path] | None, typer.Option(
        "--videos", help="Folder of frame sequences (one sub-folder of numbered images per "
        "clip; repeatable), simulated on the fly.", rich_help_panel=_DATA,
        show_default=False)] = None,
    dataset: Annotated[list[Path] | None, typer.Option(
        "--dataset", help="Dataset folder in the authors' layout: input/X.dat (41 frames), "
        "gt/X_7.png .. gt/X_35.png (repeatable).", rich_help_panel=_DATA,
        show_default=False)] = None,
    video_share: Annotated[float, typer.Option(
        "--video-share", help="Share of each batch from --videos (with --images).",
        rich_help_panel=_DATA)] = 0.25,
    dataset_share: Annotated[float, typer.Option(
        "--dataset-share", help="Share of each batch from --dataset (with simulated data).",
        rich_help_panel=_DATA)] = 0.5,
    patch: Annotated[int, typer.Option("--patch", help="Training patch size (pixels).",
                                       rich_help_panel=_DATA)] = 40,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Samples per step and "
                                            "process.", rich_help_panel=_DATA)] = 16,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Random rotations "
                                          "by 90 degrees and flips.",
                                          rich_help_panel=_DATA)] = True,
    alpha: Annotated[float, typer.Option("--alpha", help="Conversion rate of the data "
                                         "(targets are alpha * light).",
                                         rich_help_panel=_DATA)] = 0.6,
    gt_offset: Annotated[float, typer.Option(
        "--gt-offset", help="Simulated ground truth this many readout steps after each block "
        "centre (0.5 matches the REDS samples' timing).", rich_help_panel=_SIM)] = 0.0,
    resample: Annotated[str, typer.Option(
        "--resample", help="Resampling of moving images: bilinear, or bicubic (keeps more fine "
        "detail).", rich_help_panel=_SIM)] = "bilinear",
    gt_resample: Annotated[str | None, typer.Option(
        "--gt-resample", help="Resampling of the moving photos' ground truth (default: as "
        "--resample).", rich_help_panel=_SIM)] = None,
    sharp_key: Annotated[bool, typer.Option(
        "--sharp-key", help="Moving photos sit at a whole-pixel position at the key frame's "
        "ground-truth time (an unresampled truth).", rich_help_panel=_SIM)] = False,
    max_speed: Annotated[float, typer.Option("--max-speed", help="Fastest moving object, "
                                             "pixels per readout step.",
                                             rich_help_panel=_SIM)] = 4.0,
    camera_speed: Annotated[float, typer.Option("--camera-speed", help="Fastest camera pan, "
                                                "pixels per readout step.",
                                                rich_help_panel=_SIM)] = 2.0,
    static_prob: Annotated[float, typer.Option("--static-prob", help="Probability that the "
                                               "camera or an object is still.",
                                               rich_help_panel=_SIM)] = 0.15,
    objects: Annotated[int, typer.Option("--objects", help="Most moving objects per patch.",
                                         rich_help_panel=_SIM)] = 3,
    noise_prob: Annotated[float, typer.Option("--noise-prob", help="Share of batches with "
                                              "sensor noise.", rich_help_panel=_SIM)] = 0.3,
    noise_max: Annotated[float, typer.Option("--noise-max", help="Largest noise scale (x the "
                                             "SCSim figures).", rich_help_panel=_SIM)] = 1.0,
    dim_prob: Annotated[float, typer.Option("--dim-prob", help="Share of samples dimmed.",
                                            rich_help_panel=_SIM)] = 0.3,
    dim_min: Annotated[float, typer.Option("--dim-min", help="Dimmest light gain.",
                                           rich_help_panel=_SIM)] = 0.2,
    scale_min: Annotated[float, typer.Option(
        "--scale-min", help="Smallest source zoom: a patch covers patch/scale source pixels, "
        "so lower values give denser detail.", rich_help_panel=_SIM)] = 0.5,
    scale_max: Annotated[float, typer.Option("--scale-max", help="Largest source zoom.",
                                             rich_help_panel=_SIM)] = 1.0,
    video_interp: Annotated[str, typer.Option("--video-interp", help="Between video frames: "
                                              "flow or linear.", rich_help_panel=_SIM)
                            ] = "flow",
    video_steps: Annotated[tuple[float, float], typer.Option(
        "--video-steps", help="Readout steps per video frame: MIN MAX (log-uniform per "
        "batch). More steps, slower motion.", rich_help_panel=_SIM)] = (8.0, 40.0),
    model: Annotated[str, typer.Option("--model", help="full (the authors' network), lite "
                                       "(CPU: Net_b, width 24, depth 3, raw_skip, "
                                       "motion_input, separate_encoders, flow_align) or "
                                       "net_a .. "
                                       "net_e (the paper's ablations).",
                                       rich_help_panel=_MODEL)] = "full",
    features: Annotated[int | None, typer.Option("--features", help="Width (feature "
                                                 "channels); default the model's.",
                                                 rich_help_panel=_MODEL)] = None,
    blocks: Annotated[int | None, typer.Option("--blocks", help="Depth (residual blocks); "
                                               "default the model's.",
                                               rich_help_panel=_MODEL)] = None,
    fusion_blocks: Annotated[int | None, typer.Option(
        "--fusion-blocks", help="Residual blocks in the fusion head, where the five blocks "
        "meet (spkrecon's addition); default the model's.", rich_help_panel=_MODEL)] = None,
    flow_align: Annotated[bool | None, typer.Option(
        "--flow-align/--no-flow-align", help="Warp each neighbour block's features by a "
        "learned flow (spkrecon's addition, networks without PDA); default the model's.",
        rich_help_panel=_MODEL)] = None,
    steps: Annotated[int, typer.Option("--steps", help="Length of the learning-rate "
                                       "schedule in steps (the run ends there).",
                                       rich_help_panel=_OPT)] = 200_000,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (the paper: 1e-4).",
                                      rich_help_panel=_OPT)] = 1e-4,
    lr_min: Annotated[float, typer.Option("--lr-min", help="Final learning rate (cosine).",
                                          rich_help_panel=_OPT)] = 1e-6,
    schedule: Annotated[str, typer.Option("--schedule", help="cosine, step (the authors': "
                                          "/10 after a third) or constant.",
                                          rich_help_panel=_OPT)] = "cosine",
    warmup: Annotated[int, typer.Option("--warmup", help="Linear warm-up steps.",
                                        rich_help_panel=_OPT)] = 0,
    lam: Annotated[float, typer.Option("--lambda", help="Weight of the SALI estimates in the "
                                       "hierarchical loss (eq. 11).",
                                       rich_help_panel=_OPT)] = 0.02,
    ema: Annotated[float, typer.Option("--ema", help="Decay of an exponential moving average "
                                       "of the weights (e.g. 0.999; 0: off); validation, "
                                       "best.pt and weights.pt then use the average.",
                                       rich_help_panel=_OPT)] = 0.0,
    grad_clip: Annotated[float, typer.Option("--grad-clip", help="Clip the gradient norm "
                                             "(0: off).", rich_help_panel=_OPT)] = 0.0,
    time_schedule: Annotated[bool, typer.Option(
        "--time-schedule/--step-schedule", help="With --max-minutes, fit the learning-rate "
        "schedule into the time budget (whichever of steps and time ends first).",
        rich_help_panel=_OPT)] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: last.pt (to resume), "
                                      "weights.pt, best.pt, log.jsonl.",
                                      rich_help_panel=_RUN)] = Path("runs/spk2imgnet"),
    max_minutes: Annotated[float | None, typer.Option(
        "--max-minutes", help="Stop cleanly within this many minutes, writing the weights.",
        rich_help_panel=_RUN)] = None,
    init: Annotated[Path | None, typer.Option(
        "--init", help="Fine-tune: start from these weights (a weights file or a run's "
        "last.pt; same architecture) with a fresh optimizer and schedule.",
        rich_help_panel=_RUN)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from "
                                         "its last.pt (starts afresh if there is none).",
                                         rich_help_panel=_RUN)] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (model and data).",
                                      rich_help_panel=_RUN)] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N] (under "
                                        "torchrun: GPU LOCAL_RANK).",
                                        rich_help_panel=_RUN)] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto (bf16 autocast on "
                                           "CUDA, fp32 on the CPU), fp32 or bf16.",
                                           rich_help_panel=_RUN)] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads "
                                                "(torch.set_num_threads).",
                                                rich_help_panel=_RUN)] = None,
    channels_last: Annotated[bool, typer.Option(
        "--channels-last/--no-channels-last", help="NHWC memory format (faster convolutions).",
        rich_help_panel=_RUN)] = True,
    checkpoint_minutes: Annotated[float, typer.Option(
        "--checkpoint-minutes", help="Write last.pt and weights.pt this often.",
        rich_help_panel=_RUN)] = 10.0,
    log_every: Annotated[int, typer.Option("--log-every", help="Steps between log lines.",
                                           rich_help_panel=_RUN)] = 20,
    max_side: Annotated[int, typer.Option("--max-side", help="Scale images larger than this "
                                          "down when loading.", rich_help_panel=_RUN)] = 800,
    val_dir: Annotated[str | None, typer.Option(
        "--val-dir", help="Folder of X.dat + X.png recordings to score (default: the shared "
        "REDS samples when present; 'none' turns validation off).",
        rich_help_panel=_VAL)] = None,
    val_every: Annotated[int, typer.Option("--val-every", help="Validate every N steps "
                                           "(0: only by time/at the end).",
                                           rich_help_panel=_VAL)] = 1000,
    val_minutes: Annotated[float | None, typer.Option(
        "--val-minutes", help="Also validate every N minutes.", rich_help_panel=_VAL)] = None,
    val_limit: Annotated[int | None, typer.Option("--val-limit", help="Score at most N "
                                                  "recordings.", rich_help_panel=_VAL)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on "
                                          "stdout.")] = False,
    force: Force = False, quiet: Quiet = False,
) -> None:
    """Train Spk2ImgNet (hierarchical loss, Adam, checkpoints, validation PSNR). Several GPUs:
    torchrun --nproc-per-node N -m spkrecon train ... (see docs/training.md)."""
    from spkrecon.train.config import TrainConfig

    cfg = TrainConfig(
        model=model.lower().replace("-", "_"), features=features, num_blocks=blocks,
        fusion_blocks=fusion_blocks, flow_align=flow_align,
        images=[str(p) for p in images or []], videos=[str(p) for p in videos or []],
        dataset=[str(p) for p in dataset or []], video_share=video_share,
        dataset_share=dataset_share, patch=patch, batch_size=batch_size, augment=augment,
        alpha=alpha, gt_offset=gt_offset, resample=resample.lower(), max_speed=max_speed,
        gt_resample=gt_resample.lower() if gt_resample else None, sharp_key=sharp_key,
        camera_max_speed=camera_speed,
        static_prob=static_prob, objects=objects, noise_prob=noise_prob, noise_max=noise_max,
        dim_prob=dim_prob, dim_min=dim_min, scale_min=scale_min, scale_max=scale_max,
        video_interp=video_interp, video_steps_per_frame=video_steps, max_side=max_side,
        steps=steps, lr=lr, lr_min=min(lr_min, lr), schedule=schedule, warmup=warmup, lam=lam,
        grad_clip=grad_clip, ema=ema, time_schedule=time_schedule, init=str(init) if init else None,
        max_minutes=max_minutes, seed=seed, device=device, precision=precision,
        threads=threads, channels_last=channels_last, out=str(out),
        checkpoint_minutes=checkpoint_minutes, log_every=log_every, val_dir=val_dir,
        val_every=val_every, val_minutes=val_minutes, val_limit=val_limit)
    cfg.validate()

    from spkrecon.train.loop import run

    main = int(os.environ.get("RANK", "0")) == 0
    display = _Display(enabled=main and not quiet)
    try:
        result = run(cfg, resume=resume, force=force, callback=display)
    finally:
        display.close()
    if not main:
        return
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif not quiet:
        val = (f", validation PSNR {result.last_val['psnr']:.2f} dB (best "
               f"{result.best_psnr:.2f})" if result.last_val else "")
        info(f"stopped ({result.stopped}) at step {result.step}, {result.samples} samples in "
             f"{result.elapsed / 60:.1f} min{val}; weights: {result.weights}")
    if result.stopped == "interrupted":  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP
        raise typer.Exit(128 + (result.signal or 2))


class _Display:
    """Rich progress on stderr: a bar (steps or time budget) with loss, PSNR and throughput;
    plain lines when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.live = enabled and err_console.is_terminal
        self.bar: Any = None
        self.task: Any = None
        self.steps = 1
        self.budget: float | None = None
        self.t0 = time.monotonic()
        self.val = "-"
        self.start_step = 0

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if not self.enabled:
            return
        getattr(self, f"_on_{kind}", lambda d: None)(data)

    def _on_start(self, d: dict[str, Any]) -> None:
        m, c = d["model"], d["config"]
        variant = "lite" if c["model"] == "lite" else c["model"]
        res = f", resumed from {d['resumed_from']} at step {d['step']}" if d["resumed_from"] \
            else ""
        def counts(src: dict[str, Any]) -> str:
            return ", ".join(f"{v} {k}" for k, v in src.items() if k not in ("kind", "folders"))

        srcs = ", ".join(f"{s['kind']} ({counts(s)})" for s in d["data"]["sources"])
        info(f"training Spk2ImgNet {variant} (width {m['features']}, depth {m['num_blocks']}, "
             f"{d['parameters']:,} parameters) on {d['device']} x{d['world']} "
             f"({d['precision']}){res}")
        info(f"data: {srcs}; patch {c['patch']}, batch {c['batch_size']} per process; "
             f"validation: {d['validation'] or 'off'}; run folder {d['out']}")
        self.steps, self.start_step = d["steps"], d["step"]
        self.budget = c["max_minutes"] * 60 if c["max_minutes"] else None
        self.t0 = time.monotonic()
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn(
                "{task.percentage:>5.1f}%"), TextColumn("step {task.fields[step]}"),
                TextColumn("loss {task.fields[loss]}"), TextColumn("PSNR {task.fields[psnr]}"),
                TextColumn("val {task.fields[val]}"), TextColumn("{task.fields[rate]}"),
                TextColumn("lr {task.fields[lr]}"), TimeElapsedColumn(),
                console=err_console, transient=False)
            self.bar.start()
            self.task = self.bar.add_task("train", total=1000, step=d["step"], loss="-",
                                          psnr="-", val="-", rate="", lr="-")

    def _fraction(self, step: int) -> float:
        f = step / max(self.steps, 1)
        if self.budget:
            f = max(f, (time.monotonic() - self.t0) / self.budget)
        return min(f, 1.0)

    def _on_step(self, d: dict[str, Any]) -> None:
        fields = {"step": d["step"], "loss": f"{d['loss']:.4f}", "psnr": f"{d['psnr']:.2f}",
                  "val": self.val, "rate": f"{d['samples_per_s']:.1f} samples/s",
                  "lr": f"{d['lr']:.2e}"}
        if self.bar is not None:
            self.bar.update(self.task, completed=1000 * self._fraction(d["step"]), **fields)
        else:
            info(f"step {d['step']}: loss {fields['loss']}, train PSNR {fields['psnr']} dB, "
                 f"{fields['rate']}, lr {fields['lr']}, {d['elapsed_s'] / 60:.1f} min")

    def _on_val(self, d: dict[str, Any]) -> None:
        self.val = f"{d['psnr']:.2f} dB"
        msg = (f"validation at step {d['step']}: PSNR {d['psnr']:.2f} dB, SSIM "
               f"{d['ssim']:.4f} (best {d['best']:.2f} dB)")
        if self.bar is not None:
            self.bar.update(self.task, val=self.val)
            self.bar.console.print(msg, highlight=False)
        else:
            info(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

