"""vision(): headless keras.applications backbones with preprocessing inside."""

import urllib.error

import keras
import numpy as np
import pytest

from kerafine.backbones import vision
from kerafine.errors import KerafineError, WeightsError

SHAPE = (32, 32, 3)


def _images(n=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n,) + SHAPE).astype("float32")


def _train_one_step(backbone, n_out=1):
    inputs = keras.Input(SHAPE)
    outputs = keras.layers.Dense(n_out, activation="sigmoid")(backbone(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(_images(), np.array([0, 1, 0, 1]), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    return any(changed)


def test_vgg16_builds_pooled_features_and_trains_one_step(seeded):
    backbone = vision("vgg16", weights=None, input_shape=SHAPE)
    assert isinstance(backbone, keras.Model)
    assert backbone.output.shape == (None, 512)
    assert backbone.get_layer("preprocessing").mode == "caffe"
    assert _train_one_step(backbone)


def test_mobilenet_v2_builds_with_tf_mode_preprocessing(seeded):
    backbone = vision("mobilenet_v2", weights=None, input_shape=SHAPE)
    assert backbone.output.shape == (None, 1280)
    assert backbone.get_layer("preprocessing").mode == "tf"
    assert np.all(np.isfinite(np.asarray(backbone(_images()))))


def test_unknown_pooling_is_rejected():
    with pytest.raises(KerafineError, match=r"argument `pooling`: received 'mean'"):
        vision("vgg16", weights=None, input_shape=SHAPE, pooling="mean")


def test_raw_pixels_in_equals_family_preprocess_input_outside(seeded):
    inside = vision("vgg16", weights=None, input_shape=SHAPE, pooling=None)
    outside = vision("vgg16", weights=None, input_shape=SHAPE, pooling=None, include_preprocessing=False)
    assert inside.output.shape == (None, 1, 1, 512)  # pooling=None: the feature map
    outside.set_weights(inside.get_weights())
    images = _images()
    expected = np.asarray(outside(keras.applications.vgg16.preprocess_input(images.copy())))
    np.testing.assert_allclose(np.asarray(inside(images)), expected, rtol=1e-4, atol=1e-3)
    # The caffe mode is not a no-op: raw pixels into the model without it differ.
    assert not np.allclose(np.asarray(outside(images)), expected, rtol=1e-2)


def test_keras_round_trip_keeps_predictions(tmp_path, seeded):
    backbone = vision("vgg16", weights=None, input_shape=SHAPE)
    path = tmp_path / "vgg16.keras"
    backbone.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    images = _images()
    np.testing.assert_array_equal(np.asarray(restored(images)), np.asarray(backbone(images)))
    assert restored.get_layer("preprocessing").mode == "caffe"


def test_local_weights_file_written_by_the_test_loads(tmp_path, seeded):
    source = vision("vgg16", weights=None, input_shape=SHAPE, include_preprocessing=False)
    path = tmp_path / "vgg16_notop.weights.h5"
    source.save_weights(path)
    # Same architecture, any input size and with the preprocessing layer: weights fit.
    loaded = vision("VGG16", weights=str(path), input_shape=(None, None, 3))
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert np.asarray(loaded(np.zeros((1, 48, 40, 3), "float32"))).shape == (1, 512)


def test_legacy_h5_weights_file_like_keras_notop_downloads_loads(tmp_path, seeded):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    source = vision("vgg16", weights=None, input_shape=SHAPE, include_preprocessing=False)
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    # The format of the files keras.applications downloads (a Keras 2 weights file).
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    loaded = vision("vgg16", weights=path, input_shape=SHAPE)
    images = _images()
    np.testing.assert_allclose(
        np.asarray(loaded(images)),
        np.asarray(source(keras.applications.vgg16.preprocess_input(images.copy()))),
        rtol=1e-4,
        atol=1e-3,
    )


def test_weights_file_of_another_architecture_is_a_weights_error(tmp_path, seeded):
    other = vision("vgg19", weights=None, input_shape=SHAPE)
    path = tmp_path / "vgg19.weights.h5"
    other.save_weights(path)
    with pytest.raises(WeightsError, match=r"argument `weights`.*expected a weights file of the vgg16 architecture"):
        vision("vgg16", weights=path, input_shape=SHAPE)


def test_missing_or_unsupported_weights_path_fails_before_building(tmp_path, monkeypatch):
    monkeypatch.setattr(keras.applications, "VGG16", lambda **kw: pytest.fail("built"))
    missing = tmp_path / "nowhere.weights.h5"
    with pytest.raises(WeightsError, match=r"argument `weights`: received .*nowhere.weights.h5.*does not exist"):
        vision("vgg16", weights=missing, input_shape=SHAPE)
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"argument `weights`.*\.h5"):
        vision("vgg16", weights=tmp_path / "model.pt", input_shape=SHAPE)
    with pytest.raises(WeightsError, match=r"argument `weights`: received 3"):
        vision("vgg16", weights=3, input_shape=SHAPE)


def test_imagenet_offline_says_how_to_use_a_local_file(tmp_path, monkeypatch):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    # An empty Keras cache, and a download that fails the way it does offline.
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras_home"))
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(WeightsError) as info:
        vision("vgg16", weights="imagenet", input_shape=SHAPE)
    message = str(info.value)
    assert calls and calls[0] in message  # the URL to fetch by hand
    assert str(tmp_path / "keras_home" / "models") in message  # where Keras looks first
    assert 'weights="/path/to/file.h5"' in message
    assert "`weights`" in message
