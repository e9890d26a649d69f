"""tabular_encoder(): Keras preprocessing layers adapted on the training data."""

import keras
import numpy as np
import pandas as pd
import pytest

from kerafine.backbones import tabular_encoder
from kerafine.errors import DataError, KerafineError

NUMERIC = ["latency", "bytes"]
CATEGORICAL = ["browser", "country", "user"]


def _clicks(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "latency": rng.normal(100.0, 10.0, n),
            "bytes": rng.integers(0, 1000, n),
            "browser": rng.choice(["chrome", "firefox", "safari"], n),
            "country": rng.integers(0, 5, n),
            "user": [f"u{i}" for i in rng.integers(0, 40, n)],
            "ignored": rng.normal(size=n),
        }
    )


def _feed(frame, columns=NUMERIC + CATEGORICAL):
    return {c: frame[c].to_numpy() for c in columns}


def _encoder(frame, **kwargs):
    kwargs.setdefault("max_vocabulary", 10)  # "user" (~40 values) gets hashed
    return tabular_encoder(NUMERIC, CATEGORICAL, hidden=(8,), data=frame, **kwargs)


def test_inputs_are_named_columns_and_layers_fit_cardinality(seeded):
    encoder = _encoder(_clicks())
    assert isinstance(encoder.input, dict)
    assert sorted(encoder.input) == sorted(NUMERIC + CATEGORICAL)
    assert all(encoder.input[c].name == c for c in encoder.input)
    assert isinstance(encoder.get_layer("browser__lookup"), keras.layers.StringLookup)
    assert isinstance(encoder.get_layer("country__lookup"), keras.layers.IntegerLookup)
    assert isinstance(encoder.get_layer("user__hashing"), keras.layers.Hashing)
    assert encoder.output.shape == (None, 8)


def test_statistics_come_from_the_training_data_only(seeded):
    train, other = _clicks(seed=0), _clicks(seed=1)
    encoder = _encoder(train)
    normalization = encoder.get_layer("numeric__normalization")
    values = train[NUMERIC].to_numpy(dtype="float64")
    np.testing.assert_allclose(np.ravel(normalization.mean), values.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.ravel(normalization.variance), values.var(axis=0), rtol=1e-4)
    vocabulary = encoder.get_layer("browser__lookup").get_vocabulary()
    assert sorted(vocabulary[1:]) == sorted(train["browser"].unique())
    assert not np.allclose(values.mean(axis=0), other[NUMERIC].to_numpy().mean(axis=0))


def test_unseen_categories_map_to_the_out_of_vocabulary_index(seeded):
    train = _clicks()
    encoder = _encoder(train)
    lookup = encoder.get_layer("browser__lookup")
    assert np.asarray(lookup(np.array([["edge"], ["chrome"]]))).ravel().tolist()[0] == 0
    unseen = train.head(4).copy()
    unseen["browser"] = "edge"
    unseen["country"] = 99
    unseen["user"] = "never-seen"
    assert np.all(np.isfinite(np.asarray(encoder(_feed(unseen)))))


def test_builds_from_a_dict_and_trains_one_step(seeded):
    frame = _clicks()
    data = {c: frame[c].to_numpy() for c in frame.columns}
    encoder = tabular_encoder(["latency"], ["browser", "country"], hidden=(8, 4), data=data, dropout=0.1)
    inputs = {name: keras.Input(shape=(1,), name=name, dtype=t.dtype) for name, t in encoder.input.items()}
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(encoder(inputs)))
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    before = [w.copy() for w in encoder.get_weights()]
    y = (frame["latency"] > 100).astype("float32").to_numpy()
    history = model.fit(_feed(frame, ["latency", "browser", "country"]), y, batch_size=64, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, encoder.get_weights()))


