"""Shared fixtures."""

import pytest


@pytest.fixture
def seeded():
    """Seed Python, numpy and Keras/TensorFlow; returns the seed."""
    import keras

    keras.utils.set_random_seed(1234)
    return 1234
