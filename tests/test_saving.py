import numpy as np
import pytest

import kerafine
from kerafine.errors import KerafineError


def test_load_model_restores_kerafine_layers_schedules_and_the_inference_pin(tmp_path):
    import keras

    from kerafine import backbones, heads, transfer
    from kerafine.schedules import WarmupCosineDecay

    backbone = backbones.vision("mobilenet_v2", weights=None, input_shape=(32, 32, 3))
    model = kerafine.build_transfer_model(backbone, heads.classification(3))
    model.compile(
        keras.optimizers.Adam(WarmupCosineDecay(peak_lr=1e-3, total_steps=10, warmup_steps=2)),
        "sparse_categorical_crossentropy",
    )
    x = np.random.default_rng(0).uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)

    loaded = kerafine.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert isinstance(loaded.optimizer._learning_rate, WarmupCosineDecay)
    # the reloaded backbone runs in inference mode under fit's training=True
    bn = next(l for l in transfer.backbone_of(loaded).layers if isinstance(l, keras.layers.BatchNormalization))
    before = [w.numpy() for w in bn.non_trainable_weights]
    loaded.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    for b, a in zip(before, bn.non_trainable_weights):
        np.testing.assert_array_equal(b, a.numpy())


def test_load_model_rejects_missing_or_non_keras_paths(tmp_path):
    with pytest.raises(KerafineError, match="argument `path`.*an existing .keras file"):
        kerafine.load_model(tmp_path / "nope.keras")
    with pytest.raises(KerafineError, match="argument `path`.*the path of a .keras file"):
        kerafine.load_model(tmp_path / "model.h5")
