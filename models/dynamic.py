"""`dynamic`: a stack of `depth` Dense layers, the write-up's data-dependent-depth network.

All `depth` layers are created up front in `make_blocks`; the write-up created them inside
`call`, which builds new weights on every call.
"""

from models import blocks
from models.net import Net, apply_in_order
from models.registry import register


@register("dynamic")
class Dynamic(Net):
    @staticmethod
    def make_blocks(num_classes, *, depth, width, activation, dropout, l2):
        stack = [blocks.flatten()]
        for i in range(depth):
            stack.append(blocks.dense(width, activation, l2, name=f"hidden_{i}"))
            if dropout:
                stack.append(blocks.dropout(dropout, name=f"dropout_{i}"))
        stack.append(blocks.classifier(num_classes, l2))
        return stack

    forward = staticmethod(apply_in_order)
