"""`dynamic`: a stack of `depth` Dense layers, the write-up's data-dependent-depth network.

All `depth` layers are created up front in `make_blocks`; the write-up created them inside
`call`, which builds new weights on every call.
"""

from dataclasses import dataclass

from models.definition import Definition
from models.registry import register
from trainer.config import checks
from trainer.config.choices import ACTIVATIONS


@register("dynamic")
@dataclass
class Dynamic(Definition):
    """Args:
        depth: how many hidden Dense layers; an integer >= 1.
        width: units of each; an integer >= 1.
        activation: their activation; a Keras activation name.
        dropout: rate of a Dropout after each while training, in [0, 1); 0 adds none.
        l2: L2 penalty on every kernel; a number >= 0 (0 adds no penalty).
    """

    depth: int
    width: int
    activation: str
    dropout: float
    l2: float

    def __post_init__(self):
        self.depth = checks.int_at_least("depth", self.depth, 1)
        self.width = checks.int_at_least("width", self.width, 1)
        self.activation = checks.one_of("activation", self.activation, ACTIVATIONS)
        self.dropout = checks.number_in("dropout", self.dropout, 0.0, 1.0)
        self.l2 = checks.number_above("l2", self.l2, 0.0, inclusive=True)

    def make_blocks(self, blocks, num_classes):
        stack = [blocks.flatten()]
        for i in range(self.depth):
            stack.append(blocks.dense(self.width, self.activation, self.l2, name=f"hidden_{i}"))
            if self.dropout:
                stack.append(blocks.dropout(self.dropout, name=f"dropout_{i}"))
        stack.append(blocks.classifier(num_classes, self.l2))
        return stack
