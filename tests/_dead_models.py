"""Backbones whose features are constant by construction, for the dead-model alarm tests (issue 19)."""

import keras
import numpy as np


def bn_backbone(collapsed: bool):
    """A small CNN whose BatchNorm moving statistics make its inference-mode features constant when ``collapsed``.

    A moving variance of 1e12 divides the BatchNorm input by 1e6, so its inference output is beta (1.0)
    plus a variation a million times smaller: what a backbone whose moving statistics came from another
    momentum gives, built deterministically.
    """
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    bn = keras.layers.BatchNormalization(name="bn")
    x = keras.layers.ReLU(name="relu")(bn(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, x, name="cnn")
    if collapsed:
        bn.moving_variance.assign(np.full(4, 1e12, "float32"))
        bn.beta.assign(np.ones(4, "float32"))
    return model


def images(n=64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 8, 8, 3)).astype("float32")
