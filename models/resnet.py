"""`resnet`: a residual network for CIFAR-10-sized images (He et al. 2016, the CIFAR variant).

A 3x3 conv stem, then `stages` stages of `depth` basic residual blocks; stage i has
`widths[i]` filters, and every stage after the first halves the resolution in its first
block (whose shortcut is then a 1x1 projection). Global average pooling, dropout, classifier.
The default (3 stages of 2 blocks, widths 16-32-64) is ResNet-14 in the paper's CIFAR family.
"""

from dataclasses import dataclass

from models.definition import Definition
from models.registry import register
from trainer.config import checks
from trainer.config.choices import ACTIVATIONS
from trainer.errors import ConfigError


@register("resnet")
@dataclass
class Resnet(Definition):
    """Args:
        stages: how many resolution stages; an integer >= 1.
        widths: filters of each stage; a list of `stages` integers >= 1, such as [16,32,64].
        depth: residual blocks per stage; an integer >= 1.
        dropout: rate of the Dropout before the classifier while training, in [0, 1).
        activation: the activation inside every block; a Keras activation name.
        l2: L2 penalty on every kernel; a number >= 0 (0 adds no penalty).
    """

    stages: int
    widths: list
    depth: int
    dropout: float
    activation: str
    l2: float

    def __post_init__(self):
        self.stages = checks.int_at_least("stages", self.stages, 1)
        if not isinstance(self.widths, (list, tuple)) or not self.widths or not all(
                checks.is_int(w) and w >= 1 for w in self.widths):
            raise checks.fail("widths", "a list of integers >= 1, one per stage, such as [16,32,64]", self.widths)
        self.widths = list(self.widths)
        if len(self.widths) != self.stages:
            raise ConfigError(
                f"widths must list one width per stage ({self.stages} integers >= 1, since stages={self.stages})."
                f" Received: widths={checks.shown(self.widths)}"
            )
        self.depth = checks.int_at_least("depth", self.depth, 1)
        self.dropout = checks.number_in("dropout", self.dropout, 0.0, 1.0)
        self.activation = checks.one_of("activation", self.activation, ACTIVATIONS)
        self.l2 = checks.number_above("l2", self.l2, 0.0, inclusive=True)

    def make_blocks(self, blocks, num_classes):
        residual = []
        previous = self.widths[0]
        for stage, width in enumerate(self.widths):
            for i in range(self.depth):
                strides = 2 if stage > 0 and i == 0 else 1
                residual.append(blocks.residual_block(
                    width, strides=strides, project=strides != 1 or width != previous,
                    activation_=self.activation, l2=self.l2, name=f"stage{stage}_block{i}",
                ))
                previous = width
        return {
            "stem": [
                blocks.conv(self.widths[0], None, self.l2, name="stem_conv"),
                blocks.batch_norm(name="stem_bn"),
                blocks.activation(self.activation, name="stem_act"),
            ],
            "residual": residual,
            "head": [blocks.global_pool(), blocks.dropout(self.dropout, name="dropout"),
                     blocks.classifier(num_classes, self.l2)],
        }

    def forward(self, built, x, training=None):
        for layer in built["stem"]:
            x = layer(x, training=training)
        for block in built["residual"]:
            x = _residual(block, x, training)
        for layer in built["head"]:
            x = layer(x, training=training)
        return x


def _residual(block: dict, x, training):
    """A basic block (models/blocks.py `residual_block`): two conv-BN, the shortcut, the add."""
    y = block["act_a"](block["bn_a"](block["conv_a"](x), training=training))
    y = block["bn_b"](block["conv_b"](y), training=training)
    shortcut = x
    if "shortcut_conv" in block:
        shortcut = block["shortcut_bn"](block["shortcut_conv"](x), training=training)
    return block["act_out"](block["add"]([y, shortcut]))
