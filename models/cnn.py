"""`cnn`: a small convolutional network for small images (digits 8x8, CIFAR-10 32x32).

`depth` stages of two 3x3 convolutions and a 2x2 max-pool, the filter count doubling per
stage from `filters`, then a Dense(`width`) head with dropout before the classifier.
"""

from dataclasses import dataclass

from models.definition import Definition
from models.registry import register
from trainer.config import checks
from trainer.config.choices import ACTIVATIONS


@register("cnn")
@dataclass
class Cnn(Definition):
    """Args:
        filters: filters of the first stage's convolutions (doubling every stage); an integer >= 1.
        depth: how many conv stages; an integer >= 1 (3 suits 32x32 images).
        width: units of the Dense head; an integer >= 1.
        dropout: rate of the Dropout before the classifier while training, in [0, 1).
        activation: the activation of every conv and Dense layer; a Keras activation name.
        l2: L2 penalty on every kernel; a number >= 0 (0 adds no penalty).
    """

    filters: int
    depth: int
    width: int
    dropout: float
    activation: str
    l2: float

    def __post_init__(self):
        self.filters = checks.int_at_least("filters", self.filters, 1)
        self.depth = checks.int_at_least("depth", self.depth, 1)
        self.width = checks.int_at_least("width", self.width, 1)
        self.dropout = checks.number_in("dropout", self.dropout, 0.0, 1.0)
        self.activation = checks.one_of("activation", self.activation, ACTIVATIONS)
        self.l2 = checks.number_above("l2", self.l2, 0.0, inclusive=True)

    def make_blocks(self, blocks, num_classes):
        stack = []
        for stage in range(self.depth):
            stack += blocks.conv_stage(self.filters * 2**stage, self.activation, self.l2, name=f"stage{stage}")
        stack += [
            blocks.flatten(),
            blocks.dense(self.width, self.activation, self.l2, name="hidden"),
            blocks.dropout(self.dropout, name="dropout"),
            blocks.classifier(num_classes, self.l2),
        ]
        return stack
