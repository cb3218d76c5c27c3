"""The paper's networks with random parameters from a fixed seed, for benchmarks and scale tests.

Weights are ternary with a third of each sign; batch norm is set from the fan-in so that
activations spread over all levels instead of saturating or dying.
"""

from __future__ import annotations

import numpy as np

from snnmap.importers.tl import parse_arch
from snnmap.model import BatchNorm, Classifier, Layer, QuantModel

LENET_ARCH = "16C5p2-16C5-16C2s2-32C5-32C2s2-256C4-10"
VGG_ARCH = "64C3p1-64C3p1-64C3p1-64C2s2-128C3p1-128C3p1-128C2s2-256C3p1-256C3p1-256C2s2-512C3p1-512C3-10"


def random_model(arch: str, input_hw: tuple[int, int], channels: int, k: int = 1, B: int = 2, seed: int = 0,
                 name: str | None = None) -> QuantModel:
    convs, classes = parse_arch(arch)
    rng = np.random.default_rng(seed)
    layers = []
    c_in = channels
    for i, t in enumerate(convs):
        shape = (t.kernel, t.kernel, c_in, t.channels)
        fan_in = t.kernel * t.kernel * c_in
        if i == 0:
            w = rng.normal(0, 1 / np.sqrt(fan_in), shape)
            var = np.full(t.channels, 1 / 12)  # inputs uniform in [0, 1): unit-order pre-activations
        else:
            w = rng.choice(np.array([-1, 0, 1], np.int8), size=shape, p=[1 / 3, 1 / 3, 1 / 3])
            var = np.full(t.channels, fan_in * (2 / 3) * B * B / 3)
        bn = BatchNorm(beta=rng.uniform(0.2, 0.8, t.channels) * B, gamma=rng.uniform(0.5, 1.5, t.channels),
                       mean=rng.normal(0, 0.1, t.channels) * np.sqrt(var), var=var)
        layers.append(Layer("encoder" if i == 0 else f"conv{i + 1}", "conv", w, bn, t.stride, t.padding))
        c_in = t.channels
    model = QuantModel((*input_hw, channels), k, B, 1 / 256, layers[0], tuple(layers[1:]),
                       Classifier(np.zeros((1, classes)), np.zeros(classes)), name=name or "random")
    feats = int(np.prod(model.shapes()[-1]))
    clf = Classifier(rng.normal(0, 1 / np.sqrt(feats), (feats, classes)), np.zeros(classes))
    return QuantModel(model.input_shape, k, B, 1 / 256, layers[0], tuple(layers[1:]), clf,
                      name=model.name).validate()


def vgg(seed: int = 0, k: int = 1, B: int = 2, classes: int = 10) -> QuantModel:
    """VGG-Net for 24x24x3 CIFAR crops, 150,272 ANN neurons on chip (601,088 spiking in four-spike form)."""
    return random_model(VGG_ARCH.rsplit("-", 1)[0] + f"-{classes}", (24, 24), 3, k, B, seed, name="vgg-random")


def lenet(seed: int = 0, k: int = 1, B: int = 2) -> QuantModel:
    return random_model(LENET_ARCH, (28, 28), 1, k, B, seed, name="lenet-random")
