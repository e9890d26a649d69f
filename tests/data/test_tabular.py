"""Tests of kerafine.data.tabular.load_tabular."""

import numpy as np
import pandas as pd
import pytest

from kerafine.data.tabular import load_tabular
from kerafine.errors import DataError, KerafineError


@pytest.fixture
def clicks(tmp_path):
    df = pd.DataFrame({"price": [1.5, 2.0, 3.0, 4.0], "age": [20, 30, 40, 50],
                       "country": ["fr", "de", None, "fr"], "clicked": ["no", "yes", "no", "yes"]})
    path = tmp_path / "clicks.csv"
    df.to_csv(path, index=False)
    return path


def test_columns_are_inferred_and_labels_mapped(clicks):
    t = load_tabular(clicks, "clicked")
    assert t.numeric == ("price", "age") and t.categorical == ("country",)
    assert t.y.tolist() == [0.0, 1.0, 0.0, 1.0]  # "no" < "yes"
    assert t.x["country"].tolist() == ["fr", "de", "<missing>", "fr"]
    assert t.x["price"].dtype == np.float32
    assert len(t.take([1, 3])) == 2 and t.take([1, 3]).y.tolist() == [1.0, 1.0]


def test_missing_column_is_named_with_the_columns_found(clicks):
    with pytest.raises(DataError, match=r"argument `numeric`: .* has no column 'income'; found columns "
                                        r"\['price', 'age', 'country', 'clicked'\]"):
        load_tabular(clicks, "clicked", numeric=["price", "income"])
    with pytest.raises(DataError, match="argument `label`: .* has no column 'click'"):
        load_tabular(clicks, "click")


def test_text_in_a_numeric_column_is_reported(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": ["1", "two"], "y": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="Column 'x' .* listed as numeric but row 1 holds 'two'"):
        load_tabular(path, "y", numeric=["x"], categorical=[])


def test_label_must_have_two_classes(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 2]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="has 3 distinct value"):
        load_tabular(path, "y")


def test_a_column_cannot_be_numeric_and_categorical(clicks):
    with pytest.raises(KerafineError, match="argument `categorical`"):
        load_tabular(clicks, "clicked", numeric=["price"], categorical=["price"])


def test_feeds_the_tabular_encoder(clicks):
    from kerafine.backbones import tabular_encoder

    t = load_tabular(clicks, "clicked")
    enc = tabular_encoder(list(t.numeric), list(t.categorical), hidden=(4,), data=t.x)
    assert tuple(enc(t.x).shape) == (4, 4)
