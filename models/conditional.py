"""`conditional`: an mlp whose dropout is active only while training.

The write-up branched on `training` by hand inside `call`; a Dropout layer receiving the
`training` flag does exactly that, and does it the same way in both variants.
"""

from models import blocks
from models.net import Net, apply_in_order
from models.registry import register


@register("conditional")
class Conditional(Net):
    @staticmethod
    def make_blocks(num_classes, *, width, dropout, activation, l2):
        return [
            blocks.flatten(),
            blocks.dense(width, activation, l2, name="hidden"),
            blocks.dropout(dropout, name="dropout"),
            blocks.classifier(num_classes, l2),
        ]

    forward = staticmethod(apply_in_order)
