"""`mlp`: Flatten -> Dense(width) -> classifier, the first network of the write-up."""

from models import blocks
from models.net import Net, apply_in_order
from models.registry import register


@register("mlp")
class Mlp(Net):
    @staticmethod
    def make_blocks(num_classes, *, width, activation, l2):
        return [
            blocks.flatten(),
            blocks.dense(width, activation, l2, name="hidden"),
            blocks.classifier(num_classes, l2),
        ]

    forward = staticmethod(apply_in_order)
