"""The training loop of Spk2ImgNet (Zhao et al. CVPR 2021): one process or many (torchrun).

Each step draws a batch (simulated on the fly on the training device, or read from dataset
folders), augments it (rot90/flip), runs the network under bf16 autocast on CUDA, and takes
an Adam step on the hierarchical loss (eq. 11). The data of step ``s`` in process ``r`` come
from a generator seeded with ``(seed, r, s)``, so a resumed run continues exactly as an
uninterrupted one, and a fixed seed reproduces a run on the CPU.

The run stops at ``steps``, at ``max_minutes`` (leaving time to write its files), or on
Ctrl-C / SIGTERM, always writing ``last.pt`` (to resume) and ``weights.pt``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spkrecon.errors import OutputError, ParameterError, WeightsError
from spkrecon.train import checkpoint as ck
from spkrecon.train import distributed as D
from spkrecon.train.config import TrainConfig, default_validation_dir
from spkrecon.train.data import Mixture
from spkrecon.train.loss import hierarchical_loss
from spkrecon.train.validate import evaluate, load_validation

Callback = Callable[[str, dict[str, Any]], None]


@dataclass
class TrainResult:
    """What a run did; ``stopped`` is ``steps``, ``time`` or ``interrupted``."""

    out: Path
    step: int
    samples: int
    elapsed: float
    stopped: str
    weights: Path | None
    best_psnr: float | None = None
    last_val: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    #: The signal that interrupted the run (SIGINT, SIGTERM, SIGHUP), if any.
    signal: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "step": self.step, "samples": self.samples,
                "elapsed_s": round(self.elapsed, 1), "stopped": self.stopped,
                "weights": str(self.weights) if self.weights else None,
                "best_psnr": self.best_psnr,
                "last_val": None if self.last_val is None else
                {k: self.last_val[k] for k in ("step", "psnr", "ssim") if k in self.last_val}}


def lr_factor(cfg: TrainConfig, progress: float, step: int) -> float:
    """Learning rate multiplier at ``progress`` in [0, 1] of the schedule."""
    p = min(max(progress, 0.0), 1.0)
    floor = cfg.lr_min / cfg.lr
    if cfg.schedule == "cosine":
        f = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))
    elif cfg.schedule == "step":  # the authors': /10 after 20 of 61 epochs
        f = 1.0 if p < 20 / 61 else 0.1
    else:
        f = 1.0
    if cfg.warmup and step < cfg.warmup:
        f *= (step + 1) / cfg.warmup
    return f


def initial_weights(spec: str, mcfg: Any, fresh: dict[str, torch.Tensor] | None = None
                    ) -> dict[str, torch.Tensor]:
    """The state dict to fine-tune from: a spkrecon weights file or a run's ``last.pt``.

    A network with fewer residual blocks, or without ``raw_skip``/``motion_input``, grows into
    ``mcfg`` (same function; added convolutions other than the zeroed ones come from
    ``fresh``, the new model's own initialisation). Raises WeightsError for any other
    architecture.
    """
    from spkrecon.models.spk2imgnet import Spk2ImgNet
    from spkrecon.models.weights import (
        ADDITIONS,
        _describe,
        _torch_load,
        check_state_dict,
        infer_config,
        load_checkpoint,
    )

    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"--init weights {path} do not exist",
                           "pass a weights file (best.pt, weights.pt) or a run's last.pt")
    raw = _torch_load(path)
    if isinstance(raw, dict) and raw.get("format") == ck.STATE_FORMAT:
        sd = dict(raw["model"])
        # A run's preset may have changed since: trust the tensors, not the preset name.
        saved = infer_config(sd, mcfg.block_step)
    else:
        ckpt = load_checkpoint(path)
        saved, sd = ckpt.model_config(), dict(ckpt.state_dict)
    grown = ("num_blocks", *ADDITIONS)
    grows = saved.with_(**{k: getattr(mcfg, k) for k in grown}) == mcfg
    if not (grows and all(getattr(saved, k) <= getattr(mcfg, k) for k in grown)):
        raise WeightsError(f"--init weights {path} are a different architecture "
                           f"({_describe(saved)}, not {_describe(mcfg)})",
                           "pass the same --model/--features/--blocks as the weights (or "
                           "more --blocks, or a raw_skip/motion_input model, to grow them)")
    # Growing keeps the network's function: zero weights on added inputs (spike frames,
    # velocity), and added residual blocks whose last convolution is zero (identity blocks).
    if mcfg.raw_skip and not saved.raw_skip:
        _add_zero_inputs(sd, "extractor.conv.weight", mcfg.block_length)
    if mcfg.motion_input and not saved.motion_input:
        _add_zero_inputs(sd, "rec_conv0.weight", 2)
    # New modules come from the new model's own initialisation (``fresh``).
    new = [f"{prefix}.{i}." for prefix, have, want in (
        ("extractor.net", saved.num_blocks, mcfg.num_blocks),
        ("fusion_net", saved.fusion_blocks, mcfg.fusion_blocks)) for i in range(have, want)]
    if new or (mcfg.flow_align and not saved.flow_align):
        base = fresh if fresh is not None else Spk2ImgNet(mcfg).state_dict()
        for k, v in base.items():
            if k.startswith(tuple(new)):  # identity blocks: last convolution zero
                sd[k] = torch.zeros_like(v) if ".conv3." in k else v.clone()
            elif k.startswith("flow_heads.") and not saved.flow_align:  # zero flow
                sd[k] = v.clone()
    if mcfg.separate_encoders and not saved.separate_encoders:
        # every position starts from the shared extractor: the same function
        for k in [k for k in sd if k.startswith("extractor.")]:
            for i in range(mcfg.num_temporal_blocks - 1):
                sd[f"side_extractors.{i}.{k[len('extractor.'):]}"] = sd[k].clone()
    check_state_dict(Spk2ImgNet(mcfg), sd, where=str(path))
    return sd


def _add_zero_inputs(sd: dict[str, torch.Tensor], key: str, n: int) -> None:
    """Append ``n`` input channels of zero weights to convolution weight ``sd[key]``."""
    w = sd[key]
    sd[key] = torch.cat([w, w.new_zeros(w.shape[0], n, *w.shape[2:])], 1)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for every parameter; buffers are copied."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the data generator for ``step`` in process ``rank``."""
    return (seed * 1_000_003 + rank * 7_919 + step * 2_654_435_761) % (2**63 - 1)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.precision == "fp32" or (cfg.precision == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if cfg.precision == "bf16":
            raise ParameterError("bf16 is not supported by this GPU", "use --precision fp32")
        return None
    return torch.bfloat16


class _StopFlag:
    """Set by SIGTERM (cluster pre-emption) so the loop saves and stops at the next step."""

    def __init__(self) -> None:
        self.set = False
        self.signum: int | None = None
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, *_: Any) -> None:
        self.set = True
        self.signum = signum

    def __exit__(self, *_: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _batch_psnr(out: torch.Tensor, gt_key: torch.Tensor, alpha: float) -> float:
    img = (out.detach().float() / alpha).clamp(0, 1)
    mse = ((img - gt_key.float()) ** 2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def prepare_out(out: Path, resume: bool, force: bool) -> Path | None:
    """Check the run folder; return the checkpoint to resume from, if any."""
    last = out / ck.LAST
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    if resume:
        return last if last.is_file() else None
    if last.exists() and not force:
        raise OutputError(f"{out} already holds a training run",
                          "pass --resume to continue it or --force to start over")
    return None


def run(cfg: TrainConfig, *, resume: bool = False, force: bool = False,
        callback: Callback | None = None) -> TrainResult:
    """Train as ``cfg`` says (see the module docstring); ``callback(kind, data)`` gets
    ``start``, ``step``, ``val``, ``checkpoint`` and ``end`` events (process 0 only)."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    info = D.env_info()
    device = D.device_for(cfg.device, info)
    info = D.setup(device)
    try:
        return _run(cfg, info, device, resume, force, callback)
    finally:
        D.cleanup(info)


def _run(cfg: TrainConfig, info: D.DistInfo, device: torch.device, resume: bool, force: bool,
         callback: Callback | None) -> TrainResult:
    t_start = time.monotonic()
    emit: Callback = (callback if callback is not None and info.main
                      else (lambda kind, data: None))
    out = Path(cfg.out).expanduser()
    resume_from = prepare_out(out, resume, force) if info.main else None
    D.barrier(info)
    if not info.main:
        resume_from = out / ck.LAST if resume and (out / ck.LAST).is_file() else None

    mcfg = cfg.model_config()
    from spkrecon.models.spk2imgnet import Spk2ImgNet, count_parameters

    torch.manual_seed(cfg.seed)
    model = Spk2ImgNet(mcfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step = samples = 0
    elapsed_before = progress_before = 0.0
    history: list[dict[str, Any]] = []
    best: float | None = None
    if resume_from is not None:
        state = ck.load_state(resume_from)
        saved = TrainConfig.from_dict(state["config"]).model_config()
        if saved != mcfg:
            raise WeightsError(f"{resume_from} trained a different architecture ({saved})",
                               "resume with the same --model/--features/--blocks")
        from spkrecon.models.weights import check_state_dict

        check_state_dict(model, state["model"], where=str(resume_from))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, samples = int(state["step"]), int(state["samples"])
        elapsed_before, progress_before = float(state["elapsed"]), float(state["progress"])
        history, best = list(state["history"]), state["best"]
    elif cfg.init:
        model.load_state_dict(initial_weights(cfg.init, mcfg, model.state_dict()))
    ema_model: torch.nn.Module | None = None
    if cfg.ema > 0:
        ema_model = copy.deepcopy(model).eval().requires_grad_(False)
        if resume_from is not None and "ema" in state:
            ema_model.load_state_dict(state["ema"])
    eval_model = ema_model if ema_model is not None else model
    train_model: torch.nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    amp = autocast_dtype(cfg, device)
    precision_name = "bf16" if amp is torch.bfloat16 else "fp32"

    data = Mixture(cfg, device)
    g = torch.Generator(device=device)
    val_dir = cfg.val_dir if cfg.val_dir is not None else default_validation_dir()
    val_dir = None if val_dir in ("", "none") else val_dir
    val_set = load_validation(val_dir, mcfg.window, cfg.val_limit) if (
        val_dir and info.main and (cfg.val_every or cfg.val_minutes)) else []
    data_summary = data.describe()

    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        if resume_from is None:  # a fresh start (--force): no stale files from an old run
            for name in (ck.LAST, ck.WEIGHTS, ck.BEST, "log.jsonl"):
                (out / name).unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    log = (out / "log.jsonl").open("a") if info.main else None
    budget = cfg.max_minutes * 60 if cfg.max_minutes else None
    emit("start", {"config": cfg.to_dict(), "model": mcfg.to_dict(),
                   "parameters": count_parameters(model), "device": str(device),
                   "world": info.world, "precision": precision_name, "data": data_summary,
                   "validation": str(val_dir) if val_set else None, "resumed_from":
                   str(resume_from) if resume_from else None, "step": step,
                   "steps": cfg.steps, "out": str(out), "machine": ck.machine()})

    def write_log(entry: dict[str, Any]) -> None:
        if log is not None:
            log.write(json.dumps(entry) + "\n")
            log.flush()

    def meta(kind: str) -> dict[str, Any]:
        last_val = next((h for h in reversed(history) if "psnr" in h), None)
        return {"training_data": data_summary, "iterations": step, "samples_seen": samples,
                "wall_time_s": round(elapsed_before + run_elapsed(), 1),
                "machine": ck.machine(), "device": str(device), "world_size": info.world,
                "precision": precision_name, "train_config": cfg.to_dict(),
                "validation": None if last_val is None else {
                    "dir": str(val_dir), "step": last_val["step"], "psnr": last_val["psnr"],
                    "ssim": last_val["ssim"], "samples": last_val.get("samples")},
                "best_val_psnr": best, "kind": kind,
                "loss": "hierarchical L1 (Zhao et al. 2021, eq. 11), lambda "
                        f"{cfg.lam}, targets alpha * light"}

    def run_elapsed() -> float:
        return time.monotonic() - t_start

    def progress_now() -> float:
        p = step / cfg.steps
        if cfg.time_schedule and budget:
            p = max(p, progress_before + (1 - progress_before) * min(1.0, run_elapsed() / budget))
        return p

    def save(final: bool = False) -> float:
        t0 = time.monotonic()
        if info.main:
            ck.save_state(out / ck.LAST, model=model, optimizer=optimizer, step=step,
                          samples=samples, elapsed=elapsed_before + run_elapsed(),
                          progress=progress_now(), generator=g, config=cfg.to_dict(),
                          history=history, best=best, ema=ema_model)
            ck.export_weights(out / ck.WEIGHTS, eval_model, cfg.alpha, meta("final" if final
                                                                        else "latest"))
            emit("checkpoint", {"step": step, "path": str(out / ck.LAST)})
        D.barrier(info)
        return time.monotonic() - t0

    def validate() -> float:
        nonlocal best
        t0 = time.monotonic()
        if val_set:
            res = evaluate(eval_model, val_set, device, cfg.alpha, amp)
            entry = {"kind": "val", "step": step, "samples_seen": samples,
                     "elapsed_s": round(elapsed_before + run_elapsed(), 1), **res}
            history.append({k: entry[k] for k in ("step", "samples_seen", "elapsed_s", "psnr",
                                                  "ssim")} | {"samples": res["samples"]})
            if best is None or res["psnr"] > best:
                best = res["psnr"]
                ck.export_weights(out / ck.BEST, eval_model, cfg.alpha, meta("best"))
            entry["best"] = best
            write_log(entry)
            emit("val", entry)
        D.barrier(info)
        return time.monotonic() - t0

    stopped = "steps"
    save_cost, val_cost, step_avg = 0.0, 0.0, 0.0
    last_ckpt = last_val_t = time.monotonic()
    last_val_step = step if history else -1
    acc = {"loss": 0.0, "image": 0.0, "psnr": 0.0, "n": 0, "t": time.monotonic(), "samples": 0}
    model.train()
    with _StopFlag() as flag:
        try:
            while step < cfg.steps:
                t_step = time.monotonic()
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * lr_factor(cfg, progress_now(), step)
                g.manual_seed(step_seed(cfg.seed, info.rank, step))
                batch = data.sample(cfg.batch_size, g)
                ctx = (torch.autocast(device.type, dtype=amp) if amp is not None
                       else contextlib.nullcontext())
                x = batch.spikes
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with ctx:
                    img, ests = train_model(x)
                loss, image_loss = hierarchical_loss(img, ests, batch.gt, alpha=cfg.alpha,
                                                     lam=cfg.lam)
                if not torch.isfinite(loss):
                    raise ParameterError(f"the loss became {loss.item()} at step {step}",
                                         "lower --lr, or use --precision fp32")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                if ema_model is not None:
                    update_ema(ema_model, model, min(cfg.ema, (1 + step) / (10 + step)))
                step += 1
                samples += len(batch) * info.world
                key = batch.gt.shape[1] // 2
                acc["loss"] += loss.item()
                acc["image"] += image_loss.item()
                acc["psnr"] += _batch_psnr(img, batch.gt[:, key:key + 1], cfg.alpha)
                acc["n"] += 1
                acc["samples"] += len(batch) * info.world
                dt = time.monotonic() - t_step
                step_avg = dt if step_avg == 0 else 0.9 * step_avg + 0.1 * dt

                if step % cfg.log_every == 0 or step == cfg.steps:
                    now = time.monotonic()
                    n = max(acc["n"], 1)
                    entry = {"kind": "train", "step": step, "samples_seen": samples,
                             "loss": D.mean(acc["loss"] / n, info, device),
                             "image_loss": D.mean(acc["image"] / n, info, device),
                             "psnr": D.mean(acc["psnr"] / n, info, device),
                             "lr": optimizer.param_groups[0]["lr"],
                             "samples_per_s": acc["samples"] / max(now - acc["t"], 1e-9),
                             "elapsed_s": round(elapsed_before + run_elapsed(), 1),
                             "steps": cfg.steps}
                    write_log(entry)
                    emit("step", entry)
                    acc = {"loss": 0.0, "image": 0.0, "psnr": 0.0, "n": 0, "t": now,
                           "samples": 0}

                now = time.monotonic()
                due_val = val_set and step < cfg.steps and (
                    (cfg.val_every and step % cfg.val_every == 0) or
                    (cfg.val_minutes and now - last_val_t >= cfg.val_minutes * 60))
                if D.any_rank(bool(due_val), info, device):
                    val_cost = validate()
                    last_val_t, last_val_step = time.monotonic(), step
                if D.any_rank(time.monotonic() - last_ckpt >= cfg.checkpoint_minutes * 60,
                              info, device):
                    save_cost = save()
                    last_ckpt = time.monotonic()
                # Stop while there is time to finish a step and write the files.
                late = budget is not None and (
                    run_elapsed() + 1.5 * step_avg + 2 * save_cost + 2.0 >= budget)
                if D.any_rank(late or flag.set, info, device):
                    stopped = "interrupted" if flag.set else "time"
                    break
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGHUP through the CLI's handler
            stopped = "interrupted"
            flag.signum = getattr(exc, "signum", signal.SIGINT)
        final_val = stopped != "interrupted" and bool(val_set) and last_val_step != step and (
            budget is None or run_elapsed() + 1.2 * val_cost + save_cost < budget)
        if stopped != "interrupted" and D.any_rank(final_val, info, device):
            validate()
        save(final=True)
    in_sync = D.replicas_in_sync(model, info, device)
    write_log({"kind": "end", "step": step, "samples_seen": samples, "stopped": stopped,
               "world": info.world, "replicas_in_sync": in_sync})
    if log is not None:
        log.close()
    last_val = next((h for h in reversed(history) if "psnr" in h), None)
    result = TrainResult(out, step, samples, elapsed_before + run_elapsed(), stopped,
                         out / ck.WEIGHTS if info.main else None, best, last_val, history,
                         flag.signum if stopped == "interrupted" else None)
    emit("end", result.to_dict())
    return result
