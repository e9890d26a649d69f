"""The vision registry: names, lookups, and per-family facts checked against Keras."""

import keras
import numpy as np
import pytest

from kerafine.backbones import list_backbones, vision
from kerafine.backbones._registry import _registry, get_spec
from kerafine.backbones.vision import ImagenetPreprocessing
from kerafine.errors import KerafineError


def _keras_constructors():
    return sorted(
        attr for attr in dir(keras.applications) if attr[:1].isupper() and callable(getattr(keras.applications, attr))
    )


def test_registry_covers_every_keras_application():
    constructors = {spec.constructor for spec in _registry().values()}
    assert constructors == set(_keras_constructors())
    assert len(list_backbones()) == len(_keras_constructors())


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("vgg16", "vgg16"),
        ("VGG19", "vgg19"),
        ("ResNet50", "resnet50"),
        ("resnet50_v2", "resnet50_v2"),
        ("MobileNetV2", "mobilenet_v2"),
        ("mobilenetv2", "mobilenet_v2"),
        ("mobilenet_v3_small", "mobilenet_v3_small"),
        ("EfficientNet_B0", "efficientnet_b0"),
        ("efficientnet_v2_s", "efficientnet_v2_s"),
        ("inception_resnet_v2", "inception_resnet_v2"),
        ("ConvNeXtTiny", "convnext_tiny"),
        ("nasnet_mobile", "nasnet_mobile"),
        ("densenet121", "densenet121"),
        ("Xception", "xception"),
    ],
)
def test_names_are_case_and_underscore_insensitive(given, canonical):
    assert get_spec(given).name == canonical
    assert canonical in list_backbones()


def test_unknown_name_suggests_close_names():
    with pytest.raises(
        KerafineError, match=r'argument `name`: received \'vgg61\'.*Did you mean "vgg1[69]" or "vgg1[69]"\?'
    ):
        vision("vgg61", weights=None)
    with pytest.raises(KerafineError, match=r'Did you mean "mobilenet_v2"'):
        vision("mobilenet_v22", weights=None)
    with pytest.raises(KerafineError, match=r"list_backbones"):
        vision("alexnet", weights=None)


class _StopBeforeBuilding(Exception):
    pass


def test_min_size_matches_what_each_keras_constructor_enforces(monkeypatch):
    """Ask every Keras constructor for its min_size without building any model."""
    from keras.src.applications import imagenet_utils

    seen = {}

    def capture(input_shape, default_size, min_size, data_format, require_flatten, weights=None):
        seen["min_size"] = min_size
        raise _StopBeforeBuilding

    monkeypatch.setattr(imagenet_utils, "obtain_input_shape", capture)
    for name in list_backbones():
        spec = get_spec(name)
        seen.clear()
        try:
            spec.builder(include_top=False, weights=None, input_shape=(spec.min_size - 1,) * 2 + (3,))
        except _StopBeforeBuilding:
            assert seen["min_size"] == spec.min_size, name
        except ValueError as error:
            # MobileNetV3 checks the size itself, before building anything.
            assert f"at least {spec.min_size}x{spec.min_size}" in str(error), name
        else:  # pragma: no cover - would mean a constructor accepted a too-small input
            pytest.fail(f"{name} accepted an input below its min_size")


def test_every_backbone_rejects_bad_input_shape_before_building(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the Keras constructor must not be called")

    for name in list_backbones():
        spec = get_spec(name)
        monkeypatch.setattr(keras.applications, spec.constructor, refuse)
        small = spec.min_size - 1
        with pytest.raises(KerafineError, match=rf"`input_shape`.*at least {spec.min_size}x{spec.min_size}"):
            vision(name, weights=None, input_shape=(small, spec.min_size, 3))
        with pytest.raises(KerafineError, match=r"`input_shape`.*3 channels.*grayscale"):
            vision(name, weights=None, input_shape=(spec.min_size, spec.min_size, 1))
        with pytest.raises(KerafineError, match=r"`input_shape`"):
            vision(name, weights=None, input_shape=(spec.min_size, spec.min_size))
        with pytest.raises(KerafineError, match=rf"`input_shape`.*at least {spec.min_size}x"):
            vision(name, weights=None, input_shape=(None, small, 3))


def test_preprocessing_layer_equals_each_family_preprocess_input():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(2, 5, 5, 3)).astype("float32")
    checked = set()
    for name in list_backbones():
        spec = get_spec(name)
        expected = np.asarray(spec.preprocess_input(images.copy()))
        if spec.preprocessing == "builtin":
            # preprocess_input is the identity: the Keras model rescales internally.
            np.testing.assert_array_equal(expected, images)
            continue
        got = np.asarray(ImagenetPreprocessing(spec.preprocessing)(images))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4, err_msg=name)
        checked.add(spec.preprocessing)
    assert checked == {"caffe", "tf", "torch"}


def test_a_family_name_alone_suggests_its_variants():
    with pytest.raises(KerafineError, match=r'Did you mean "mobilenet_v3_large" or "mobilenet_v3_small"\?'):
        vision("MobileNet_V3", weights=None)
