"""`conditional`: an mlp whose dropout is active only while training.

The write-up branched on `training` by hand inside `call`; a Dropout layer receiving the
`training` flag does exactly that, and does it the same way in both variants.
"""

from dataclasses import dataclass

from models.definition import Definition
from models.registry import register
from trainer.config import checks
from trainer.config.choices import ACTIVATIONS


@register("conditional")
@dataclass
class Conditional(Definition):
    """Args:
        width: units of the hidden Dense layer; an integer >= 1.
        dropout: rate of the Dropout after it while training, in [0, 1).
        activation: the hidden layer's activation; a Keras activation name.
        l2: L2 penalty on every kernel; a number >= 0 (0 adds no penalty).
    """

    width: int
    dropout: float
    activation: str
    l2: float

    def __post_init__(self):
        self.width = checks.int_at_least("width", self.width, 1)
        self.dropout = checks.number_in("dropout", self.dropout, 0.0, 1.0)
        self.activation = checks.one_of("activation", self.activation, ACTIVATIONS)
        self.l2 = checks.number_above("l2", self.l2, 0.0, inclusive=True)

    def make_blocks(self, blocks, num_classes):
        return [
            blocks.flatten(),
            blocks.dense(self.width, self.activation, self.l2, name="hidden"),
            blocks.dropout(self.dropout, name="dropout"),
            blocks.classifier(num_classes, self.l2),
        ]
