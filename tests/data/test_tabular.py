"""Tests of kerafine.data.tabular.load_tabular."""

import numpy as np
import pandas as pd
import pytest

from kerafine.data.tabular import load_tabular
from kerafine.errors import DataError, KerafineError


@pytest.fixture
def clicks(tmp_path):
    df = pd.DataFrame(
        {
            "price": [1.5, 2.0, 3.0, 4.0],
            "age": [20, 30, 40, 50],
            "country": ["fr", "de", None, "fr"],
            "clicked": ["no", "yes", "no", "yes"],
        }
    )
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
    with pytest.raises(
        DataError,
        match=r"argument `numeric`: .* has no column 'income'; found columns "
        r"\['price', 'age', 'country', 'clicked'\]",
    ):
        load_tabular(clicks, "clicked", numeric=["price", "income"])
    with pytest.raises(DataError, match="argument `label`: .* has no column 'click'"):
        load_tabular(clicks, "click")


def test_text_in_a_numeric_column_is_reported(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": ["1", "two"], "y": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"Column 'x' .* listed as numeric but row 1 \(line 3\) holds 'two'"):
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


# ------------------------------------------------ CSV options, missing values, numeric validation


def test_criteo_style_headerless_tab_separated_file(tmp_path):
    path = tmp_path / "day_0.tsv"
    # label, two integer counts (one empty), one hashed category; no header line.
    path.write_text("1\t5\t\t68fd1e64\n0\t0\t3\t80e26c9b\n0\t12\t1\t68fd1e64\n")
    names = ["label", "I1", "I2", "C1"]
    t = load_tabular(path, "label", sep="\t", names=names, missing="keep")
    assert len(t) == 3  # the first line is data, not a header
    assert t.numeric == ("I1", "I2") and t.categorical == ("C1",)
    assert t.y.tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_array_equal(t.x["I2"], np.array([np.nan, 3.0, 1.0], np.float32))
    assert t.x["C1"].tolist() == ["68fd1e64", "80e26c9b", "68fd1e64"]
    with pytest.raises(
        DataError, match=r"'I2'.*1 missing values \(first at row 0\).*missing=\"keep\".*impute=\"median\""
    ):
        load_tabular(path, "label", sep="\t", names=names)


def test_bad_csv_options_are_rejected(clicks):
    with pytest.raises(KerafineError, match="`missing`.*'drop'"):
        load_tabular(clicks, "clicked", missing="drop")
    with pytest.raises(KerafineError, match="`sep`"):
        load_tabular(clicks, "clicked", sep="")
    with pytest.raises(KerafineError, match="`names`.*without duplicates"):
        load_tabular(clicks, "clicked", names=["a", "a", "b", "c"])


def test_an_inferred_numeric_column_with_a_stray_text_cell_is_named(tmp_path):
    path = tmp_path / "t.csv"
    values = [str(v) for v in range(30)]
    values[17] = "n/a?"
    pd.DataFrame({"count": values, "city": ["x", "y"] * 15, "y": [0, 1] * 15}).to_csv(path, index=False)
    # Before: pandas reads the column as text and it silently became a categorical input.
    with pytest.raises(
        DataError,
        match=r"Column 'count' .* is numeric \(29 of 30 values are numbers\) but row 17 \(line 19\) holds 'n/a\?'",
    ):
        load_tabular(path, "y")
    # Declared categorical, it is accepted as categories.
    t = load_tabular(path, "y", categorical=["count", "city"])
    assert t.categorical == ("count", "city") and t.numeric == ()


def test_numpy_string_names_are_accepted(clicks):
    t = load_tabular(
        clicks, np.str_("clicked"), numeric=list(np.array(["price"])), categorical=list(np.array(["country"]))
    )
    assert t.numeric == ("price",) and type(t.numeric[0]) is str
    assert set(t.x) == {"price", "country"}


def test_check_numeric_columns_is_the_shared_validation():
    from kerafine.data.tabular import check_numeric_columns

    df = pd.DataFrame({"a": [1.0, 2.0], "b": ["75001", "69002"], "c": ["x", "y"]})
    assert check_numeric_columns(df) == ["a"]  # digits stored as text (codes) stay categorical
    assert check_numeric_columns(pd.DataFrame({"b": ["3", " "]}), ["b"]) == ["b"]  # blank = missing, not bad
    with pytest.raises(DataError, match=r"Column 'c' of the table is listed as numeric but row 0 holds 'x'"):
        check_numeric_columns(df, ["a", "c"])
