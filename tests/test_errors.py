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


# --- the scalar argument checks ---------------------------------------------------

import numpy as np  # noqa: E402

from kerafine.errors import check_choice, check_int, check_number  # noqa: E402


@pytest.mark.parametrize("value", [0, 7, np.int64(3), np.int8(1)])
def test_check_int_accepts_python_and_numpy_ints_and_returns_a_python_int(value):
    out = check_int("n", value, minimum=0)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize(
    "value, kwargs, expected",
    [
        (True, {}, "expected an int"),  # a bool is not a count
        (2.0, {"minimum": 1}, "expected an int >= 1"),
        ("3", {}, "expected an int"),
        (None, {}, "expected an int"),
        (0, {"minimum": 1}, "expected an int >= 1"),
        (11, {"minimum": 1, "maximum": 10}, r"expected an int in \[1, 10\]"),
        (5, {"maximum": 4}, "expected an int <= 4"),
    ],
)
def test_check_int_rejects_with_the_standard_message(value, kwargs, expected):
    with pytest.raises(KerafineError, match=rf"^Invalid value for argument `n`: received {value!r}; {expected}\."):
        check_int("n", value, **kwargs)


def test_check_int_custom_expected_text_and_hint():
    with pytest.raises(KerafineError, match=r"received 1; expected an int >= 2\. Use two classes\.$"):
        check_int("n_classes", 1, minimum=2, hint="Use two classes.")
    with pytest.raises(KerafineError, match=r"received 0; expected a positive int\.$"):
        check_int("stride", 0, minimum=1, expected="a positive int")


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.25), np.int64(1)])
def test_check_number_accepts_reals_and_returns_a_float(value):
    out = check_number("x", value, minimum=0, maximum=1)
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize(
    "value, kwargs, expected",
    [
        (float("nan"), {}, "a finite number"),
        (float("inf"), {"minimum": 0}, "a finite number >= 0"),
        (True, {}, "a finite number"),
        ("0.1", {}, "a finite number"),
        (0.0, {"minimum": 0, "min_inclusive": False}, "a finite number > 0"),
        (1.0, {"minimum": 0, "maximum": 1, "max_inclusive": False}, r"a finite number in \[0, 1\)"),
        (
            0.0,
            {"minimum": 0, "maximum": 1, "min_inclusive": False, "max_inclusive": False},
            "a finite number strictly between 0 and 1",
        ),
        (2.0, {"maximum": 1}, "a finite number <= 1"),
    ],
)
def test_check_number_rejects_non_finite_bools_strings_and_out_of_range(value, kwargs, expected):
    with pytest.raises(KerafineError, match=rf"argument `x`: received .*; expected {expected}\."):
        check_number("x", value, **kwargs)


def test_check_number_bounds_are_inclusive_by_default():
    assert check_number("x", 0, minimum=0, maximum=1) == 0.0
    assert check_number("x", 1, minimum=0, maximum=1) == 1.0


def test_check_choice_requires_the_same_type():
    assert check_choice("mode", "max", ("min", "max")) == "max"
    assert check_choice("average", None, ("macro", None)) is None
    with pytest.raises(KerafineError, match=r"received 1; expected True or False\.$"):
        check_choice("flag", 1, (True, False))
    with pytest.raises(KerafineError, match=r"received 'MAX'; expected 'min' or 'max'\.$"):
        check_choice("mode", "MAX", ("min", "max"))
    with pytest.raises(KerafineError, match=r'expected "macro", "weighted" or None\.$'):
        check_choice("average", "micro", ("macro", "weighted", None), expected='"macro", "weighted" or None')
