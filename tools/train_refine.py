"""Train an ATSNet refinement head (``ATSNetConfig.refine``) on a frozen ATSNet.

Two steps, because the frozen network's features and outputs do not change while the head
learns: ``cache`` simulates training batches (the trainer's ``make_batch``: photos, video
clips, mosaics, turns) and stores each patch's input features, the U-Net's last features,
its output (averaged over ``--flips`` mirror images, as :func:`predict` runs it) and the
truth (fp16, 1.25 MB per 96x96 patch); ``fit`` trains only the head on
them, about 40x faster per step than simulating. Held-out suite images and clips are never
used. Experimental: the shipped weights have no head (see docs/atsnet.md).

    python tools/train_refine.py cache --seed 11 --batches 300 --out scratch/refine/data/s11
    python tools/train_refine.py fit --widths 24,24 --steps 12000 --lr 2e-3 \
        --out scratch/refine/ck/h24
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import time

import torch

from spkrecon.models.atsnet import (
    ATSNet,
    ATSNetConfig,
    load_atsnet,
    mirrored,
    save_atsnet,
    window_features,
)
from spkrecon.train.atsnet import (
    ATSTrainConfig,
    augment,
    load_images,
    make_batch,
    patch_log_mse,
    training_clips,
    training_loss,
)


def cache(a: argparse.Namespace) -> None:
    model, _ = load_atsnet(a.weights)
    model.eval()
    net = model.config
    cfg = ATSTrainConfig(images=a.images, patch=96, near=40, far_every=2, videos=a.videos,
                         video_share=0.25, mosaic_prob=0.3, turn_prob=0.3, workers=0,
                         model=net.to_dict())
    images = load_images(cfg.images, cfg.max_side, holdout=False)
    clips = training_clips(cfg)
    g = torch.Generator().manual_seed(a.seed)
    rows, t0 = [], time.time()
    with torch.no_grad():
        for i in range(a.batches):
            win, truth = augment(*make_batch(images, cfg, net, g, clips=clips), g)
            x, s = window_features(win, net)
            o, y = mirrored(model, x, a.flips, keep=True)  # the frozen net has no head
            rows.append(torch.cat([x, y, o, (truth / s[:, 0])[:, None]], 1).half())
            if len(rows) == 50 or i == a.batches - 1:
                torch.save(torch.cat(rows), f"{a.out}.{i // 50}.pt")
                rows = []
                print(i + 1, "batches", round(time.time() - t0, 1), "s", flush=True)


def fit(a: argparse.Namespace) -> None:
    torch.manual_seed(0)
    base, _ = load_atsnet(a.weights)
    cfg = ATSNetConfig.from_dict({**base.config.to_dict(), "refine": list(a.widths)})
    model = ATSNet(cfg)
    model.load_state_dict(base.state_dict(), strict=False)
    data = torch.cat([torch.load(f, weights_only=True) for f in sorted(glob.glob(a.data))])
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(data.shape[0], generator=g)
    nval = max(1, min(data.shape[0] // 2, max(16, data.shape[0] // 20)))
    val, tr = data[perm[:nval]], data[perm[nval:]]
    del data  # the split holds copies: two fits of the 3.9 GB cache at once ran out of 24 GB
    c, head = cfg.channels, model.refine
    assert head is not None
    ema = {k: v.detach().clone() for k, v in head.state_dict().items()}
    opt = torch.optim.Adam(head.parameters(), lr=a.lr)

    def run(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = b.float()
        x, y, o, t = b[:, :c], b[:, c:c + cfg.widths[0]], b[:, -2:-1], b[:, -1]
        return model.refined(x, y, o)[:, 0], o[:, 0], t

    def val_loss(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> float:  # mean per patch
        return sum(float(training_loss(p, t, "logmse")) * len(p) for p, t in parts) / nval

    log, t0, running = open(a.out + ".log", "a"), time.time(), 0.0
    for step in range(1, a.steps + 1):
        lr = a.lr * min(1.0, step / 100) * (0.01 + 0.495 * (1 + math.cos(math.pi * step / a.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(tr.shape[0], (16,), generator=g)
        oy, ox = (int(v) for v in torch.randint(33, (2,), generator=g))
        p, o, t = run(tr[idx][:, :, oy:oy + 64, ox:ox + 64])
        loss = training_loss(p, t, "logmse")
        if a.harm:  # patches the head makes worse than the frozen network count 1 + harm times
            worse = patch_log_mse(p, t) - patch_log_mse(o, t)
            loss = loss + a.harm * worse.clamp(min=0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay = min(0.998, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in head.state_dict().items():
                ema[k].lerp_(v, 1 - decay)
        running += float(loss.detach())
        if step % a.every == 0 or step == a.steps:
            keep = {k: v.clone() for k, v in head.state_dict().items()}
            head.load_state_dict(ema)
            with torch.no_grad():
                parts = [run(val[i:i + 32]) for i in range(0, nval, 32)]
            vl = val_loss([(p, t) for p, _, t in parts])
            v0 = val_loss([(o, t) for _, o, t in parts])
            rec = {"step": step, "minutes": round((time.time() - t0) / 60, 2),
                   "loss": round(running / a.every, 5), "val": round(vl, 5),
                   "val_base": round(v0, 5), "gain_db": round(10 * (v0 - vl), 4)}
            print(rec, flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            running = 0.0
            save_atsnet(model, f"{a.out}_{step}.pt", {"note": "refine head on a frozen ATSNet",
                                                      "step": step}, 0.6)
            head.load_state_dict(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--batches", type=int, default=300)
    c.add_argument("--out", required=True)
    c.add_argument("--flips", type=int, default=2,
                   help="mirror images the U-Net averages (as predict does; the head runs once)")
    c.add_argument("--images", nargs="+", default=["../shared/data/images/train"])
    c.add_argument("--videos", nargs="*", default=["../shared/data/videos"])
    f = sub.add_parser("fit")
    f.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")), default=(24, 24))
    f.add_argument("--steps", type=int, default=12000)
    f.add_argument("--lr", type=float, default=2e-3)
    f.add_argument("--every", type=int, default=3000)
    f.add_argument("--harm", type=float, default=0.0,
                   help="extra weight on patches the head makes worse (0: plain logmse)")
    f.add_argument("--data", default="scratch/refine/data/*.pt")
    f.add_argument("--out", required=True)
    for p in (c, f):
        p.add_argument("--weights", default="weights/atsnet.pt")
        p.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    (cache if a.cmd == "cache" else fit)(a)


if __name__ == "__main__":
    main()
