"""Train the paper's VGG-Net on CIFAR-10 or CIFAR-100 with PyTorch and export it as a .snnm file.

    64C3 (encoder) - 64C3 - 64C3 - 64C2s2 - 128C3 - 128C3 - 128C2s2 - 256C3 - 256C3 - 256C2s2
    - 512C3 (SAME) - 512C3 (VALID) - FC10/FC100, on 24x24x3 crops (random crop + mirror in
    training, centre crop in test), pixels / 256.

--cifar takes the dataset's binary version as its publishers distribute it, unpacked (a folder
holding data_batch_1.bin .. data_batch_5.bin and test_batch.bin for CIFAR-10, or train.bin and
test.bin for CIFAR-100: one label byte, or coarse and fine label bytes, then 3072 pixel bytes,
channel-major), or an .npz with x_train (N, 32, 32, 3) uint8, y_train, x_test, y_test. Nothing is
unpickled. The quantizers, network and export are snnmap.torch's.

    python3 examples/vgg_cifar/train.py --cifar cifar-10-batches-bin --k 1 --B 2 --epochs 60 --out vgg.snnm
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _records(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    size = label_bytes + 3072
    if raw.size == 0 or raw.size % size:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {size}-byte CIFAR records")
    rec = raw.reshape(-1, size)
    x = rec[:, label_bytes:].reshape(-1, 3, 32, 32)
    return np.ascontiguousarray(x), rec[:, label_bytes - 1].astype(np.int64)  # CIFAR-100: the fine label


def load_cifar(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """x_train, y_train, x_test, y_test (images NCHW uint8) and the number of classes."""
    p = Path(path)
    if p.is_file():
        with np.load(p) as d:
            xs = [np.ascontiguousarray(d[k].transpose(0, 3, 1, 2)) for k in ("x_train", "x_test")]
            ys = [d[k].astype(np.int64).reshape(-1) for k in ("y_train", "y_test")]
        return xs[0], ys[0], xs[1], ys[1], int(max(ys[0].max(), ys[1].max()) + 1)
    if (p / "train.bin").is_file():
        xtr, ytr = _records(p / "train.bin", 2)
        xte, yte = _records(p / "test.bin", 2)
        return xtr, ytr, xte, yte, 100
    parts = [_records(p / f"data_batch_{i}.bin", 1) for i in range(1, 6) if (p / f"data_batch_{i}.bin").is_file()]
    if not parts:
        raise FileNotFoundError(f"{p}: no CIFAR binary files (data_batch_N.bin / train.bin) and not an .npz")
    xte, yte = _records(p / "test_batch.bin", 1)
    return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts]), xte, yte, 10


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cifar", required=True, help="CIFAR binary folder or npz")
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--B", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke tests)")
    ap.add_argument("--limit-test", type=int, default=None, help="evaluate on the first N test images only")
    ap.add_argument("--out", required=True, help="output model file (.snnm)")
    ap.add_argument("--onnx", default=None, help="also export the trained network to this ONNX file")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # snnmap from this checkout
    try:
        import torch
    except ImportError:
        print("error: this script needs PyTorch: pip install 'snnmap[torch]'", file=sys.stderr)
        return 2
    from snnmap.modelfile import load_model, save_model
    from snnmap.reference import evaluate
    from snnmap.torch import predict, predict_float64, to_quant_model, vgg
    from snnmap.torch.train import center_crop, fit, random_crop_flip

    try:
        x_train, y_train, x_test, y_test, classes = load_cifar(args.cifar)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.limit_test:
        x_test, y_test = x_test[:args.limit_test], y_test[:args.limit_test]
    x_test = center_crop(x_test, 24)
    torch.set_num_threads(args.threads)
    net = vgg(args.k, args.B, classes)
    t0 = time.time()

    def on_epoch(epoch, loss, acc):
        pv = predict(net, x_test, batch=200)
        print(f"epoch {epoch + 1}/{args.epochs}  loss {loss:.4f}  train acc {acc:.4f}  "
              f"test acc (torch fp32) {(pv == y_test).mean():.4f}  elapsed {time.time() - t0:.0f}s", flush=True)
        net.train()

    train_s = fit(net, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  seed=args.seed, augment=lambda xb, gen: random_crop_flip(xb, 24, gen),
                  max_steps=args.max_steps, on_epoch=on_epoch)
    pred32 = predict(net, x_test, batch=200)
    pred64 = predict_float64(net, x_test, batch=200)
    meta = {"trained_with": f"torch {torch.__version__}, examples/vgg_cifar/train.py (snnmap.torch)",
            "dataset": f"CIFAR-{classes}", "epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size,
            "optimizer": "Adam", "lr": args.lr, "augmentation": "random 24x24 crop, mirror",
            "input": "pixels / 256, centre 24x24 crop", "train_seconds": round(train_s, 1),
            "torch_test_accuracy": float((pred32 == y_test).mean())}
    save_model(to_quant_model(net, meta), args.out)
    print(f"saved {args.out}")
    if args.onnx:
        from snnmap.torch.onnx_export import export_onnx
        export_onnx(net, args.onnx)
        print(f"saved {args.onnx}")
    model = load_model(args.out)
    pred = evaluate(model, x_test.transpose(0, 2, 3, 1))["pred"]
    n = len(y_test)
    print(f"native-format test accuracy (snnmap.reference, {n} images): {(pred == y_test).mean() * 100:.2f} %")
    print(f"agreement with torch eval-mode predictions: float32 {int((pred == pred32).sum())}/{n}, "
          f"float64 {int((pred == pred64).sum())}/{n}")
    print(f"training time: {train_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
