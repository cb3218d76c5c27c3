"""Train the paper's LeNet on MNIST with PyTorch (CPU) for any (k, B) and export it as a .snnm file.

Architecture (channels-last notation):
    16C5 pad2 (encoder: full-precision conv + BN + quantizer)
    - 16C5 - 16C2 stride2 - 32C5 - 32C2 stride2 - 256C4   (ternary conv + BN + quantizer, no bias)
    - dense 10                                              (full-precision classifier, no bias)

The quantizers, the network and the export live in snnmap.torch (optional extra `snnmap[torch]`).
After training the script saves the model in snnmap's native format, loads it back, evaluates it
with snnmap.reference.evaluate on the whole test set and reports the accuracy and the agreement
with PyTorch's eval-mode predictions (float32 as trained, and float64).

    python3 examples/lenet_mnist/train.py --mnist ../shared/data/mnist.npz --k 1 --B 2 \
        --out examples/lenet_mnist/lenet_k1_B2.snnm
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist", required=True, help="npz with x_train, y_train, x_test, y_test (uint8)")
    p.add_argument("--k", type=int, default=1, help="quantization level k (activation step 1/2^k)")
    p.add_argument("--B", type=int, default=2, help="activation upper bound B")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output model file (.snnm)")
    p.add_argument("--onnx", default=None, help="also export the trained network to this ONNX file")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (cosine decay)")
    p.add_argument("--shift", type=int, default=2,
                   help="random translation augmentation of up to this many pixels (0: none)")
    p.add_argument("--test-images", default=None,
                   help="also write the first 300 test images and labels to this npz")
    p.add_argument("--predictions", default=None,
                   help="also write torch's eval-mode test predictions (pred32, pred64) to this npz")
    p.add_argument("--state", default=None, help="also save the torch state_dict to this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # snnmap from this checkout
    try:
        import torch
    except ImportError:
        print("error: this script needs PyTorch: pip install 'snnmap[torch]'", file=sys.stderr)
        return 2
    from snnmap.modelfile import load_model, save_model
    from snnmap.reference import evaluate
    from snnmap.torch import lenet, predict, predict_float64, to_quant_model
    from snnmap.torch.train import fit, random_shift

    mnist = Path(args.mnist)
    if not mnist.is_file():
        print(f"error: MNIST file {mnist} not found", file=sys.stderr)
        return 2
    with np.load(mnist) as d:
        x_train, y_train = d["x_train"], d["y_train"].astype(np.int64)
        x_test, y_test = d["x_test"], d["y_test"].astype(np.int64)
    if args.test_images:
        np.savez(args.test_images, x=np.ascontiguousarray(x_test[:300], dtype=np.uint8),
                 y=y_test[:300].astype(np.int64))
        print(f"wrote {args.test_images}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = lenet(args.k, args.B)
    augment = (lambda xb, gen: random_shift(xb, args.shift, gen)) if args.shift > 0 else None
    t0 = time.time()

    def on_epoch(epoch, loss, acc):
        pv = predict(net, x_test)
        print(f"epoch {epoch + 1}/{args.epochs}  loss {loss:.4f}  train acc {acc:.4f}  "
              f"test acc (torch fp32) {(pv == y_test).mean():.4f}  elapsed {time.time() - t0:.0f}s", flush=True)
        net.train()

    train_s = fit(net, x_train[:, None], y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  seed=args.seed, augment=augment, on_epoch=on_epoch)

    pred32 = predict(net, x_test)
    pred64 = predict_float64(net, x_test)
    torch_acc = float((pred32 == y_test).mean())
    meta = {"trained_with": f"torch {torch.__version__}, examples/lenet_mnist/train.py (snnmap.torch)",
            "dataset": "MNIST", "epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size,
            "optimizer": "Adam", "lr": args.lr, "lr_schedule": "half-epoch linear warmup, cosine decay",
            "augmentation": f"random shift up to {args.shift} px" if args.shift else "none",
            "ternary_delta": "0.7 * mean|W|", "input": "pixels / 256",
            "train_seconds": round(train_s, 1), "torch_test_accuracy": torch_acc}
    save_model(to_quant_model(net, meta), args.out)
    print(f"saved {args.out}")
    if args.onnx:
        from snnmap.torch.onnx_export import export_onnx
        export_onnx(net, args.onnx)
        print(f"saved {args.onnx}")
    if args.state:
        torch.save(net.state_dict(), args.state)
    if args.predictions:
        np.savez(args.predictions, pred32=pred32, pred64=pred64)

    model = load_model(args.out)
    pred = evaluate(model, x_test)["pred"]
    acc = float((pred == y_test).mean())
    n = len(y_test)
    print(f"native-format test accuracy (snnmap.reference, {n} images): {acc * 100:.2f} %")
    print(f"torch eval accuracy: float32 {torch_acc * 100:.2f} %, float64 {(pred64 == y_test).mean() * 100:.2f} %")
    print(f"agreement with torch eval-mode predictions: float32 {int((pred == pred32).sum())}/{n}, "
          f"float64 {int((pred == pred64).sum())}/{n}")
    print(f"training time: {train_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
