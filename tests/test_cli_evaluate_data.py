"""`kerafine evaluate` takes the data specification `kerafine fit` takes (issue 19).

DATA is a fit config (whole, or only its `data:` section: the rows of `--split`, default test, split
as `fit` splits them), a CSV / a directory of metric CSVs, or the five metric files as options.
Bad input is refused before the model is loaded: several tests give a model file that is not a
model at all, so reaching the loading step would fail with another message.
"""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from kerafine.cli import main

METRICS = ("cpu", "memory", "diskio", "uptime", "failures")


def _tabular_run(tmp_path, n=120):
    """A table, its fit config, and an (untrained) model with its spec as `kerafine fit` writes them."""
    from kerafine.backbones import tabular_encoder
    from kerafine.cli._common import _sidecar, _transfer_model
    from kerafine.data import load_tabular

    rng = np.random.default_rng(0)
    price, country = rng.gamma(2, 10, n), rng.choice(["fr", "de", "us"], n)
    y = (price + rng.normal(0, 5, n) > 20).astype(int)
    pd.DataFrame({"price": price, "country": country, "clicked": y}).to_csv(tmp_path / "clicks.csv", index=False)
    t = load_tabular(tmp_path / "clicks.csv", "clicked")
    import keras

    keras.utils.set_random_seed(0)
    model = _transfer_model(tabular_encoder(["price"], ["country"], hidden=(4,), data=t.x), ())
    model.compile("adam", "binary_crossentropy")  # saved compiled, as fit saves it (the attacks use its loss)
    path = tmp_path / "model.keras"
    model.save(path)
    _sidecar(path).write_text(
        json.dumps({"kind": "tabular", "label": "clicked", "numeric": ["price"], "categorical": ["country"]})
    )
    (tmp_path / "fit.yaml").write_text(
        "data: {kind: tabular, csv: clicks.csv, label: clicked, split: {by: random, val: 0.25, test: 0.25, seed: 1}}\n"
        "backbone: {name: tabular, units: [4]}\noutput_dir: run\n"
    )
    return path, t, model


def _evaluated(capsys, tmp_path, *args, name="eval.json"):
    capsys.readouterr()
    assert main(["evaluate", *map(str, args), "--json", str(tmp_path / name)]) == 0, capsys.readouterr().err
    return json.loads((tmp_path / name).read_text())


def test_a_fit_config_evaluates_its_test_split_as_fit_splits_it(tmp_path, capsys):
    path, t, model = _tabular_run(tmp_path)
    from kerafine.config import load_config
    from kerafine.data._spec import load_config_data

    parts = load_config_data(load_config(tmp_path / "fit.yaml", check_output_dir=False).data)  # fit's own split
    report = _evaluated(capsys, tmp_path, path, tmp_path / "fit.yaml")
    x_test, y_test = parts["test"]
    assert report["n_samples"] == len(y_test) == 30
    expected = roc_auc_score(y_test, np.asarray(model.predict(x_test, verbose=0))[:, -1])
    assert report["roc_auc"] == pytest.approx(expected, abs=1e-6)
    val = _evaluated(capsys, tmp_path, path, tmp_path / "fit.yaml", "--split", "val", name="val.json")
    assert val["n_samples"] == len(parts["val"][1]) == 30
    # The whole CSV as DATA: every row.
    assert _evaluated(capsys, tmp_path, path, tmp_path / "clicks.csv", name="all.json")["n_samples"] == 120


def test_a_file_with_only_the_data_section_is_a_config_too(tmp_path, capsys):
    path, _, _ = _tabular_run(tmp_path)
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    # Paths relative to the YAML file, as in a fit config.
    (sub / "data.yml").write_text(
        "data:\n  kind: tabular\n  csv: ../clicks.csv\n  label: clicked\n"
        "  split: {by: random, val: 0.25, test: 0.25, seed: 1}\n"
    )
    whole = _evaluated(capsys, tmp_path, path, tmp_path / "fit.yaml", name="a.json")
    data_only = _evaluated(capsys, tmp_path, path, sub / "data.yml", name="b.json")
    assert data_only == whole


