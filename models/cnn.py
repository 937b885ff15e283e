"""`cnn`: a small convolutional network for small images (digits 8x8, CIFAR-10 32x32).

`depth` stages of two 3x3 convolutions and a 2x2 max-pool, the filter count doubling per
stage from `filters`, then a Dense(`width`) head with dropout before the classifier.
"""

from models import blocks
from models.net import Net, apply_in_order
from models.registry import register


@register("cnn")
class Cnn(Net):
    @staticmethod
    def make_blocks(num_classes, *, filters, depth, width, dropout, activation, l2):
        stack = []
        for stage in range(depth):
            stack += blocks.conv_stage(filters * 2**stage, activation, l2, name=f"stage{stage}")
        stack += [
            blocks.flatten(),
            blocks.dense(width, activation, l2, name="hidden"),
            blocks.dropout(dropout, name="dropout"),
            blocks.classifier(num_classes, l2),
        ]
        return stack

    forward = staticmethod(apply_in_order)
