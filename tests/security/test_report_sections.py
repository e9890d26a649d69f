"""kerafine.evaluate(..., robustness=, membership=) and `kerafine evaluate --robustness --membership-train`."""

import json

import keras
import numpy as np
import pandas as pd
import pytest

import kerafine
from kerafine.cli import main
from kerafine.errors import DataError, KerafineError


def _model_and_data(seed=0):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 4)).astype("float32")
    y = (x[:, 0] + 0.3 * rng.normal(size=300) > 0).astype("float32")
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    model.fit(x[:100], y[:100], epochs=20, verbose=0)
    return model, x, y


def test_evaluate_adds_robustness_and_membership_sections_everywhere():
    model, x, y = _model_and_data()
    report = kerafine.evaluate(
        model, (x[200:], y[200:]), robustness=[0.5, 0.1], membership=((x[:100], y[:100]), (x[100:200], y[100:200]))
    )
    curve, member = report.robustness, report.membership
    assert curve.epsilon.tolist() == [0.0, 0.1, 0.5] and curve.threshold == report.threshold
    # The clean point of the curve is the report itself: same threshold, same data.
    assert curve.accuracy[0] == pytest.approx(report.accuracy) and curve.roc_auc[0] == pytest.approx(report.roc_auc)
    assert member.n_train == 100 and member.n_holdout == 100
    text = str(report)
    assert "Robustness (PGD-10, L-inf, 100 rows)" in text and "Membership inference" in text and member.reading in text
    data = json.loads(report.to_json())
    assert data["robustness"]["epsilon"] == [0.0, 0.1, 0.5] and data["membership"]["reading"] == member.reading
    html = report._repr_html_()
    assert "Robustness" in html and "Membership inference" in html
    fig = report.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("Robustness") for t in titles) and "Membership inference" in titles
    plain = kerafine.evaluate(model, (x[200:], y[200:]))
    assert "robustness" not in plain.to_dict() and len(plain.plot().axes) < len(fig.axes)


def test_evaluate_refuses_bad_security_options_before_predicting():
    model, x, y = _model_and_data()
    with pytest.raises(KerafineError, match=r"argument `robustness`: received \[0\]"):
        kerafine.evaluate(model, (x, y), robustness=[0])
    with pytest.raises(KerafineError, match=r"argument `membership`.*a pair \(train_data, holdout_data\)"):
        kerafine.evaluate(model, (x, y), membership=(x, y, x))
    import tensorflow as tf

    with pytest.raises(KerafineError, match=r"argument `data`.*\(x, y\) arrays when robustness is asked"):
        kerafine.evaluate(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(32), robustness=[0.1])
    with pytest.raises(DataError, match=r"argument `holdout_data`.*also in train_data"):
        kerafine.evaluate(model, (x, y), membership=((x[:100], y[:100]), (x[50:150], y[50:150])))


# ------------------------------------------------------------------ CLI


def test_cli_refuses_bad_robustness_before_loading_anything(tmp_path, capsys):
    model = tmp_path / "model.keras"
    model.write_bytes(b"not read")
    (tmp_path / "model.kerafine.json").write_text(
        json.dumps({"kind": "tabular", "label": "clicked", "numeric": ["price"], "categorical": ["country"]})
    )
    for value, phrase in (
        ("0,1", "argument `--robustness`: received [0.0, 1.0]"),
        ("1,x", "argument `--robustness`: received '1,x'; expected numbers separated by commas"),
    ):
        assert main(["evaluate", str(model), str(tmp_path / "d.csv"), "--robustness", value]) == 2
        assert phrase in capsys.readouterr().err


@pytest.mark.slow
def test_cli_evaluate_with_robustness_and_membership_sections(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 400
    price, country = rng.gamma(2, 10, n), rng.choice(["fr", "de", "us"], n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.1 * (price - 20) + np.where(country == "us", 1.5, -0.5))))).astype(int)
    frame = pd.DataFrame({"price": price, "country": country, "clicked": y})
    frame.to_csv(tmp_path / "clicks.csv", index=False)
    frame.iloc[:150].to_csv(tmp_path / "seen.csv", index=False)
    frame.iloc[250:].to_csv(tmp_path / "unseen.csv", index=False)
    (tmp_path / "fit.yaml").write_text(
        "data: {kind: tabular, csv: clicks.csv, label: clicked}\n"
        "backbone: {name: tabular, units: [8]}\n"
        "head: {hidden: []}\n"
        "schedule: {head_epochs: 2, finetune_epochs: 0, learning_rate: 0.01}\n"
        "callbacks: {drift: false}\n"
        "output_dir: run\n"
    )
    assert main(["fit", str(tmp_path / "fit.yaml"), "--quiet-fit"]) == 0
    capsys.readouterr()
    model = str(tmp_path / "run" / "model.keras")
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                model,
                str(tmp_path / "unseen.csv"),
                "--robustness",
                "1,5",
                "--membership-train",
                str(tmp_path / "seen.csv"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Robustness (PGD-10" in printed and "Membership inference (150 training vs 150 held-out rows)" in printed
    data = json.loads(out.read_text())
    assert data["robustness"]["epsilon"] == [0.0, 1.0, 5.0] and len(data["membership"]["attacks"]) == 2
    # Held-out rows that are also training rows are refused, naming the flag's data.
    assert (
        main(["evaluate", model, str(tmp_path / "clicks.csv"), "--membership-train", str(tmp_path / "seen.csv")]) == 2
    )
    assert "also in train_data" in capsys.readouterr().err
