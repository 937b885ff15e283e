"""`mlp`: Flatten -> Dense(width) -> classifier, the first network of the write-up."""

from dataclasses import dataclass

from models.definition import Definition
from models.registry import register
from trainer.config import checks
from trainer.config.choices import ACTIVATIONS


@register("mlp")
@dataclass
class Mlp(Definition):
    """Args:
        width: units of the hidden Dense layer; an integer >= 1.
        activation: the hidden layer's activation; a Keras activation name.
        l2: L2 penalty on every kernel; a number >= 0 (0 adds no penalty).
    """

    width: int
    activation: str
    l2: float

    def __post_init__(self):
        self.width = checks.int_at_least("width", self.width, 1)
        self.activation = checks.one_of("activation", self.activation, ACTIVATIONS)
        self.l2 = checks.number_above("l2", self.l2, 0.0, inclusive=True)

    def make_blocks(self, blocks, num_classes):
        return [
            blocks.flatten(),
            blocks.dense(self.width, self.activation, self.l2, name="hidden"),
            blocks.classifier(num_classes, self.l2),
        ]
