"""tqdm bars for long non-fit work stay silent when stderr is not a terminal, and when asked."""

import keras
import numpy as np
import pandas as pd
import pytest

import kerafine
from kerafine.errors import KerafineError
from kerafine.security import robustness_curve


def _model_xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    return model, x, y


@pytest.mark.parametrize("progress", [True, False])
def test_robustness_curve_prints_no_bar_when_not_a_terminal(capfd, progress):
    model, x, y = _model_xy()
    curve = robustness_curve(model, (x, y), [0.1, 0.2, 0.3], attack="pgd", steps=3, progress=progress)
    out, err = capfd.readouterr()
    assert len(curve.epsilon) == 4
    assert "robustness" not in err and "radius" not in err and out == ""


def test_robustness_curve_refuses_a_non_bool_progress():
    model, x, y = _model_xy()
    with pytest.raises(KerafineError, match=r"progress.*received 'yes'.*True or False"):
        robustness_curve(model, (x, y), [0.1], progress="yes")


def test_fine_tune_featurising_prints_no_bar_when_not_a_terminal(capfd):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    inputs = keras.Input((3,))
    enc = keras.Model(inputs, keras.layers.Dense(4, name="enc")(inputs), name="encoder")
    model = kerafine.build_transfer_model(enc, keras.layers.Dense(1, activation="sigmoid", name="predictions"))
    result = kerafine.fine_tune(model, (x, y), head_epochs=1, finetune_epochs=0, batch_size=8, verbose=2)
    assert result.features_cached
    err = capfd.readouterr().err
    assert "features (" not in err and "batch/s" not in err


class _Terminal:
    """A stderr that says it is an interactive terminal, recording what is written to it."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True


@pytest.mark.parametrize("progress", [True, False])
def test_generate_fleet_prints_no_bar_when_not_a_terminal(capfd, tmp_path, progress):
    from kerafine.data.demo import generate_fleet

    paths = generate_fleet(tmp_path, "A", n_servers=2, n_steps=300, progress=progress)
    assert sorted(p.name for p in paths.values()) == sorted(p.name for p in tmp_path.iterdir())
    out, err = capfd.readouterr()
    assert "fleet A" not in err and "step" not in err and out == ""


def test_generate_fleet_shows_a_bar_over_simulation_and_files_on_a_terminal_unless_progress_false(
    monkeypatch, tmp_path
):
    import sys

    from kerafine.data.demo import generate_fleet

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    generate_fleet(tmp_path / "on", "B", n_servers=2, n_steps=300)
    assert "fleet B" in terminal.text and "/6" in terminal.text  # one step to simulate, five files
    # leave=False: the bar's line is cleared at the end (the last thing written ends in a carriage return).
    assert terminal.text.rstrip(" ").endswith("\r")
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    generate_fleet(tmp_path / "off", "B", n_servers=2, n_steps=300, progress=False)
    assert quiet.text == ""
    # The same CSVs either way.
    for name in ("cpu.csv", "failures.csv"):
        assert (tmp_path / "on" / name).read_bytes() == (tmp_path / "off" / name).read_bytes()


def test_generate_fleet_refuses_a_non_bool_progress_before_writing(tmp_path):
    from kerafine.data.demo import generate_fleet

    with pytest.raises(KerafineError, match=r"progress.*received 'yes'.*True or False"):
        generate_fleet(tmp_path / "fleet", progress="yes")
    assert not (tmp_path / "fleet").exists()


def _drift_data(n_ref, n_cur, columns=40, seed=0):
    rng = np.random.default_rng(seed)
    shift = np.linspace(0.0, 0.5, columns)  # columns differ, so a mixed-up column would show
    return rng.normal(size=(n_ref, columns)), rng.normal(shift, 1.0, size=(n_cur, columns))


@pytest.mark.parametrize("sizes", [(1500, 1000), (3000, 2000)])  # n + m under / over the merged-sample limit
def test_drift_check_in_column_blocks_gives_scipys_statistic_for_every_column(sizes):
    from scipy import stats

    from kerafine.drift import DriftDetector

    ref, cur = _drift_data(*sizes)
    report = DriftDetector(ref, max_samples=10_000).check(cur, progress=True)
    assert len(report.features) == 40  # 3 blocks of 16 columns (16, 16, 8)
    for j, f in enumerate(report.features):
        assert f.statistic == pytest.approx(stats.ks_2samp(ref[:, j], cur[:, j]).statistic, abs=1e-12), f.name
        expected_w = stats.wasserstein_distance(ref[:, j], cur[:, j]) / np.std(ref[:, j], ddof=1)
        assert f.wasserstein == pytest.approx(expected_w, rel=1e-3), f.name


def test_drift_check_prints_no_bar_when_not_a_terminal(capfd, monkeypatch):
    from kerafine.drift import DriftDetector, detector

    monkeypatch.setattr(detector, "_BAR_DELAY", 0.0)
    ref, cur = _drift_data(500, 300)
    DriftDetector(ref).check(cur, progress=True)
    out, err = capfd.readouterr()
    assert "drift check" not in err and "column" not in err and out == ""


def test_drift_check_shows_a_bar_over_the_columns_on_a_terminal_only_when_asked(monkeypatch):
    import sys

    from kerafine.drift import DriftDetector, detector

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(detector, "_BAR_DELAY", 0.0)  # the bar's content, not its 1-second delay
    ref, cur = _drift_data(500, 300)
    frame = lambda a: pd.DataFrame(a, columns=[f"c{j}" for j in range(40)]).assign(  # noqa: E731
        kind=np.where(np.arange(len(a)) % 3 == 0, "x", "y")
    )
    det = DriftDetector(frame(ref), categorical=["kind"])
    for progress, shown in ((True, True), (False, False)):
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        det.check(frame(cur), progress=progress)
        assert ("drift check" in terminal.text and "/41" in terminal.text) is shown, terminal.text
        if not shown:
            assert terminal.text == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    det.check(frame(cur))  # the default: no bar (DriftMonitor checks every epoch)
    assert terminal.text == ""


def test_drift_check_refuses_a_non_bool_progress():
    from kerafine.drift import DriftDetector

    ref, cur = _drift_data(200, 100, columns=2)
    with pytest.raises(KerafineError, match=r"progress.*received 1.*True or False"):
        DriftDetector(ref).check(cur, progress=1)
