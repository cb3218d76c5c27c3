"""Train the four-spike LeNet (k=1, B=2) on MNIST with PyTorch (CPU) and export it as a .snnm file.

Architecture (channels-last notation):
    16C5 pad2 (encoder: full-precision conv + BN + quantizer)
    - 16C5 - 16C2 stride2 - 32C5 - 32C2 stride2 - 256C4   (ternary conv + BN + quantizer, no bias)
    - dense 10                                              (full-precision classifier, no bias)

Input is pixels / 256. After every batch norm the activation is quantized to 2^k*B+1 = 5 levels,
q = round_half_up(clip(y, 0, B) * 2^k) / 2^k, with a straight-through estimator (gradient passes
where 0 < y < B). Ternary weights per layer: delta = 0.7 * mean|W|, w_t = sign(W) * (|W| > delta),
no scale factor (batch norm absorbs it), straight-through estimator to the latent float weights.

After training the script saves the model with snnmap's native format, loads it back, evaluates it
with snnmap.reference.evaluate on the whole test set and reports the test accuracy and the agreement
with PyTorch's own eval-mode predictions (computed in float64).

torch is an optional dependency of snnmap; it is only needed for this script:

    python3 examples/lenet_mnist/train.py --mnist ../shared/data/mnist.npz \
        --out examples/lenet_mnist/lenet_k1_B2.snnm
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

K = 1
B = 2
INPUT_SCALE = 1.0 / 256.0
BN_EPS = 1e-5
TERNARY_DELTA = 0.7

# (name, cin, cout, kernel, stride, padding) of the five ternary convolutions.
TERNARY_LAYERS = (
    ("conv2", 16, 16, 5, 1, 0),
    ("conv3", 16, 16, 2, 2, 0),
    ("conv4", 16, 32, 5, 1, 0),
    ("conv5", 32, 32, 2, 2, 0),
    ("conv6", 32, 256, 4, 1, 0),
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist", required=True, help="npz with x_train, y_train, x_test, y_test (uint8)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output model file (.snnm)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (cosine decay)")
    p.add_argument("--shift", type=int, default=2,
                   help="random translation augmentation of up to this many pixels (0: none)")
    p.add_argument("--test-images", default=None,
                   help="also write the first 300 test images and labels to this npz")
    return p.parse_args(argv)


def build(torch):
    nn = torch.nn

    def round_half_up(v):
        f = torch.floor(v)
        return f + (v - f >= 0.5).to(v.dtype)

    class Quant(nn.Module):
        """q = round_half_up(clip(y, 0, B) * 2^k) / 2^k, straight-through where 0 < y < B."""

        def forward(self, y):
            yc = torch.clamp(y, 0.0, float(B))  # zero gradient outside [0, B]
            scale = float(2 ** K)
            q = round_half_up(yc * scale) / scale
            return yc + (q - yc).detach()

    def ternarize(w):
        """sign(W) * (|W| > 0.7 mean|W|) as values, straight-through gradient to W."""
        with torch.no_grad():
            delta = TERNARY_DELTA * w.abs().mean()
            t = torch.sign(w) * (w.abs() > delta).to(w.dtype)
        return w + (t - w).detach()

    class TernaryConv(nn.Conv2d):
        def forward(self, x):
            return self._conv_forward(x, ternarize(self.weight), None)

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Conv2d(1, 16, 5, stride=1, padding=2, bias=False)
            self.enc_bn = nn.BatchNorm2d(16, eps=BN_EPS)
            self.convs = nn.ModuleList()
            self.bns = nn.ModuleList()
            for _, cin, cout, ks, st, pad in TERNARY_LAYERS:
                self.convs.append(TernaryConv(cin, cout, ks, stride=st, padding=pad, bias=False))
                self.bns.append(nn.BatchNorm2d(cout, eps=BN_EPS))
            self.q = Quant()
            self.fc = nn.Linear(256, 10, bias=False)

        def forward(self, x):
            a = self.q(self.enc_bn(self.enc(x)))
            for conv, bn in zip(self.convs, self.bns):
                a = self.q(bn(conv(a)))
            return self.fc(a.flatten(1))

    return LeNet, ternarize


def export(net, ternarize, meta):
    """The trained network as a snnmap QuantModel (channels-last)."""
    from snnmap.model import BatchNorm, Classifier, Layer, QuantModel

    def bn_of(bn):
        return BatchNorm(beta=bn.bias.detach().double().numpy().copy(),
                         gamma=bn.weight.detach().double().numpy().copy(),
                         mean=bn.running_mean.detach().double().numpy().copy(),
                         var=bn.running_var.detach().double().numpy().copy(), eps=BN_EPS)

    def hwio(w):  # torch (cout, cin, kh, kw) -> snnmap (kh, kw, cin, cout)
        return np.ascontiguousarray(w.detach().numpy().transpose(2, 3, 1, 0))

    encoder = Layer(name="encoder", kind="conv", weights=hwio(net.enc.weight.double()),
                    bn=bn_of(net.enc_bn), stride=1, padding=2)
    layers = []
    for (name, _, _, _, st, pad), conv, bn in zip(TERNARY_LAYERS, net.convs, net.bns):
        t = ternarize(conv.weight.detach().double())
        layers.append(Layer(name=name, kind="conv", weights=hwio(t).astype(np.int8), bn=bn_of(bn),
                            stride=st, padding=pad))
    # last conv output is 1x1x256, so (h, w, c) flattening is just the 256 channels
    clf = Classifier(weights=np.ascontiguousarray(net.fc.weight.detach().double().numpy().T),
                     bias=np.zeros(10, dtype=np.float64))
    return QuantModel(input_shape=(28, 28, 1), k=K, B=B, input_scale=INPUT_SCALE, encoder=encoder,
                      layers=tuple(layers), classifier=clf, name="lenet-mnist-k1B2", meta=meta)


def torch_eval_float64(torch, net, ternarize, x_u8, batch=500):
    """Eval-mode predictions in float64, batch norm written as the reference writes it."""
    F = torch.nn.functional

    def bn_q(x, bn):
        g = bn.weight.detach().double().view(1, -1, 1, 1)
        b = bn.bias.detach().double().view(1, -1, 1, 1)
        m = bn.running_mean.detach().double().view(1, -1, 1, 1)
        v = bn.running_var.detach().double().view(1, -1, 1, 1)
        y = g * (x - m) / torch.sqrt(v + bn.eps) + b
        s = float(2 ** K)
        vv = torch.clamp(y, 0.0, float(B)) * s
        f = torch.floor(vv)
        return (f + (vv - f >= 0.5).double()) / s

    preds = []
    with torch.no_grad():
        wenc = net.enc.weight.double()
        wts = [ternarize(c.weight.double()) for c in net.convs]
        wfc = net.fc.weight.double()
        for s in range(0, len(x_u8), batch):
            x = torch.from_numpy(x_u8[s:s + batch].astype(np.float64))[:, None] * INPUT_SCALE
            a = bn_q(F.conv2d(x, wenc, stride=1, padding=2), net.enc_bn)
            for (_, _, _, _, st, pad), w, bn in zip(TERNARY_LAYERS, wts, net.bns):
                a = bn_q(F.conv2d(a, w, stride=st, padding=pad), bn)
            preds.append((a.flatten(1) @ wfc.T).argmax(1).numpy())
    return np.concatenate(preds)


def random_shift(torch, x, max_shift, gen):
    """Translate each image by up to max_shift pixels (zero fill)."""
    n, _, h, w = x.shape
    p = max_shift
    xp = torch.nn.functional.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
    idx_n = torch.arange(n).view(n, 1, 1)
    return xp[idx_n, 0, rows.view(n, h, 1), cols.view(n, 1, w)][:, None]


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("error: this script needs PyTorch (an optional dependency of snnmap); "
              "install it, e.g. `pip install torch`, and rerun", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # snnmap from this checkout
    from snnmap.modelfile import load_model, save_model
    from snnmap.reference import evaluate

    mnist = Path(args.mnist)
    if not mnist.is_file():
        print(f"error: MNIST file {mnist} not found", file=sys.stderr)
        return 2
    d = np.load(mnist)
    x_train, y_train = d["x_train"], d["y_train"].astype(np.int64)
    x_test, y_test = d["x_test"], d["y_test"].astype(np.int64)

    if args.test_images:
        np.savez(args.test_images, x=np.ascontiguousarray(x_test[:300], dtype=np.uint8),
                 y=y_test[:300].astype(np.int64))
        print(f"wrote {args.test_images}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    LeNet, ternarize = build(torch)
    net = LeNet()
    xt = torch.from_numpy(x_train.astype(np.float32))[:, None] * INPUT_SCALE
    yt = torch.from_numpy(y_train)
    xv = torch.from_numpy(x_test.astype(np.float32))[:, None] * INPUT_SCALE

    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(len(xt) / args.batch_size)
    total = args.epochs * steps_per_epoch
    warm = steps_per_epoch // 2
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    lossf = torch.nn.CrossEntropyLoss()

    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        run_loss, correct = 0.0, 0
        for s in range(0, len(xt), args.batch_size):
            idx = perm[s:s + args.batch_size]
            xb, yb = xt[idx], yt[idx]
            if args.shift > 0:
                xb = random_shift(torch, xb, args.shift, gen)
            out = net(xb)
            loss = lossf(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        net.eval()
        with torch.no_grad():
            pv = torch.cat([net(xv[i:i + 1000]).argmax(1) for i in range(0, len(xv), 1000)]).numpy()
        print(f"epoch {epoch + 1}/{args.epochs}  loss {run_loss / len(xt):.4f}  "
              f"train acc {correct / len(xt):.4f}  test acc (torch fp32) {(pv == y_test).mean():.4f}  "
              f"elapsed {time.time() - t0:.0f}s", flush=True)
    train_s = time.time() - t0

    net.eval()
    torch_pred = torch_eval_float64(torch, net, ternarize, x_test)
    torch_acc = float((torch_pred == y_test).mean())
    meta = {"trained_with": f"torch {torch.__version__}, examples/lenet_mnist/train.py",
            "dataset": "MNIST", "epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size,
            "optimizer": "Adam", "lr": args.lr, "lr_schedule": "half-epoch linear warmup, cosine decay",
            "augmentation": f"random shift up to {args.shift} px" if args.shift else "none",
            "ternary_delta": f"{TERNARY_DELTA} * mean|W|", "input": "pixels / 256",
            "train_seconds": round(train_s, 1), "torch_test_accuracy_float64": torch_acc}
    save_model(export(net, ternarize, meta), args.out)
    print(f"saved {args.out}")

    model = load_model(args.out)
    pred = evaluate(model, x_test)["pred"]
    acc = float((pred == y_test).mean())
    mismatch = int((pred != torch_pred).sum())
    print(f"native-format test accuracy (snnmap.reference, {len(y_test)} images): {acc * 100:.2f} %")
    print(f"torch float64 eval accuracy: {torch_acc * 100:.2f} %")
    print(f"agreement with torch eval-mode predictions: {(len(y_test) - mismatch)}/{len(y_test)} "
          f"({mismatch} mismatches)")
    print(f"training time: {train_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
