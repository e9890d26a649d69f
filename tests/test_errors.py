import pytest

from kerafine.errors import (
    CheckpointError,
    DataError,
    KerafineError,
    TrainingError,
    WeightsError,
    did_you_mean,
    invalid_argument,
)


def test_every_error_is_a_value_error_so_existing_handlers_still_catch_it():
    for cls in (KerafineError, DataError, WeightsError, CheckpointError, TrainingError):
        assert issubclass(cls, ValueError)
    assert issubclass(TrainingError, RuntimeError)


def test_invalid_argument_names_the_argument_echoes_the_value_and_says_what_is_allowed():
    err = invalid_argument("save_freq", 0, '"epoch" or a positive int', hint="Use 100 to save every 100 batches.")
    assert isinstance(err, KerafineError)
    assert str(err) == (
        'Invalid value for argument `save_freq`: received 0; expected "epoch" or a positive int. '
        "Use 100 to save every 100 batches."
    )


def test_invalid_argument_shortens_huge_values_and_honours_the_subclass():
    err = invalid_argument("x", list(range(1000)), "a short list", error=DataError)
    assert isinstance(err, DataError)
    assert "..." in str(err) and len(str(err)) < 250


def test_did_you_mean_suggests_close_names_and_nothing_for_far_ones():
    both = did_you_mean("VGG61", ["vgg16", "vgg19", "resnet50"])
    assert both.startswith(" Did you mean ") and '"vgg16"' in both and '"vgg19"' in both and "resnet50" not in both
    assert did_you_mean("resnet5", ["vgg16", "resnet50"]) == ' Did you mean "resnet50"?'
    assert did_you_mean("transformer", ["vgg16", "resnet50"]) == ""