def test_keras_round_trip_keeps_predictions(tmp_path, seeded):
    frame = _clicks()
    encoder = _encoder(frame, dropout=0.2)
    path = tmp_path / "tabular.keras"
    encoder.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    probe = frame.head(8).copy()
    probe.loc[probe.index[0], "browser"] = "edge"  # out of vocabulary too
    np.testing.assert_array_equal(np.asarray(restored(_feed(probe))), np.asarray(encoder(_feed(probe))))


def test_missing_columns_are_named_with_those_found():
    frame = _clicks().drop(columns=["browser"])
    with pytest.raises(
        DataError,
        match=r"Missing columns in `data`: \['browser', 'browsr'\]; found columns: \['latency', 'bytes', 'country', 'user', 'ignored'\]",
    ):
        tabular_encoder(["latency"], ["browser", "browsr"], data=frame)
    with pytest.raises(DataError, match=r"Missing columns in `data`: \['latncy'\].*Did you mean \"latency\""):
        tabular_encoder(["latncy"], [], data=_clicks())


def test_nan_in_a_categorical_column_is_a_data_error_with_the_count():
    frame = _clicks()
    frame["browser"] = frame["browser"].astype(object)
    frame.loc[[1, 5, 9], "browser"] = None
    frame.loc[2, "browser"] = np.nan
    with pytest.raises(
        DataError, match=r"Categorical column 'browser' of `data` holds 4 missing values \(NaN/None\) out of 64"
    ):
        _encoder(frame)
    floats = _clicks()
    floats["country"] = floats["country"].astype(float)
    floats.loc[0, "country"] = np.nan
    with pytest.raises(DataError, match=r"'country'.*1 missing values"):
        _encoder(floats)


def test_bad_numeric_columns_are_data_errors():
    frame = _clicks()
    frame.loc[[0, 1], "latency"] = np.nan
    with pytest.raises(DataError, match=r"Numeric column 'latency' of `data` holds 2 NaN/inf values out of 64"):
        _encoder(frame)
    with pytest.raises(DataError, match=r"Numeric column 'browser'.*categorical_features"):
        tabular_encoder(["browser"], [], data=_clicks())
    fractional = _clicks()
    fractional["country"] = fractional["country"] + 0.5
    with pytest.raises(DataError, match=r"'country'.*non-integer floats"):
        _encoder(fractional)


def test_bad_data_containers_are_data_errors():
    with pytest.raises(DataError, match=r"argument `data`: received 'list'"):
        tabular_encoder(["a"], [], data=[[1.0]])
    with pytest.raises(DataError, match=r"no rows"):
        tabular_encoder(["latency"], [], data=_clicks().head(0))
    with pytest.raises(DataError, match=r"different lengths"):
        tabular_encoder(["a", "b"], [], data={"a": np.ones(3), "b": np.ones(4)})


def test_bad_column_lists_are_rejected():
    frame = _clicks()
    with pytest.raises(KerafineError, match=r"at least one column"):
        tabular_encoder([], [], data=frame)
    with pytest.raises(
        KerafineError, match=r"argument `categorical_features`.*no column also in numeric_features \['country'\]"
    ):
        tabular_encoder(["country"], ["country"], data=frame)
    with pytest.raises(KerafineError, match=r"argument `numeric_features`.*without duplicates"):
        tabular_encoder(["latency", "latency"], [], data=frame)
    with pytest.raises(KerafineError, match=r"argument `hidden`"):
        tabular_encoder(["latency"], [], hidden=(0,), data=frame)


# ------------------------------------------------ imputation, log1p, normalisation, np.str_ names


def _prepared_features(encoder, feed):
    """What the encoder's Normalization layer outputs: the standardised numeric features."""
    layer = encoder.get_layer("numeric__normalization")
    probe = keras.Model(encoder.inputs, layer.output)
    return np.asarray(probe(feed))