def test_membership_train_may_name_a_split_of_the_config(tmp_path, capsys):
    path, _, _ = _tabular_run(tmp_path)
    report = _evaluated(capsys, tmp_path, path, tmp_path / "fit.yaml", "--membership-train", "train")
    assert report["membership"]["n_train"] == 60 and report["membership"]["n_holdout"] == 30
    # The config as --membership-train means its training split too.
    again = _evaluated(
        capsys, tmp_path, path, tmp_path / "fit.yaml", "--membership-train", tmp_path / "fit.yaml", name="again.json"
    )
    assert again["membership"] == report["membership"]


@pytest.fixture
def server_run(tmp_path):
    """A small simulated fleet and an (untrained) LSTM model with the spec `kerafine fit` would write."""
    import keras

    from kerafine.cli._common import _sequence_encoder, _sidecar, _transfer_model
    from kerafine.data import Normalizer, load_server_metrics
    from kerafine.data.demo import generate_fleet

    generate_fleet(tmp_path / "fleet", "B", n_servers=8, n_steps=720, seed=3)
    m = load_server_metrics(**{n: tmp_path / "fleet" / f"{n}.csv" for n in METRICS}, freq="1min", horizon=30)
    keras.utils.set_random_seed(0)
    model = _transfer_model(_sequence_encoder(8, 3, "lstm", (4,)), ())
    model.compile("adam", "binary_crossentropy")
    path = tmp_path / "model.keras"
    model.save(path)
    _sidecar(path).write_text(
        json.dumps(
            {
                "kind": "server_metrics",
                "features": list(m.features),
                "window": 8,
                "stride": 4,
                "freq": "1min",
                "horizon": 30,
                "max_gap": 3,
                "normalizer": Normalizer.fit(m, list(m.features)).to_dict(),
            }
        )
    )
    (tmp_path / "fleet.yaml").write_text(
        "data:\n  kind: server_metrics\n"
        + "".join(f"  {n}: fleet/{n}.csv\n" for n in METRICS)
        + "  freq: 1min\n  horizon: 30\n  window: 8\n  stride: 4\n  split: {by: server, val: 0.25, test: 0.25, seed: 0}\n"
    )
    return path, m


def test_server_metrics_as_explicit_files_equal_the_directory(tmp_path, capsys, server_run):
    path, m = server_run
    files = [a for n in METRICS for a in (f"--{n}", tmp_path / "fleet" / f"{n}.csv")]
    explicit = _evaluated(capsys, tmp_path, path, *files, name="a.json")
    directory = _evaluated(capsys, tmp_path, path, tmp_path / "fleet", name="b.json")
    assert explicit == directory
    assert explicit["n_samples"] == len(m.windows(8, stride=4)[1])


def test_server_metrics_config_evaluates_the_test_servers_only(tmp_path, capsys, server_run):
    path, m = server_run
    from kerafine.data import split_by_group

    test_servers = split_by_group(m, val=0.25, test=0.25, seed=0).test
    report = _evaluated(capsys, tmp_path, path, tmp_path / "fleet.yaml", "--figure", tmp_path / "eval.png")
    assert len(test_servers.servers) == 2
    assert report["n_samples"] == len(test_servers.windows(8, stride=4)[1]) < len(m.windows(8, stride=4)[1])
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The config's stride (not the model's) decides which windows are read.
    (tmp_path / "fleet.yaml").write_text((tmp_path / "fleet.yaml").read_text().replace("stride: 4", "stride: 2"))
    denser = _evaluated(capsys, tmp_path, path, tmp_path / "fleet.yaml", name="denser.json")
    assert denser["n_samples"] == len(test_servers.windows(8, stride=2)[1]) > report["n_samples"]


def _refused(capsys, *args):
    capsys.readouterr()
    assert main(["evaluate", *map(str, args)]) == 2
    return capsys.readouterr().err


def _not_a_model(tmp_path, spec):
    model = tmp_path / "model.keras"
    model.write_bytes(b"never loaded: the data is checked first")
    (tmp_path / "model.kerafine.json").write_text(json.dumps(spec))
    return model


SERVER_SPEC = {
    "kind": "server_metrics",
    "features": ["cpu", "memory", "diskio"],
    "window": 8,
    "stride": 4,
    "freq": "1min",
    "horizon": 30,
    "max_gap": 3,
    "normalizer": {"columns": ["cpu"], "mean": [0.0], "std": [1.0]},
}
TABLE_SPEC = {"kind": "tabular", "label": "clicked", "numeric": ["price"], "categorical": ["country"]}


