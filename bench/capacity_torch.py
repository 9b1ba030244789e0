"""Is the patch model limited by compute or by data? Bigger models and longer training, on a GPU.

Optional, outside the project's requirements: needs PyTorch (+ torchvision for resnet18) and is
meant for a GPU (a lent device machine); the project itself never needs either. It is a PyTorch
port of the default separable CNN (model/architectures.py) plus wider/deeper variants and a
ResNet-18, trained on the same patient splits (pipeline.split), with the same augmentation (dihedral
+ HED jitter, as model/augment.py, with its matrices from model/stain.py), class weights
(model.fit.class_weights), cosine learning rate and early stopping on validation PR-AUC;
calibration, neighbourhood context, threshold and metrics are the project's own (pipeline.score,
pipeline.context, pipeline.metrics), so its figures compare with bench/report_real.py's. The `base`
config reproduces the Keras default (width 32) as a check of the port.

Run it as a module from the project root, here and on the GPU machine alike: ``python -m`` puts the
project root on the import path, so it needs no installed project there, only NumPy, pandas, SciPy,
tqdm and PyTorch (none of TensorFlow: model.stain, model.fit's class weights and pipeline.score's
calibration import none).

    # here, with the project's venv: pack a run's (or ingest's) patches into one compressed file
    .venv/bin/python -m bench.capacity_torch --pack runs/real-s0 .gpu/sample.npz
    # there (PyTorch), from a copy of the project root: one config over three splits, a JSON line
    # per split, then the mean
    python3 -m bench.capacity_torch CONFIG --npz .gpu/sample.npz [--seeds 0 1 2] [--out DIR]
"""
import argparse, json, math, os, sys, time

import numpy as np

from model import stain
from model.config import DEFAULT_WIDTH, TrainConfig
from model.fit import class_weights

p = argparse.ArgumentParser()
p.add_argument("config", nargs="?")
p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
p.add_argument("--out", default=".")
p.add_argument("--npz", default=".gpu/sample.npz")
p.add_argument("--epochs", type=int, default=None, help="override the config's epoch cap (a quick smoke run)")
p.add_argument("--pack", nargs=2, metavar=("RUN_DIR", "NPZ"), help="write a run's patches and manifest to NPZ and exit")
a = p.parse_args()

if a.pack:
    from pipeline import store

    m = store.read_manifest(a.pack[0])
    np.savez_compressed(a.pack[1], patches=np.asarray(store.read_patches(a.pack[0])), label=m["label"].to_numpy(np.int8),
                        pid=m["patient_id"].to_numpy().astype(str), x=m["x"].to_numpy(np.int32), y=m["y"].to_numpy(np.int32))
    print(f"packed {len(m):,} patches into {a.pack[1]}")
    sys.exit(0)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pipeline import context, metrics, score, split, store  # noqa: E402

# The pipeline's schedule (model.config): the default width, epoch cap and early-stopping patience.
DEFAULT = dict(width=DEFAULT_WIDTH, epochs=TrainConfig.epochs, patience=TrainConfig.patience)
CONFIGS = {
    "base": dict(model="sep", **DEFAULT),
    "sep_long": dict(model="sep", width=DEFAULT_WIDTH, epochs=90, patience=25),
    "sep_w64_long": dict(model="sep", width=64, epochs=90, patience=25),
    "sep_w96_deep": dict(model="sep", width=96, deep=True, epochs=90, patience=25),
    "resnet18": dict(model="resnet18", epochs=60, patience=15, lr=1e-3),
    "resnet18_mix": dict(model="resnet18", epochs=90, patience=25, lr=1e-3, mixup=0.2),
    "sep_mix_long": dict(model="sep", width=64, epochs=90, patience=25, mixup=0.2),
    "sep_soft": dict(model="sep", **DEFAULT, soft=0.3),
    "sep_stain10": dict(model="sep", **DEFAULT, stain=0.10),
    "sep_w64_45": dict(model="sep", width=64, epochs=45, patience=15),
    "sep_w48_60": dict(model="sep", width=48, epochs=60, patience=15),
    "sep_w64_deep_45": dict(model="sep", width=64, deep=True, epochs=45, patience=15),
    "sep_w64_30": dict(model="sep", **{**DEFAULT, "width": 64}),
    "sep_nocw": dict(model="sep", **DEFAULT, class_weights=False),
}
# The pipeline's training defaults (model.config.TrainConfig); each config above changes some of them.
cfg = dict(lr=TrainConfig.learning_rate, batch=TrainConfig.batch_size, stain=TrainConfig.stain_sigma, mixup=0.0,
           soft=0.0, deep=False, class_weights=True)
