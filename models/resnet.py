"""`resnet`: a residual network for CIFAR-10-sized images (He et al. 2016, the CIFAR variant).

A 3x3 conv stem, then `stages` stages of `depth` basic residual blocks; stage i has
`widths[i]` filters, and every stage after the first halves the resolution in its first
block (whose shortcut is then a 1x1 projection). Global average pooling, dropout, classifier.
The default (3 stages of 2 blocks, widths 16-32-64) is ResNet-14 in the paper's CIFAR family.
"""

from models import blocks
from models.net import Net
from models.registry import RegistryError, register


@register("resnet")
class Resnet(Net):
    @staticmethod
    def make_blocks(num_classes, *, stages, widths, depth, dropout, activation, l2):
        widths = list(widths)
        if len(widths) != stages:
            # Also checked in trainer/config/validate.py before TensorFlow loads; this is for Python callers.
            raise RegistryError(
                f"widths must list one width per stage ({stages} integers, since stages={stages})."
                f" Received: widths={widths}"
            )
        residual = []
        previous = widths[0]
        for stage, width in enumerate(widths):
            for i in range(depth):
                strides = 2 if stage > 0 and i == 0 else 1
                residual.append(blocks.residual_block(
                    width, strides=strides, project=strides != 1 or width != previous,
                    activation_=activation, l2=l2, name=f"stage{stage}_block{i}",
                ))
                previous = width
        return {
            "stem": [
                blocks.conv(widths[0], None, l2, name="stem_conv"),
                blocks.batch_norm(name="stem_bn"),
                blocks.activation(activation, name="stem_act"),
            ],
            "residual": residual,
            "head": [blocks.global_pool(), blocks.dropout(dropout, name="dropout"), blocks.classifier(num_classes, l2)],
        }

    @staticmethod
    def forward(blocks_, x, training=None):
        for layer in blocks_["stem"]:
            x = layer(x, training=training)
        for block in blocks_["residual"]:
            x = blocks.apply_residual(block, x, training=training)
        for layer in blocks_["head"]:
            x = layer(x, training=training)
        return x