def test_an_unknown_data_file_is_refused_naming_the_argument(tmp_path, capsys):
    model = _not_a_model(tmp_path, TABLE_SPEC)
    err = _refused(capsys, model, tmp_path / "nope.csv")
    assert "argument `DATA`" in err and "nope.csv" in err and "No such file" in err
    err = _refused(capsys, model, tmp_path / "nope.yaml")
    assert "argument `DATA`" in err and "nope.yaml" in err and "YAML config" in err
    model = _not_a_model(tmp_path, SERVER_SPEC)
    for n in METRICS[1:]:
        (tmp_path / f"{n}.csv").write_text("server,timestamp,x\n")
    err = _refused(
        capsys,
        model,
        "--cpu",
        tmp_path / "missing-cpu.csv",
        *[a for n in METRICS[1:] for a in (f"--{n}", tmp_path / f"{n}.csv")],
    )
    assert "argument `--cpu`" in err and "missing-cpu.csv" in err


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("window", "16", "field `data.window` is 16, but the model was trained on 8"),
        ("freq", "5s", "field `data.freq` is '5s', but the model was trained on '1min'"),
    ],
)
def test_a_config_whose_data_does_not_fit_the_model_is_refused_naming_the_field(
    tmp_path, capsys, field, value, message
):
    model = _not_a_model(tmp_path, SERVER_SPEC)
    cfg = {"window": "8", "freq": "1min", field: value}
    (tmp_path / "c.yaml").write_text(
        "data:\n  kind: server_metrics\n"
        + "".join(f"  {n}: missing/{n}.csv\n" for n in METRICS)
        + f"  freq: {cfg['freq']}\n  window: {cfg['window']}\n"
    )
    err = _refused(capsys, model, tmp_path / "c.yaml")
    assert "argument `DATA`" in err and message in err and "does not match the model's inputs" in err


def test_a_table_config_for_a_server_model_or_with_another_label_is_refused(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text("data: {kind: tabular, csv: clicks.csv, label: bought}\n")
    err = _refused(capsys, _not_a_model(tmp_path, SERVER_SPEC), tmp_path / "t.yaml")
    assert "field `data.kind` is 'tabular', but the model was trained on 'server_metrics'" in err
    err = _refused(capsys, _not_a_model(tmp_path, TABLE_SPEC), tmp_path / "t.yaml")
    assert "field `data.label` is 'bought', but the model was trained on 'clicked'" in err
    (tmp_path / "t.yaml").write_text("data: {kind: tabular, csv: clicks.csv, label: clicked, numeric: [age]}\n")
    err = _refused(capsys, _not_a_model(tmp_path, TABLE_SPEC), tmp_path / "t.yaml")
    assert "field `data.numeric` is ['age'], but the model was trained on ['price']" in err


def test_a_bad_data_section_names_the_field(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text("data: {kind: tabular, csv: clicks.csv, label: clicked, colums: [a]}\n")
    err = _refused(capsys, _not_a_model(tmp_path, TABLE_SPEC), tmp_path / "t.yaml")
    assert "field `data.colums`: unknown key" in err


def test_options_that_contradict_each_other_are_refused(tmp_path, capsys):
    model = _not_a_model(tmp_path, TABLE_SPEC)
    (tmp_path / "new.csv").write_text("price,country,clicked\n1.0,fr,1\n")
    err = _refused(capsys, model, tmp_path / "new.csv", "--split", "val")
    assert "argument `--split`" in err and "unless DATA is a YAML config" in err
    err = _refused(capsys, model, tmp_path / "new.csv", "--membership-train", "train")
    assert "argument `--membership-train`" in err and "a split name needs DATA to be a config" in err
    err = _refused(capsys, model)
    assert "argument `DATA`" in err
    err = _refused(capsys, model, "--cpu", tmp_path / "new.csv")
    assert "argument `--cpu`" in err and "this model reads a table" in err
    model = _not_a_model(tmp_path, SERVER_SPEC)
    err = _refused(capsys, model, tmp_path, "--cpu", tmp_path / "new.csv")
    assert "argument `--cpu`" in err and "not both" in err
    err = _refused(capsys, model, "--cpu", tmp_path / "new.csv")
    assert "--memory, --diskio, --uptime, --failures" in err