if a.config not in CONFIGS:
    p.error(f"config must be one of {', '.join(CONFIGS)}")
cfg.update(CONFIGS[a.config])
cfg["epochs"] = a.epochs or cfg["epochs"]
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")

d = np.load(a.npz)
P = torch.from_numpy(d["patches"]).to(dev)  # (N, 50, 50, 3) uint8
Y = d["label"].astype(np.int64)
pids, xs, ys = d["pid"], d["x"], d["y"]

HED_FROM_RGB = torch.tensor(stain.HED_FROM_RGB, dtype=torch.float32, device=dev)
RGB_FROM_HED_T = torch.tensor(stain.RGB_FROM_HED, dtype=torch.float32, device=dev)
LOG_ADJ = stain.LOG_ADJUST


def dihedral_all(x):  # x (B, C, H, W) -> (8, B, C, H, W)
    views = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    return torch.stack(views + [torch.flip(v, dims=(3,)) for v in views])


def augment(xb_uint8, g):
    x = xb_uint8.permute(0, 3, 1, 2).float() / 255.0
    b = x.shape[0]
    idx = torch.randint(0, 8, (b,), device=dev, generator=g)
    x = dihedral_all(x)[idx, torch.arange(b, device=dev)]
    s = cfg["stain"]
    if s > 0:
        rgb = x.permute(0, 2, 3, 1)
        stains = torch.log(torch.clamp(rgb, min=1e-6)) / LOG_ADJ @ HED_FROM_RGB
        alpha = 1 + (torch.rand(b, 1, 1, 3, device=dev, generator=g) * 2 - 1) * s
        beta = (torch.rand(b, 1, 1, 3, device=dev, generator=g) * 2 - 1) * s
        stains = torch.clamp(stains, min=0) * alpha + beta
        rgb = torch.clamp(torch.exp(-(stains * -LOG_ADJ) @ RGB_FROM_HED_T), 0, 1)
        bright = 0.95 + 0.1 * torch.rand(b, 1, 1, 1, device=dev, generator=g)
        x = torch.clamp(rgb * bright, 0, 1).permute(0, 3, 1, 2)
    return x


class SepConv(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.BatchNorm2d(cout, momentum=0.1, eps=1e-3), nn.ReLU(inplace=True))


class SepCNN(nn.Module):
    def __init__(self, w=32, dropout=0.25, deep=False):
        super().__init__()
        layers = [nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w, momentum=0.1, eps=1e-3), nn.ReLU(inplace=True)]
        blocks = [(w, 1), (2 * w, 2), (4 * w, 2)] if not deep else [(w, 2), (2 * w, 3), (4 * w, 3)]
        cin = w
        for i, (f, n) in enumerate(blocks):
            for _ in range(n):
                layers.append(SepConv(cin, f)); cin = f
            if i < len(blocks) - 1:
                layers += [nn.MaxPool2d(2), nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, 2 * w), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(2 * w, 1))

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))[:, 0]


def resnet18():
    import torchvision
    m = torchvision.models.resnet18(num_classes=1)
    m.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__(); self.m = m
        def forward(self, x):
            return self.m(x)[:, 0]
    return Wrap()


def build():
    if cfg["model"] == "sep":
        return SepCNN(cfg["width"], deep=cfg["deep"])
    return resnet18()


@torch.no_grad()
def predict(model, rows, tta):
    model.eval()
    out = []
    for s in range(0, len(rows), 1024):
        x = P[rows[s:s + 1024]].permute(0, 3, 1, 2).float() / 255.0
        if tta:
            v = dihedral_all(x)
            pr = torch.sigmoid(model(v.reshape(-1, *x.shape[1:])).reshape(8, -1)).mean(0)
        else:
            pr = torch.sigmoid(model(x))
        out.append(pr.float().cpu().numpy())
    return np.concatenate(out)


