"""Count the floating-point operations of one training step analytically.

A multiply-add is 2 FLOPs. Per example, for every Dense and Conv2D layer: forward 2*MACs,
the weight gradient 2*MACs, and the input gradient 2*MACs except for the first layer (nothing
upstream needs it). Bias adds, activations, the loss and the optimizer update are not counted:
they are the overhead the efficiency ratio is meant to expose.
"""

from __future__ import annotations

import math


def _macs(layer) -> int:
    """Multiply-adds per example of a Dense or Conv2D layer; 0 for any other layer."""
    kind = type(layer).__name__
    if kind == "Dense":
        fan_in, units = layer.kernel.shape
        positions = math.prod(layer.output.shape[1:-1]) if len(layer.output.shape) > 2 else 1
        return int(fan_in) * int(units) * positions
    if kind == "Conv2D":
        kh, kw, cin, cout = layer.kernel.shape
        _, h, w, _ = layer.output.shape
        return int(kh * kw * cin * cout * h * w)
    return 0


def training_flops_per_example(model) -> int:
    """FLOPs of forward plus backward for one example of a built functional model."""
    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True) if _macs(layer)]
    macs = [_macs(layer) for layer in layers]
    forward = 2 * sum(macs)
    weight_grads = 2 * sum(macs)
    input_grads = 2 * sum(macs[1:])
    return forward + weight_grads + input_grads