def test_median_imputation_adds_a_missing_indicator_and_saves(tmp_path, seeded):
    frame = _clicks(200, seed=1)
    missing_rows = np.arange(0, 200, 7)
    frame.loc[missing_rows, "latency"] = np.nan
    encoder = _encoder(frame, impute="median")
    feed = _feed(frame)
    features = _prepared_features(encoder, feed)
    # latency, bytes, then latency's indicator; every feature standardised on the training rows.
    assert features.shape == (200, 3)
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(features.std(axis=0), 1.0, atol=1e-3)
    # A missing latency reads as the training median, and its indicator is the high value.
    median = np.nanmedian(frame["latency"].to_numpy())
    known = ~np.isnan(frame["latency"].to_numpy())
    filled = np.where(known, frame["latency"].to_numpy(), median)
    np.testing.assert_allclose(features[missing_rows, 0], (median - filled.mean()) / filled.std(), rtol=1e-3)
    assert np.all(features[missing_rows, 2] > 0) and np.all(features[known, 2] < 0)
    assert np.all(np.isfinite(np.asarray(encoder(feed))))
    path = tmp_path / "imputing.keras"
    encoder.save(path)
    import kerafine

    restored = kerafine.load_model(path)
    np.testing.assert_allclose(np.asarray(restored(feed)), np.asarray(encoder(feed)), atol=1e-6)


def test_nan_without_impute_names_the_option():
    frame = _clicks()
    frame.loc[3, "latency"] = np.nan
    with pytest.raises(DataError, match=r"'latency'.*1 NaN/inf.*impute=\"median\""):
        _encoder(frame)
    frame["bytes"] = frame["bytes"].astype(float)
    frame.loc[4, "bytes"] = np.inf
    with pytest.raises(DataError, match=r"'bytes'.*inf"):
        _encoder(frame, impute="median")
    with pytest.raises(KerafineError, match="`impute`.*'mean'"):
        _encoder(_clicks(), impute="mean")


def test_log1p_tames_heavy_tailed_counts(seeded):
    rng = np.random.default_rng(2)
    frame = _clicks(500, seed=2)
    frame["bytes"] = np.floor(rng.pareto(1.2, 500) * 10)  # heavy right tail
    feed = _feed(frame)
    plain = _prepared_features(_encoder(frame), feed)[:, 1]
    logged = _prepared_features(_encoder(frame, log1p=["bytes"]), feed)[:, 1]
    np.testing.assert_allclose(logged.std(), 1.0, atol=1e-3)
    # Standardising a heavy tail leaves a few huge values; log1p first does not.
    assert np.abs(plain).max() > 8 and np.abs(logged).max() < 5
    expected = np.log1p(frame["bytes"].to_numpy())
    np.testing.assert_allclose(logged, (expected - expected.mean()) / expected.std(), atol=1e-3)
    with pytest.raises(KerafineError, match="`log1p`.*'browser'"):
        _encoder(frame, log1p=["browser"])
    negative = frame.copy()
    negative.loc[0, "bytes"] = -2.0
    with pytest.raises(DataError, match=r"'bytes'.*`log1p`.*-2.*> -1"):
        _encoder(negative, log1p=["bytes"])


def test_a_constant_numeric_column_is_refused_by_name():
    frame = _clicks()
    frame["bytes"] = 7
    with pytest.raises(DataError, match=r"\['bytes'\] are constant on the training rows"):
        _encoder(frame)


def test_numpy_string_column_names_build_and_save(tmp_path, seeded):
    frame = _clicks()
    numeric = list(np.array(NUMERIC))
    categorical = list(np.array(CATEGORICAL))
    assert isinstance(numeric[0], np.str_)
    encoder = tabular_encoder(numeric, categorical, hidden=(4,), data=frame, max_vocabulary=10, log1p=numeric[1:])
    path = tmp_path / "np_names.keras"
    encoder.save(path)
    restored = keras.models.load_model(path)
    feed = _feed(frame)
    np.testing.assert_allclose(np.asarray(restored(feed)), np.asarray(encoder(feed)), atol=1e-6)
    assert sorted(restored.input) == sorted(NUMERIC + CATEGORICAL)