rows_out = []
for seed in a.seeds:
    torch.manual_seed(seed); np.random.seed(seed)
    g = torch.Generator(device=dev); g.manual_seed(seed)
    assign = split.split_patients(pids, Y, seed=seed)
    which = np.array([assign[q] for q in pids])
    tr, va, te = (np.flatnonzero(which == s) for s in store.SPLITS)
    target = Y[tr].astype(np.float64)
    if cfg["soft"] > 0:
        target = (1 - cfg["soft"]) * target + cfg["soft"] * context.neighbour_context(pids[tr], xs[tr], ys[tr], target, 100.0)
    if cfg["class_weights"]:
        cw = class_weights(Y[tr])
        w = np.where(Y[tr] == 1, cw[1], cw[0])
    else:
        w = np.ones(len(tr))
    tr_t = torch.from_numpy(tr).to(dev)
    tgt_t = torch.tensor(target, dtype=torch.float32, device=dev)
    w_t = torch.tensor(w, dtype=torch.float32, device=dev)
    model = build().to(dev).to(memory_format=torch.channels_last)
    steps = math.ceil(len(tr) / cfg["batch"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], eps=1e-7)
    total = steps * cfg["epochs"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, total) / total)))
    best, best_state, bad, t0 = -1, None, 0, time.time()
    for ep in range(cfg["epochs"]):
        model.train()
        perm = torch.randperm(len(tr), device=dev, generator=g)
        for s in range(steps):
            bi = perm[s * cfg["batch"]:(s + 1) * cfg["batch"]]
            xb = augment(P[tr_t[bi]], g)
            yb, wb = tgt_t[bi], w_t[bi]
            if cfg["mixup"] > 0:
                lam = torch.distributions.Beta(cfg["mixup"], cfg["mixup"]).sample((len(bi),)).to(dev)
                lam = torch.maximum(lam, 1 - lam)
                j = torch.randperm(len(bi), device=dev, generator=g)
                xb = lam[:, None, None, None] * xb + (1 - lam[:, None, None, None]) * xb[j]
                yb = lam * yb + (1 - lam) * yb[j]; wb = lam * wb + (1 - lam) * wb[j]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logits = model(xb.contiguous(memory_format=torch.channels_last))
            loss = (F.binary_cross_entropy_with_logits(logits.float(), yb, reduction="none") * wb).mean()
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        pv = predict(model, va, False)
        ap = metrics.average_precision(Y[va], pv)
        if ap > best:
            best, bad = ap, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg["patience"]:
                break
    secs = time.time() - t0
    model.load_state_dict(best_state)
    raw = np.zeros(len(Y), np.float32)
    allrows = np.arange(len(Y))
    raw[:] = predict(model, allrows, True)
    z = score.logit(raw)
    cal = score.fit_calibration(raw[va], Y[va]); pp = score.apply_calibration(raw, cal)
    where = (pids, xs, ys)
    prm = context.fit_context(*(q[va] for q in where), z[va], Y[va])
    pva = context.apply_context(prm, *(q[va] for q in where), z[va])
    pte = context.apply_context(prm, *(q[te] for q in where), z[te])
    thr = metrics.threshold_presets(Y[va], pva)["f1_optimal"]
    at = metrics.metrics_at(Y[te], pte, thr)
    r = dict(config=a.config, seed=seed, f1=at["f1"], bacc=at["balanced_accuracy"], auc=metrics.roc_auc(Y[te], pte),
             patch=metrics.roc_auc(Y[te], pp[te]), patch_val=metrics.roc_auc(Y[va], pp[va]), epochs=ep + 1, seconds=secs,
             params=sum(q.numel() for q in model.parameters()))
    rows_out.append(r)
    print(json.dumps(r), flush=True)
mean = {k: float(np.mean([r[k] for r in rows_out])) for k in ("f1", "bacc", "auc", "patch")}
print(f"MEAN {a.config}: F1 {mean['f1']:.3f} BAcc {mean['bacc']:.3f} AUC {mean['auc']:.3f} patch {mean['patch']:.3f} cfg {cfg}", flush=True)
with open(os.path.join(a.out, f"{a.config}.jsonl"), "a") as f:
    for r in rows_out:
        f.write(json.dumps(r) + "\n")
