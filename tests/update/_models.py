"""Tiny models and data shared by the update tests."""

import numpy as np


def data(n=400, seed=0, shift=0.0):
    """Two features; the label depends on both (a nonlinear boundary)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32") + np.float32(shift)
    y = ((x[:, 0] - shift) + 0.8 * (x[:, 1] - shift) ** 2 + 0.3 * rng.normal(size=n) > 0.6).astype("float32")
    return x, y


def transfer_model(seed=0, units=8, batchnorm=True):
    import keras

    import kerafine

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,), name="x")
    h = keras.layers.Dense(units, activation="relu", name="enc_dense")(inputs)
    if batchnorm:
        h = keras.layers.BatchNormalization(name="enc_bn")(h)
    enc = keras.Model(inputs, h, name="encoder")
    head = keras.layers.Dense(1, activation="sigmoid", name="predictions")
    return kerafine.build_transfer_model(enc, head)


def mlp(units=16, seed=0, inputs=4, outputs=1, activation="sigmoid"):
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.Input((inputs,))]
    if units:
        layers.append(keras.layers.Dense(units, activation="relu"))
    layers.append(keras.layers.Dense(outputs, activation=activation))
    return keras.Sequential(layers)


def trained_mlp(units=16, seed=0, epochs=30, n=600):
    m = mlp(units, seed)
    x, y = data(n, seed=seed)
    m.compile("adam", "binary_crossentropy")
    m.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return m
