"""The edge model: small residual depthwise-separable CNN for 48-64 px grayscale faces."""
from __future__ import annotations

# Keras is imported inside the builders, so that `train --help` and option checks can read STEMS
# without loading it.


def _sep_block(x, filters: int, stride: int, name: str):
    """Two separable convs with a residual shortcut; stride 2 halves the resolution."""
    from keras import layers

    shortcut = x
    y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sep1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sep2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride > 1:
        y = layers.MaxPooling2D(3, strides=stride, padding="same", name=f"{name}_pool")(y)
    if stride > 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, padding="same", use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_projbn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


# The stem's second layer runs at full resolution, so it is a large share of a face's cost: "double" is
# two full 3x3 convs (every earlier run), "separable" makes the second one depthwise-separable,
# "single" drops it. A lighter stem buys channels in the blocks at the same price (costs: model_export/runs/README.md).
STEMS = ("double", "separable", "single")


def build_model(input_size: int = 48, width: float = 1.0, num_classes: int = 7, dropout: float = 0.3,
                stem: str = "double"):
    """Input: float grayscale in the range given at export (we train on [0, 1]); output: softmax (a keras.Model)."""
    import keras
    from keras import layers

    if stem not in STEMS:
        raise ValueError(f"stem {stem!r}: expected one of {', '.join(STEMS)}")
    w = lambda c: max(8, int(round(c * width / 8)) * 8)  # noqa: E731 - channel counts stay SIMD friendly
    inp = keras.Input((input_size, input_size, 1), name="face")
    x = layers.Conv2D(w(32), 3, padding="same", use_bias=False, name="stem_conv")(inp)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    if stem != "single":
        second = layers.Conv2D if stem == "double" else layers.SeparableConv2D
        x = second(w(32), 3, padding="same", use_bias=False, name="stem_conv2")(x)
        x = layers.BatchNormalization(name="stem_bn2")(x)
        x = layers.ReLU(name="stem_relu2")(x)
    x = _sep_block(x, w(64), 2, "b1")    # 24x24
    x = _sep_block(x, w(64), 1, "b2")
    x = _sep_block(x, w(128), 2, "b3")   # 12x12
    x = _sep_block(x, w(128), 1, "b4")
    x = _sep_block(x, w(256), 2, "b5")   # 6x6
    x = _sep_block(x, w(256), 1, "b6")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="drop")(x)
    out = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    suffix = "" if stem == "double" else f"_{stem}"
    return keras.Model(inp, out, name=f"edgenet_{input_size}_w{width:g}{suffix}")
