"""Tests of kerafine._health: the scale-free constant-feature rule and the one-class rule."""

import keras
import numpy as np
import pytest

from kerafine import _health
from kerafine.transfer import build_transfer_model
from tests._dead_models import bn_backbone, images


def test_feature_spread_is_scale_free_and_counts_constant_columns():
    rng = np.random.default_rng(0)
    varying = rng.normal(size=(100, 3))
    constant = np.column_stack([np.full(100, 7.0), np.zeros(100)])
    f = np.column_stack([varying, constant])
    for scale in (1e-9, 1.0, 1e9):  # the verdict does not depend on the scale of the data
        spread = _health.feature_spread(f * scale)
        assert spread["constant"] == 2 and spread["features"] == 5 and spread["rows"] == 100
    # A feature varying by 1e-6 of its value is near-constant; by 1e-2 it is not.
    tiny = 5.0 + 1e-6 * rng.normal(size=(100, 1))
    small = 5.0 + 1e-2 * rng.normal(size=(100, 1))
    assert _health.feature_spread(tiny)["constant"] == 1
    assert _health.feature_spread(small)["constant"] == 0
    assert _health.feature_spread(np.ones((1, 4))) is None  # one row: nothing to judge


def test_collapsed_batchnorm_backbone_is_flagged_naming_the_layer_and_the_batchnorm_fix():
    model = build_transfer_model(bn_backbone(True), keras.layers.Dense(3, activation="softmax", name="predictions"))
    values, message = _health.check_backbone(model, images(), "train_data")
    assert values["share"] == 1.0 and values["first_collapsing_batchnorm"] == "bn"
    assert "near-constant features: 4 of 4" in message and "'bn'" in message
    assert "BatchNorm moving statistics" in message and "re-estimate" in message and "MobileNetV2" in message


def test_healthy_backbone_and_identical_inputs_are_not_flagged():
    model = build_transfer_model(bn_backbone(False), keras.layers.Dense(3, activation="softmax", name="predictions"))
    assert _health.check_backbone(model, images(), "train_data") is None
    # Identical rows rightly give identical features: not judged, even on the collapsed backbone.
    dead = build_transfer_model(bn_backbone(True), keras.layers.Dense(3, activation="softmax", name="predictions"))
    assert _health.check_backbone(dead, np.repeat(images(1), 10, axis=0), "train_data") is None


def test_constant_features_without_batchnorm_name_other_causes():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(3, activation="relu", name="dense")
    backbone = keras.Model(inputs, dense(inputs), name="mlp")
    dense.kernel.assign(np.zeros((4, 3), "float32"))  # every unit outputs relu(bias) = 0: dead
    model = build_transfer_model(backbone, keras.layers.Dense(1, activation="sigmoid", name="predictions"))
    values, message = _health.check_backbone(model, np.random.default_rng(0).normal(size=(32, 4)), "probe_data")
    assert values["batchnorm_layers"] == 0 and "dead units" in message and "BatchNorm" not in message


def test_one_class_flags_a_single_predicted_class_only_when_labels_hold_several():
    y = np.array([0, 1, 0, 1, 1])
    same = np.full((5, 1), 0.3)
    values, message = _health.one_class(same, y)
    assert values["predicted_class"] == 0 and values["same_score"] and "dead model" in message
    assert values["majority_baseline"] == pytest.approx(0.6)
    spread = np.array([[0.1], [0.2], [0.3], [0.4], [0.45]])
    values, message = _health.one_class(spread, y)
    assert not values["same_score"] and "one side of the decision threshold" in message
    assert _health.one_class(spread, np.zeros(5)) is None  # one-class labels: not a dead-model sign
    assert _health.one_class(np.array([[0.2], [0.7]]), [0, 1]) is None
    # Softmax outputs: arg-max; logits: threshold 0.
    assert _health.one_class(np.array([[0.2, 0.8], [0.4, 0.6]]), [0, 1])[0]["predicted_class"] == 1
    assert _health.one_class(np.array([[0.2], [0.4]]), [0, 1], from_logits=True)[0]["predicted_class"] == 1
