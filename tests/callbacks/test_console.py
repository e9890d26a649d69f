"""ConsoleProgress and the console of fine_tune and the `kerafine` command: short lines, whole notes, said once."""

import io
import re

import keras
import numpy as np
import pandas as pd
import pytest

import kerafine
from kerafine.callbacks import AUCTracker, CheckpointRestart, ConsoleProgress, TrainingMonitor
from kerafine.callbacks.console import DETAIL_KEYS
from kerafine.errors import KerafineError

EPOCH_LINE = re.compile(r"^epoch \d+/\d+  ")


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def _model():
    inputs = keras.Input((3,))
    enc = keras.Model(inputs, keras.layers.Dense(4, name="enc")(inputs), name="encoder")
    return kerafine.build_transfer_model(enc, keras.layers.Dense(1, activation="sigmoid", name="predictions"))


# A logs dict as the demo's kerafine callbacks fill it (TrainingMonitor, AUCTracker, DriftMonitor).
FULL_LOGS = {
    "loss": 0.1636,
    "accuracy": 0.91,
    "val_loss": 0.0803,
    "val_accuracy": 0.93,
    "val_auc": 0.9261,
    "val_auc_lower": 0.8863,
    "val_auc_upper": 0.9659,
    "drift_share": 0.6667,
    "drift_detected": 1.0,
    "learning_rate": 0.003,
    "step_seconds": 0.2014,
    "samples_per_second": 626.0272,
    "cpu_percent": 34.9,
    "rss_mb": 771.668,
    "update_ratio": 0.0031,
    "val_pr_auc": 0.61,
}


def test_the_epoch_line_keeps_the_watched_keys_and_leaves_diagnostics_out():
    cb = ConsoleProgress()
    cb.params = {"epochs": 10}
    line = cb.line(2, 4.2, FULL_LOGS)
    assert len(line) <= 120
    assert line.startswith("epoch 3/10  4.2 s  loss 0.1636  val_loss 0.0803  val_auc 0.9261")
    for key in DETAIL_KEYS | {"val_auc_lower", "val_auc_upper", "drift_detected"}:
        assert f" {key} " not in f"{line} "


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_a_key_that_does_not_fit_is_dropped_whole(width):
    cb = ConsoleProgress(width=width)
    cb.params = {"epochs": 10}
    line = cb.line(0, 1.0, FULL_LOGS)
    assert len(line) <= width
    pairs = re.findall(r"  (\S+) (\S+)", line.split("  ", 2)[2]) if line.count("  ") >= 2 else []
    shown = {"lr" if k == "learning_rate" else k: v for k, v in FULL_LOGS.items()}
    for name, value in pairs:  # every pair printed is a whole key with its whole value
        assert name in shown and float(value) == pytest.approx(shown[name], rel=1e-3)


