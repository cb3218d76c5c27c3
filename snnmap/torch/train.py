"""Training loop and augmentations shared by the example scripts and the tests."""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each NCHW image by up to max_shift pixels, zero fill (MNIST)."""
    n, c, h, w = x.shape
    p = max_shift
    xp = torch.nn.functional.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w)
    return xp[torch.arange(n).view(n, 1, 1, 1), torch.arange(c).view(1, c, 1, 1), rows, cols]


def random_crop_flip(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """A random size x size crop of each NCHW image, mirrored left-right half of the time (CIFAR)."""
    n, c, h, w = x.shape
    dy = torch.randint(0, h - size + 1, (n,), generator=gen)
    dx = torch.randint(0, w - size + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(size).view(1, size)).view(n, 1, size, 1)
    cols = (dx.view(n, 1) + torch.arange(size).view(1, size)).view(n, 1, 1, size)
    out = x[torch.arange(n).view(n, 1, 1, 1), torch.arange(c).view(1, c, 1, 1), rows, cols]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def center_crop(x: np.ndarray, size: int) -> np.ndarray:
    """The central size x size window of NCHW (or NHW) images."""
    h, w = x.shape[-2:]
    t, l = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(x[..., t:t + size, l:l + size])


def fit(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int = 1, batch_size: int = 100,
        lr: float = 2e-3, seed: int = 0, augment: Callable | None = None, max_steps: int | None = None,
        on_epoch: Callable[[int, float, float], None] | None = None) -> float:
    """Adam, half-epoch linear warm-up then cosine decay to 0; x raw pixels NCHW. Returns seconds."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    steps_per_epoch = math.ceil(len(xt) / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    warm = max(1, steps_per_epoch // 2 if max_steps is None else min(steps_per_epoch // 2, total // 4))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    lossf = torch.nn.CrossEntropyLoss()
    t0, step = time.time(), 0
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        run_loss, correct, seen = 0.0, 0, 0
        for s in range(0, len(xt), batch_size):
            if step >= total:
                break
            idx = perm[s:s + batch_size]
            xb, yb = xt[idx], yt[idx]
            if augment is not None:
                xb = augment(xb, gen)
            out = net(xb)
            loss = lossf(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            run_loss += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            seen += len(idx)
        net.eval()
        if on_epoch is not None and seen:
            on_epoch(epoch, run_loss / seen, correct / seen)
        if step >= total:
            break
    net.eval()
    return time.time() - t0
