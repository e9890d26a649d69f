"""kerafine._display and the display of every result object: short repr, HTML for Jupyter, plot() -> Figure."""

import re

import keras
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import kerafine
from kerafine._display import displayable, human_duration, wrap_note


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.42, "0.4 s"),
        (9.46, "9.5 s"),
        (12.4, "12 s"),
        (60, "1 min"),
        (62, "1 min 02 s"),
        (754, "12 min 34 s"),
        (3600, "1 h"),
        (3720, "1 h 02 min"),
        (90000, "1 d 1 h"),
        (float("nan"), "nan"),
    ],
)
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_human_duration_never_reads_like_a_pandas_timedelta():
    assert "days" not in human_duration(pd.Timedelta("1min").total_seconds())


def test_wrap_note_keeps_every_word_whole():
    text = "each step moves the trainable weights by 0.05 of their norm " * 4
    wrapped = wrap_note(text, width=30)
    assert all(len(line) <= 30 for line in wrapped.splitlines())
    assert wrapped.split() == text.split()


def test_a_long_word_is_not_broken():
    path = "/very/long/path/" * 5
    assert path in wrap_note(f"see {path} now", width=20)


# ----------------------------------------------------------------------------- every result object


def _xy(n=200, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype("float32")


def _fitted(x, y):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    return model


def _transfer():
    inputs = keras.Input((3,))
    enc = keras.Model(inputs, keras.layers.Dense(4, name="enc")(inputs), name="encoder")
    return kerafine.build_transfer_model(enc, keras.layers.Dense(1, activation="sigmoid", name="predictions"))


@pytest.fixture(scope="module")
def results():
    from kerafine.drift import DriftDetector, ReferenceProfile, mmd_test
    from kerafine.metrics import classification_report, roc_auc_compare
    from kerafine.security import InputGuard, membership_inference, robustness_curve
    from kerafine.update import compare, decide, refresh

    x, y = _xy()
    model = _fitted(x, y)
    score = model.predict(x, verbose=0).ravel()
    rng = np.random.default_rng(1)
    out = {}
    out["FineTuneResult"] = kerafine.fine_tune(
        _transfer(), (x, y), validation_data=(x, y), head_epochs=1, finetune_epochs=1, verbose=0
    )
    out["LRFindResult"] = kerafine.lr_find(_fitted(x, y), (x, y), num_steps=10, batch_size=16)
    out["CalibrationResult"] = kerafine.calibrate(model, (x, y), method="temperature")
    out["ClassificationReport"] = classification_report(y, score)
    out["AUCComparison"] = roc_auc_compare(y, score, rng.random(len(y)))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    out["DriftReport"] = DriftDetector(frame).check(frame + 1.0)
    out["MMDResult"] = mmd_test(x[:60], x[60:120] + 1.0, n_permutations=20)
    guard = InputGuard(ReferenceProfile.from_data(frame), margin=0.0)
    out["GuardReport"] = guard.check(frame.iloc[:5] * 10)
    out["FilterResult"] = guard.filter(frame.iloc[:5] * 10)
    out["RobustnessCurve"] = robustness_curve(model, (x, y), [0.1, 0.3], attack="fgsm")
    out["MembershipReport"] = membership_inference(model, (x[:100], y[:100]), (x[100:], y[100:]))
    comparison = compare(
        {"old": model, "new": _fitted(x, 1 - y)}, {"new": (x, y), "old": (x, y)}, current="old", timing_repeats=1
    )
    out["Comparison"] = comparison
    out["Decision"] = decide(comparison, new="new", old="old")
    out["RefreshResult"] = refresh(_transfer(), (x[:40], y[:40]), replay=(x[40:], y[40:]), epochs=1, verbose=0)
    return out


RESULT_CLASSES = [
    "FineTuneResult",
    "LRFindResult",
    "CalibrationResult",
    "ClassificationReport",
    "AUCComparison",
    "DriftReport",
    "MMDResult",
    "GuardReport",
    "FilterResult",
    "RobustnessCurve",
    "MembershipReport",
    "Comparison",
    "Decision",
    "RefreshResult",
]


@pytest.mark.parametrize("name", RESULT_CLASSES)
def test_repr_is_a_few_short_lines(results, name):
    obj = results[name]
    assert type(obj).__name__ == name
    text = repr(obj)
    lines = text.splitlines()
    assert 1 <= len(lines) <= 12, text
    assert all(len(line) <= 160 for line in lines), text
    # Never a dataclass dump: no nested objects' default reprs, no numpy arrays, no field=value runs.
    assert "object at 0x" not in text and "array(" not in text and "keras.src" not in text
    assert len(re.findall(r"\b\w+=", text)) <= 4, text
    assert name.split("Result")[0].split("Report")[0][:5].lower() in text.lower().replace(" ", "")


@pytest.mark.parametrize("name", RESULT_CLASSES)
def test_repr_html_is_html_for_jupyter(results, name):
    obj = results[name]
    page = obj._repr_html_()
    assert isinstance(page, str) and page.lstrip().startswith("<") and page.rstrip().endswith(">")
    assert "object at 0x" not in page and "array(" not in page


def test_repr_shows_the_figures_a_person_wants(results):
    ft = repr(results["FineTuneResult"])
    assert "head" in ft and "finetune" in ft and "1 epochs" in ft and "lr 0.001" in ft
    dr = repr(results["DriftReport"])
    assert dr.startswith("DriftReport: DRIFT") and "3 of 3 features" in dr
    assert "f0" in dr and "DriftReport(" not in dr


PLOTTABLE = [
    "LRFindResult",
    "CalibrationResult",
    "ClassificationReport",
    "DriftReport",
    "RobustnessCurve",
    "MembershipReport",
    "Comparison",
]


@pytest.mark.parametrize("name", PLOTTABLE)
def test_every_plot_returns_a_figure(results, name):
    fig = results[name].plot()
    assert isinstance(fig, Figure) and fig.axes


def test_every_public_plot_method_is_covered():
    # A new result class with a plot() joins PLOTTABLE: grep-like check over the package source.
    import pathlib

    root = pathlib.Path(kerafine.__file__).parent
    classes = set()
    for path in root.rglob("*.py"):
        current = None
        for line in path.read_text().splitlines():
            m = re.match(r"class (\w+)", line)
            if m:
                current = m.group(1)
            if re.match(r"    def plot\(", line) and current:
                classes.add(current)
    assert classes <= set(PLOTTABLE), classes - set(PLOTTABLE)


def test_lr_find_plot_draws_on_a_given_axes_and_returns_its_figure(results):
    fig = Figure()
    ax = fig.add_subplot()
    assert results["LRFindResult"].plot(ax=ax) is fig and ax.get_xscale() == "log"


def test_displayable_keeps_a_class_own_html():
    @displayable
    class R:
        def _display(self):
            return "R", [("a", "1")]

        def _repr_html_(self):
            return "<p>mine</p>"

    assert repr(R()) == "R\n  a  1" and R()._repr_html_() == "<p>mine</p>"