def test_explicit_keys_are_shown_in_the_order_given():
    cb = ConsoleProgress(keys=["val_auc", "rss_mb", "missing"])
    cb.params = {"epochs": 1}
    assert cb.line(0, 1.0, FULL_LOGS).endswith("val_auc 0.9261  rss_mb 771.6680")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"verbose": 0}, "verbose.*received 0"),
        ({"verbose": True}, "verbose.*received True"),
        ({"width": 10}, "width.*received 10"),
        ({"keys": "loss"}, "keys.*received 'loss'"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(KerafineError, match=match):
        ConsoleProgress(**kwargs)


def test_epoch_line_only_does_not_define_batch_hooks():
    # Keras runs batch hooks asynchronously only when no callback overrides them.
    assert type(ConsoleProgress()).on_train_batch_end is keras.callbacks.Callback.on_train_batch_end
    assert type(ConsoleProgress(verbose=1)).on_train_batch_end is not keras.callbacks.Callback.on_train_batch_end
    assert isinstance(ConsoleProgress(verbose=1), ConsoleProgress)


def test_the_batch_counter_stays_off_when_not_a_terminal():
    stream = io.StringIO()
    x, y = _data()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[ConsoleProgress(verbose=1, stream=stream)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and all(EPOCH_LINE.match(l) for l in lines) and "\r" not in stream.getvalue()


def test_fine_tune_prints_one_short_line_per_epoch(capsys):
    x, y = _data()
    kerafine.fine_tune(
        _model(),
        (x, y),
        validation_data=(x, y),
        head_epochs=2,
        finetune_epochs=1,
        verbose=2,
        metrics=["accuracy"],
        callbacks=[AUCTracker((x, y)), TrainingMonitor()],
    )
    out = capsys.readouterr().out
    epoch_lines = [l for l in out.splitlines() if EPOCH_LINE.match(l)]
    assert [l.split("  ")[0] for l in epoch_lines] == ["epoch 1/2", "epoch 2/2", "epoch 3/3"]
    assert all(len(l) <= 120 for l in out.splitlines())
    assert all("val_auc" in l and "loss" in l for l in epoch_lines)
    assert "cpu_percent" not in out and "rss_mb" not in out and "samples_per_second" not in out
    assert " days " not in out and "0:00:" not in out


def test_fine_tune_keeps_the_users_own_console_progress(capsys):
    x, y = _data()
    stream = io.StringIO()
    kerafine.fine_tune(
        _model(),
        (x, y),
        head_epochs=1,
        finetune_epochs=1,
        verbose=2,
        callbacks=[ConsoleProgress(keys=["loss"], stream=stream)],
    )
    assert not [l for l in capsys.readouterr().out.splitlines() if EPOCH_LINE.match(l)]
    assert [l.split("  ")[0] for l in stream.getvalue().splitlines()] == ["epoch 1/1", "epoch 2/2"]


def test_fine_tune_verbose_0_prints_nothing(capsys):
    x, y = _data()
    kerafine.fine_tune(_model(), (x, y), head_epochs=1, finetune_epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_the_diagnostics_still_reach_history(capsys):
    # The console hides them; History (hence CSVLogger, EarlyStopping) still has them.
    x, y = _data()
    r = kerafine.fine_tune(_model(), (x, y), head_epochs=1, finetune_epochs=1, verbose=2, callbacks=[TrainingMonitor()])
    assert {"cpu_percent", "rss_mb", "samples_per_second"} <= set(r.finetune_history.history)


def test_a_finished_restartable_run_rerun_says_so_in_one_line(tmp_path, capsys):
    x, y = _data()

    def run():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy")
        model.fit(
            x,
            y,
            epochs=2,
            batch_size=32,
            verbose=0,
            callbacks=[CheckpointRestart(str(tmp_path / "ckpt")), ConsoleProgress()],
        )

    run()
    first = capsys.readouterr().out
    assert len([l for l in first.splitlines() if EPOCH_LINE.match(l)]) == 2 and "nothing to train" not in first
    run()
    again = capsys.readouterr().out.strip().splitlines()
    assert len(again) == 1 and again[0].startswith("nothing to train: all 2 epochs")


def test_fine_tune_rerun_after_finishing_says_so_once(tmp_path, capsys):
    x, y = _data()

    def run():
        keras.utils.set_random_seed(0)
        kerafine.fine_tune(
            _model(),
            (x, y),
            head_epochs=1,
            finetune_epochs=1,
            verbose=2,
            callbacks=[CheckpointRestart(str(tmp_path / "ckpt"))],
        )

    run()
    capsys.readouterr()
    run()
    out = capsys.readouterr().out
    assert out.count("nothing to train") == 1 and not [l for l in out.splitlines() if EPOCH_LINE.match(l)]


# ----------------------------------------------------------------------------- the command's console


def test_console_notes_are_whole_wrapped_at_words_and_printed_once():
    from kerafine.cli._common import _Console

    stream = io.StringIO()
    con = _Console(stream=stream)
    text = (
        "TrainingMonitor: learning rate looks too high for the full fine-tuning phase (learning rate 0.003): "
        "each step moves the trainable weights by 0.05 of their norm at epoch 2 (healthy 0.0001..0.01). "
        "Try: a 3-10x lower learning rate or kerafine.lr_find."
    )
    assert con.note(text, "TrainingProblemWarning")
    assert not con.note(text.replace("epoch 2", "epoch 5"), "TrainingProblemWarning")  # same note, other epoch
    assert con.note("another note", "DriftWarning")
    printed = stream.getvalue()
    lines = printed.splitlines()
    assert all(len(l) <= 110 for l in lines)
    assert not any(l.rstrip().endswith("...") for l in lines)
    first = " ".join(l.strip() for l in lines[:-1])
    assert first == "note (TrainingProblemWarning): " + text  # whole, nothing cut, words intact
    assert printed.count("note (TrainingProblemWarning)") == 1


def test_kerafine_fit_prints_short_epoch_lines_and_whole_notes(tmp_path, capsys, monkeypatch):
    from kerafine.cli import main

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    n = 300
    price = rng.gamma(2, 10, n)
    country = rng.choice(["fr", "de", "us"], n)
    y = (rng.random(n) < 1 / (1 + np.exp(-0.1 * (price - 20)))).astype(int)
    pd.DataFrame({"price": price, "country": country, "clicked": y}).to_csv(tmp_path / "clicks.csv", index=False)
    (tmp_path / "fit.yaml").write_text(
        "data: {kind: tabular, csv: clicks.csv, label: clicked}\n"
        "backbone: {name: tabular, units: [8]}\n"
        "head: {hidden: []}\n"
        "schedule: {head_epochs: 2, finetune_epochs: 1, learning_rate: 0.01}\n"
        "callbacks: {drift: true}\n"
        "output_dir: run\n"
    )
    assert main(["fit", "fit.yaml"]) == 0
    out = capsys.readouterr().out
    epoch_lines = [l for l in out.splitlines() if EPOCH_LINE.match(l)]
    assert len(epoch_lines) == 3
    assert all(len(l) <= 120 for l in epoch_lines), epoch_lines
    assert "cpu_percent" not in out and "rss_mb" not in out
    notes = [l for l in out.splitlines() if l.lstrip().startswith("note")]
    assert len(notes) == len(set(notes))
    assert "..." not in "".join(l for l in out.splitlines() if l.startswith("    "))
    assert main(["fit", "fit.yaml"]) == 0  # re-run of the finished run: said in a line, nothing trained
    again = capsys.readouterr().out
    assert "finished run of this config" in again and not [l for l in again.splitlines() if EPOCH_LINE.match(l)]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_verbose_1_counts_batches_in_place_on_a_terminal_then_prints_the_epoch_line():
    stream = _Terminal()
    x, y = _data(64)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[ConsoleProgress(verbose=1, stream=stream)])
    text = stream.getvalue()
    assert "\r  batch 1/4  loss " in text and "\r  batch 4/4  loss " in text
    last = text.split("\r")[-1]  # what the terminal shows at the end: the epoch line on a cleared row
    assert EPOCH_LINE.match(last) and last.endswith("\n") and last.count("\n") == 1
