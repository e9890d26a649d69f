"""The ``kerafine`` command: ``demo``, ``fit``, ``init-config``, ``evaluate`` and ``drift``.

Run ``kerafine --help`` or ``kerafine COMMAND --help``. The same entry point is
``python -m kerafine``. Every command returns an exit status: 0 on success, 2
on bad input (the message names the argument or config field), 130 when
interrupted with Ctrl-C (re-run the same command to resume), and for
``drift`` 1 when drift is detected.

This module composes the rest of kerafine (data, backbones, transfer,
fine-tuning, callbacks, metrics, drift); nothing imports it back.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import textwrap
import time
from pathlib import Path

from kerafine.errors import DataError, KerafineError, invalid_argument

__all__ = ["main"]

DEFAULT_DEMO_DIR = "kerafine-demo"


# --------------------------------------------------------------------------- helpers


def _optional(module: str, name: str):
    """``module.name`` if that kerafine module is installed, else ``None``.

    Other parts of kerafine are used when present so that a partial install
    (or a development tree) still runs every command.
    """
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


class _Console:
    """Progress messages on stdout, flushed at once (the demo is watched live)."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.t0 = time.monotonic()

    def step(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {message}", file=self.stream, flush=True)

    def print(self, message: str = "") -> None:
        print(message, file=self.stream, flush=True)


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter drowns the demo's progress lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")


def _scores(y_true, y_score) -> dict:
    """ROC-AUC and PR-AUC (average precision) with kerafine.metrics, or scikit-learn without it."""
    import numpy as np

    y_true = np.asarray(y_true).ravel()
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    roc, pr = _optional("kerafine.metrics", "roc_auc"), _optional("kerafine.metrics", "pr_auc")
    if roc is None or pr is None:
        from sklearn.metrics import average_precision_score as pr
        from sklearn.metrics import roc_auc_score as roc
    return {"roc_auc": float(roc(y_true, y_score)), "pr_auc": float(pr(y_true, y_score)),
            "n": int(len(y_true)), "positives": int(y_true.sum())}


def _load_model(path):
    """``kerafine.load_model`` (custom layers registered, backbone pinned to inference), or Keras's."""
    load = _optional("kerafine.saving", "load_model")
    if load is not None:
        return load(path)
    import keras

    import kerafine.backbones  # noqa: F401  (registers kerafine's layers)

    return keras.models.load_model(path)


def _predict(model, x, batch_size: int = 1024):
    import numpy as np

    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0)).reshape(-1)


def _save_model_atomically(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)
    from kerafine._io import fsync_dir

    fsync_dir(path.parent)


def _subsample(x, n: int, seed: int = 0):
    import numpy as np

    if x is None or len(x) <= n:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]


def _callbacks(*, x_train, x_val, y_val, log_dir: Path, ckpt_dir: Path | None, patience: int | None,
               auc: bool = True, drift_layer: str | None = None, monitor: bool = True,
               tensorboard: bool = True) -> tuple[list, list]:
    """The callback list of one training phase and the names of the kerafine callbacks in it.

    Each kerafine callback is used when its module is installed. Order
    matters: AUCTracker writes ``val_auc`` into the logs before
    EarlyStopping reads it, and CheckpointRestart comes last so that it saves
    the other callbacks' state after they have updated it for the epoch.
    """
    import keras

    cbs, used = [], []
    monitor_key = "val_loss"
    if auc:
        tracker = _optional("kerafine.callbacks.auc_tracker", "AUCTracker")
        if tracker is not None:
            cbs.append(tracker((x_val, y_val), name="val_auc", log_dir=os.fspath(log_dir)))
            used.append("AUCTracker")
            monitor_key = "val_auc"
    if drift_layer is not None:
        monitor_cls = _optional("kerafine.callbacks.drift_monitor", "DriftMonitor")
        if monitor_cls is not None:
            # Embeddings of the validation servers against those of the training servers;
            # a few thousand rows each keep the per-epoch check cheap.
            cbs.append(monitor_cls(_subsample(x_train, 1500), _subsample(x_val, 1500), on="embeddings",
                                   layer=drift_layer, log_dir=os.fspath(log_dir)))
            used.append("DriftMonitor")
    if monitor:
        tm = _optional("kerafine.callbacks.training_monitor", "TrainingMonitor")
        if tm is not None:
            cbs.append(tm(log_dir=os.fspath(log_dir)))
            used.append("TrainingMonitor")
    if patience:
        es = _optional("kerafine.callbacks.early_stopping", "EarlyStopping")
        if es is not None:
            cbs.append(es(monitor=monitor_key, mode="max" if monitor_key == "val_auc" else "min",
                          patience=patience, restore_best_weights=True))
            used.append("EarlyStopping")
        else:
            cbs.append(keras.callbacks.EarlyStopping(monitor=monitor_key, patience=patience,
                                                     mode="max" if monitor_key == "val_auc" else "min",
                                                     restore_best_weights=True))
    if tensorboard:
        cbs.append(keras.callbacks.TensorBoard(log_dir=os.fspath(log_dir), write_graph=False, profile_batch=0))
    if ckpt_dir is not None:
        ckpt = _optional("kerafine.callbacks.checkpoint_restart", "CheckpointRestart")
        if ckpt is not None:
            cbs.append(ckpt(os.fspath(ckpt_dir), log_dir=os.fspath(log_dir)))
            used.append("CheckpointRestart")
    return cbs, used


def _train_phase(model, kind: str, train, val, *, epochs: int, lr: float, batch_size: int, callbacks: list,
                 unfreeze="all", verbose: int = 2) -> dict:
    """Run one training phase and return its history (``{metric: [per-epoch values]}``).

    ``kind`` is ``"head"`` (backbone frozen), ``"finetune"`` (the top
    ``unfreeze`` backbone layers trainable, low learning rate) or ``"full"``
    (every layer trainable, as for a model trained from scratch). Head and
    fine-tune phases go through :func:`kerafine.finetune.fine_tune` (frozen
    features cached in the head phase). Each phase is its own ``fit`` with its
    own ``CheckpointRestart`` directory, so an interrupted phase resumes in the
    right phase.
    """
    import keras

    fine_tune = _optional("kerafine.finetune", "fine_tune")
    if kind in ("head", "finetune") and fine_tune is not None:
        kw = dict(head_epochs=epochs, finetune_epochs=0, head_lr=lr) if kind == "head" else dict(
            head_epochs=0, finetune_epochs=epochs, finetune_lr=lr, unfreeze_top=unfreeze)
        result = fine_tune(model, train, validation_data=val, batch_size=batch_size, callbacks=callbacks,
                           loss="binary_crossentropy", verbose=verbose, **kw)
        history = result.head_history if kind == "head" else result.finetune_history
        return dict(history.history) if history is not None else {}
    if kind == "full":
        unfreeze = _optional("kerafine.transfer", "unfreeze")
        if unfreeze is not None:
            unfreeze(model)
        else:
            for layer in model.layers:
                layer.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
    h = model.fit(train[0], train[1], batch_size=batch_size, epochs=epochs, validation_data=val, verbose=verbose,
                  callbacks=callbacks)
    return dict(h.history)


class _collect_warnings:
    """Gather the warnings of a training phase and print each distinct one once, shortened.

    The monitors warn every epoch they see a problem; the full text is also in
    TensorBoard (Text tab), so the console gets one line per kind.
    """

    def __init__(self, con: "_Console", width: int = 150):
        import warnings

        self.con, self.width = con, width
        self._cm = warnings.catch_warnings(record=True)

    def __enter__(self):
        import warnings

        self.records = self._cm.__enter__()
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*are constant in the reference.*")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        seen = set()
        for w in self.records:
            text = " ".join(str(w.message).split())
            key = (w.category.__name__, re.sub(r"[\d.]+", "#", text)[:50])
            if key in seen:
                continue
            seen.add(key)
            self.con.print(f"    note ({w.category.__name__}): {text[: self.width]}{'...' if len(text) > self.width else ''}")
        return False


def _run_phases(model, phases, *, train, val, weights_dir: Path, name: str, callbacks_for, batch_size: int,
                con: "_Console", verbose: int) -> dict:
    """Run ``phases`` (``(phase, kind, epochs, lr)``) in order, skipping those finished in an earlier run.

    A finished phase leaves ``<name>-<phase>.weights.h5``; a re-run loads it
    instead of training again. An unfinished phase resumes from its
    CheckpointRestart directory.
    """
    histories = {}
    for phase, kind, epochs, lr in phases:
        done = weights_dir / f"{name}-{phase}.weights.h5"
        if done.exists():
            con.step(f"  {name}/{phase}: finished in an earlier run, loading {done.name}")
            model.load_weights(done)
            continue
        if epochs <= 0:
            continue
        con.step(f"  {name}/{phase}: {epochs} epochs at learning rate {lr:g}")
        with _collect_warnings(con):
            histories[phase] = _train_phase(model, kind, train, val, epochs=epochs, lr=lr, batch_size=batch_size,
                                            callbacks=callbacks_for(phase), verbose=verbose)
        tmp = done.with_name(f".{done.stem}.tmp-{os.getpid()}.weights.h5")
        model.save_weights(tmp)
        os.replace(tmp, done)
    return histories


def _transfer_model(backbone, hidden, dropout: float = 0.0):
    """Backbone + binary head, backbone frozen (kerafine.transfer / kerafine.heads when installed)."""
    import keras

    heads = _optional("kerafine.heads", "classification")
    head = heads(2, hidden=tuple(hidden), dropout=dropout) if heads is not None else keras.Sequential(
        [*(keras.layers.Dense(h, activation="relu") for h in hidden),
         keras.layers.Dense(1, activation="sigmoid", name="predictions")], name="head")
    build = _optional("kerafine.transfer", "build_transfer_model")
    if build is not None:
        return build(backbone, head, freeze="all")
    backbone.trainable = False
    inputs = keras.Input(backbone.input.shape[1:])
    return keras.Model(inputs, head(backbone(inputs, training=False)))


def _sequence_encoder(window: int, n_features: int, kind: str, units):
    import keras

    build = _optional("kerafine.backbones", "sequence_encoder")
    if build is not None:
        return build((window, n_features), kind=kind, units=tuple(units))
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[kind]
    inputs = keras.Input((window, n_features), name="window")
    x = keras.layers.Masking(0.0)(inputs)
    for i, u in enumerate(units):
        x = layer(u, return_sequences=i < len(units) - 1)(x)
    return keras.Model(inputs, x, name="sequence_encoder")


def _pretrain(encoder, windows, epochs: int, batch_size: int, callbacks, verbose: int):
    pretrain = _optional("kerafine.backbones", "pretrain_sequence_encoder")
    if pretrain is None:
        raise KerafineError("kerafine.backbones.pretrain_sequence_encoder is not installed; cannot pretrain.")
    import keras

    return pretrain(encoder, windows, objective="forecast", epochs=epochs, batch_size=batch_size,
                    optimizer=keras.optimizers.Adam(3e-3),
                    callbacks=callbacks, verbose=verbose, shuffle=True)


# --------------------------------------------------------------------------- demo


_DEMO_SIZES = {
    # Fleet sizes (servers x one-minute steps), servers of fleet B labelled for training and validation
    # (the rest is the test set), window stride, and epochs of each phase. The from-scratch model gets
    # as many epochs as the two fine-tuning phases together.
    "full": dict(a_servers=16, b_servers=20, steps=2880, b_train=2, b_val=3, stride=2, window=32,
                 pretrain_epochs=4, head_epochs=6, finetune_epochs=3, scratch_epochs=9),
    "quick": dict(a_servers=10, b_servers=14, steps=2400, b_train=2, b_val=3, stride=3, window=32,
                  pretrain_epochs=3, head_epochs=5, finetune_epochs=2, scratch_epochs=7),
}


def _demo(args) -> int:
    _quiet_tensorflow()
    con = _Console()
    size = _DEMO_SIZES["quick" if args.quick else "full"]
    out = Path(args.out).expanduser()
    from kerafine._io import atomic_write_json, check_writable_directory, read_json

    check_writable_directory(out, "--out")
    if args.fresh:
        import shutil

        for sub in ("data", "models", "checkpoints", "logs", "results.json", "demo.json"):
            p = out / sub
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else (p.unlink() if p.exists() else None)
    state_path = out / "demo.json"
    settings = {"size": "quick" if args.quick else "full", "seed": args.seed, "version": 1}
    if state_path.exists():
        previous = read_json(state_path)
        if previous.get("settings") != settings:
            raise invalid_argument(
                "--out", os.fspath(out), f"a directory of a demo run with the same settings {settings}",
                f"It holds a run with {previous.get('settings')}; pass --fresh to start over, or another --out.",
            )
        con.step(f"Resuming the demo in {out} (completed stages are skipped).")
    else:
        atomic_write_json(state_path, {"settings": settings})
    con.step(f"kerafine demo ({settings['size']}): output in {out.resolve()}")

    # 1. Data: two simulated fleets written as the CSVs the loader reads.
    from kerafine.data import load_server_metrics, split_by_group
    from kerafine.data.demo import _fleet_dir_is_complete, generate_fleet

    fleets = {}
    for fleet, n in (("A", size["a_servers"]), ("B", size["b_servers"])):
        d = out / "data" / f"fleet-{fleet.lower()}"
        if not _fleet_dir_is_complete(d):
            con.step(f"Generating fleet {fleet}: {n} servers x {size['steps']} one-minute samples -> {d}")
            generate_fleet(d, fleet, n_servers=n, n_steps=size["steps"], seed=args.seed)
        fleets[fleet] = {k: d / f"{k}.csv" for k in ("cpu", "memory", "diskio", "uptime", "failures")}
    horizon, window, stride = 30, size["window"], size["stride"]
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        # Stretches between long outages shorter than a window are expected in the simulation.
        warnings.simplefilter("ignore", UserWarning)
        a = load_server_metrics(**{k: v for k, v in fleets["A"].items() if k != "failures"}, freq="1min",
                                horizon=horizon)  # unlabelled: the failures file is not read
        b = load_server_metrics(**fleets["B"], freq="1min", horizon=horizon)
        con.step(f"Fleet A (unlabelled, for pretraining): {a.summary()}")
        con.step(f"Fleet B (labelled): {b.summary()}")
        n_b = len(b.servers)
        splits = split_by_group(b, val=size["b_val"] / n_b, test=(n_b - size["b_train"] - size["b_val"]) / n_b,
                                seed=args.seed)
        features = ("cpu", "memory", "diskio")
        splits, norm_b = splits.normalized(features)
        from kerafine.data import Normalizer

        # Fleet A has no failure labels, but its telemetry shows every reboot (uptime drops). The
        # pretraining target "does this server reboot within the next 30 minutes?" comes from the
        # data itself; failures are among those reboots, planned ones are noise the encoder learns
        # to live with.
        a = load_server_metrics(**{k: v for k, v in fleets["A"].items() if k != "failures"}, failures=a.restarts,
                                freq="1min", horizon=horizon)
        xa, ya = a.windows(window, stride=stride, features=features, normalizer=Normalizer.fit(a, features))
        xtr, ytr = splits.train.windows(window, stride=stride, features=features)
        xv, yv = splits.val.windows(window, stride=stride, features=features)
        xt, yt = splits.test.windows(window, stride=stride, features=features)
    con.step(
        f"Windows of {window} steps, label 'fails within {horizon} min': pretrain {len(xa)} (fleet A); "
        f"fleet B train {len(xtr)} ({int(ytr.sum())} positive, from {len(splits.train.servers)} servers), "
        f"val {len(xv)} ({int(yv.sum())}), test {len(xt)} ({int(yt.sum())})"
    )

    import keras

    keras.utils.set_random_seed(args.seed)
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    ckpts = out / "checkpoints"
    verbose = 2 if not args.quiet_fit else 0

    # 2. Self-supervised pretraining of the LSTM encoder on unlabelled fleet A.
    enc_path = models_dir / "encoder.keras"
    if enc_path.exists():
        con.step(f"Pretrained encoder found: {enc_path} (skipping pretraining)")
        encoder = _load_model(enc_path)
    else:
        con.step(f"Pretraining the LSTM encoder on fleet A ({size['pretrain_epochs']} epochs): no failure labels, "
                 f"the target is 'reboot within {horizon} min' read from the uptime series "
                 f"({int(ya.sum())} of {len(ya)} windows)")
        encoder = _sequence_encoder(window, xa.shape[-1], "lstm", (32,))
        proxy = _transfer_model(encoder, ())
        cbs, _ = _callbacks(x_train=None, x_val=None, y_val=None, log_dir=logs / "pretrain",
                            ckpt_dir=ckpts / "pretrain", patience=None, auc=False, monitor=True)
        with _collect_warnings(con):
            _train_phase(proxy, "full", (xa, ya), None, epochs=size["pretrain_epochs"], lr=3e-3, batch_size=128,
                         callbacks=cbs, verbose=verbose)
        _save_model_atomically(encoder, enc_path)

    results = {}
    used_callbacks = set()
    n_features = xa.shape[-1]

    def train_model(name: str, model, phases):
        path = models_dir / f"{name}.keras"
        if path.exists():
            con.step(f"Model {name!r} already trained: {path}")
            return _load_model(path)

        def callbacks_for(phase):
            cbs, used = _callbacks(x_train=xtr, x_val=xv, y_val=yv, log_dir=logs / name / phase,
                                   ckpt_dir=ckpts / name / phase, patience=4, drift_layer=encoder.name)
            used_callbacks.update(used)
            return cbs

        _run_phases(model, phases, train=(xtr, ytr), val=(xv, yv), weights_dir=models_dir, name=name,
                    callbacks_for=callbacks_for, batch_size=64, con=con, verbose=verbose)
        _save_model_atomically(model, path)
        # What `kerafine evaluate models/<name>.keras data/fleet-b` needs to rebuild the windows.
        atomic_write_json(_sidecar(path), {"kind": "server_metrics", "features": list(features), "window": window,
                                           "stride": stride, "freq": "1min", "horizon": horizon, "max_gap": 3,
                                           "normalizer": norm_b.to_dict()})
        return model

    with warnings.catch_warnings():
        # An LSTM unit that stays saturated on the reference windows is expected, not news.
        warnings.filterwarnings("ignore", message=".*are constant in the reference.*")
        con.step(f"Fine-tuning on fleet B: the head with the encoder frozen, then the whole model")
        finetuned = train_model("finetuned", _transfer_model(encoder, (), dropout=0.2), [
            ("head", "head", size["head_epochs"], 1e-2),
            ("finetune", "finetune", size["finetune_epochs"], 3e-4),
        ])
        con.step("Training the same model from scratch on the same labels")
        keras.utils.set_random_seed(args.seed)
        scratch = train_model("scratch", _transfer_model(_sequence_encoder(window, n_features, "lstm", (32,)), (),
                                                         dropout=0.2), [
            ("train", "full", size["scratch_epochs"], 3e-3),
        ])

    for name, model in (("fine-tuned", finetuned), ("from scratch", scratch)):
        results[name] = {"val": _scores(yv, _predict(model, xv)), "test": _scores(yt, _predict(model, xt))}
    atomic_write_json(out / "results.json", {"settings": settings, "results": results,
                                             "callbacks": sorted(used_callbacks)})

    con.print()
    con.print(_results_table(results))
    gain = results["fine-tuned"]["test"]["roc_auc"] - results["from scratch"]["test"]["roc_auc"]
    con.print(f"\nPretraining on the unlabelled fleet {'gains' if gain > 0 else 'loses'} "
              f"{abs(gain):.3f} test ROC-AUC with {int(ytr.sum())} labelled positive windows.")
    if used_callbacks:
        con.print(f"Callbacks used: {', '.join(sorted(used_callbacks))}.")
    con.print(f"Results: {out / 'results.json'}")
    con.print(f"\nOpen the training curves in TensorBoard:\n  tensorboard --logdir {logs}")
    con.step("Done.")
    return 0


def _results_table(results: dict) -> str:
    rows = [f"{'model':<14}{'val ROC-AUC':>13}{'val PR-AUC':>12}{'test ROC-AUC':>14}{'test PR-AUC':>13}"]
    for name, r in results.items():
        rows.append(f"{name:<14}{r['val']['roc_auc']:>13.3f}{r['val']['pr_auc']:>12.3f}"
                    f"{r['test']['roc_auc']:>14.3f}{r['test']['pr_auc']:>13.3f}")
    return "\n".join(rows)


# --------------------------------------------------------------------------- parser


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kerafine",
        description="Transfer learning for Keras 3: pretrained backbones, two-phase fine-tuning, crash-safe "
                    "checkpoints, exact AUC, drift alerts and TensorBoard logs.",
        epilog="Start with `kerafine demo`. Each command has its own --help.",
    )
    from kerafine import __version__

    parser.add_argument("--version", action="version", version=f"kerafine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "demo", help="pretrain an LSTM on a simulated fleet, fine-tune on few labels, compare with from-scratch",
        description=textwrap.dedent("""\
            Generate two simulated server fleets (no download), pretrain an LSTM encoder self-supervised on the
            unlabelled fleet A, fine-tune it on a few labelled servers of fleet B (checkpoints, early stopping on
            validation ROC-AUC, drift and training monitors), train the same model from scratch on the same labels,
            and print validation/test ROC-AUC and PR-AUC of both. Interrupt it with Ctrl-C and run the same command
            again to resume. Takes one to two minutes on two CPU cores (--quick: well under a minute)."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=DEFAULT_DEMO_DIR, metavar="DIR",
                   help=f"output directory: data, models, checkpoints, TensorBoard logs (default: ./{DEFAULT_DEMO_DIR})")
    p.add_argument("--quick", action="store_true", help="smaller fleets and fewer epochs (used by the test suite)")
    p.add_argument("--fresh", action="store_true", help="discard a previous run in --out instead of resuming it")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated fleets and of training (default: 0)")
    p.add_argument("--quiet-fit", action="store_true", help="no per-epoch lines from Keras")
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "fit", help="fine-tune a model described by a YAML config",
        description=textwrap.dedent("""\
            Read CONFIG.yaml (see `kerafine init-config`), validate every field, load the data, pick the learning
            rate by a short search on validation ROC-AUC, train in two phases (head, then fine-tuning) with
            checkpoints and monitors, and write to the config's output_dir: TensorBoard logs (logs/), checkpoints
            (checkpoints/), the final model (model.keras with model.kerafine.json beside it), report.json and
            report.png. Re-running after an interruption resumes from the last checkpoint."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.yaml", help="the YAML configuration")
    p.add_argument("--quiet-fit", action="store_true", help="no per-epoch lines from Keras")
    p.set_defaults(func=_fit)

    p = sub.add_parser("init-config", help="write a commented example config to start from",
                       description="Write a commented example of the `kerafine fit` configuration.")
    p.add_argument("path", nargs="?", default="kerafine.yaml", metavar="PATH",
                   help="where to write it (default: kerafine.yaml); an existing file is kept unless --force")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_init_config)

    p = sub.add_parser(
        "evaluate", help="evaluation report (ROC-AUC, PR-AUC, ...) of a model written by `kerafine fit`",
        description=textwrap.dedent("""\
            Evaluate MODEL.keras (written by `kerafine fit`, with MODEL.kerafine.json beside it) on new labelled
            data and print the report as a table; --json writes it as JSON too. DATA is a CSV with the same
            columns as in training for a tabular model, or a directory holding cpu.csv, memory.csv, diskio.csv,
            uptime.csv and failures.csv for a server-metrics model."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("data", metavar="DATA.csv")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.add_argument("--robustness", metavar="EPS,EPS,...",
                   help="add a PGD-10 robustness curve at these L-inf radii (model input units), e.g. 1,2,4")
    p.add_argument("--membership-train", metavar="PATH",
                   help="add a membership-inference section: PATH holds the training rows (same format as DATA), "
                        "DATA the held-out rows")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "drift", help="compare a current CSV with a reference (CSV or saved profile): exit 1 on drift",
        description=textwrap.dedent("""\
            Test every column of CURRENT against REFERENCE (a CSV, or a directory written by
            ReferenceProfile.save) and print the drifted columns. Exit status: 0 no drift, 1 drift, 2 bad input."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("reference_pos", nargs="?", metavar="REFERENCE",
                   help="reference CSV or saved profile directory (or use --reference)")
    p.add_argument("current_pos", nargs="?", metavar="CURRENT.csv", help="current CSV (or use --current)")
    p.add_argument("--reference", metavar="REF", help="reference CSV or saved profile directory")
    p.add_argument("--current", metavar="CUR.csv", help="current CSV to test against the reference")
    p.add_argument("--categorical", metavar="COLS", help="comma-separated categorical columns")
    p.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    p.add_argument("--p-value", type=float, default=0.05, help="significance level (default: 0.05)")
    p.add_argument("--correction", choices=("bonferroni", "fdr"), default="bonferroni",
                   help="multiple-testing correction (default: bonferroni)")
    p.add_argument("--min-effect", type=float, default=None, help="smallest effect size reported as drift")
    p.add_argument("--top", type=int, default=20, help="at most this many drifted columns in the table (default: 20)")
    p.set_defaults(func=_drift)

    add_update = _optional("kerafine.update._command", "add_parser")  # `kerafine update` (kerafine/update/)
    if add_update is not None:
        add_update(sub)
    return parser


def main(argv=None) -> int:
    """Run the ``kerafine`` command line; returns the exit status.

    Args:
        argv: arguments without the program name. Defaults to ``None``:
            ``sys.argv[1:]``.

    Returns:
        0 on success, 1 when ``drift`` finds drift, 2 on bad input, 130 when
        interrupted.

    Example:

    >>> main(["init-config", "--help"])  # doctest: +ELLIPSIS
    usage: kerafine init-config ...
    0
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argparse usage error
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    interrupted = _InterruptFlag()
    try:
        with interrupted:
            return int(args.func(args))
    except KerafineError as exc:
        if not interrupted.seen:
            print(f"kerafine {args.command}: error: {exc}", file=sys.stderr, flush=True)
            return 2
    except KeyboardInterrupt:
        pass
    except Exception:
        # Ctrl-C while TensorFlow traces a graph surfaces as whatever its context
        # managers raise on the way out (e.g. "Nesting violated"), not as
        # KeyboardInterrupt: after a SIGINT, any error is the interrupt.
        if not interrupted.seen:
            raise
    again = " ".join(["kerafine", *(sys.argv[1:] if argv is None else argv)])
    print(f"\nInterrupted. Run `{again}` again to resume from the last checkpoint.", file=sys.stderr, flush=True)
    return 130


class _InterruptFlag:
    """Remembers that SIGINT arrived while still raising KeyboardInterrupt as Python does."""

    def __init__(self):
        self.seen = False
        self._previous = None

    def _handler(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self):
        import signal
        import threading

        # Signal handlers can only be set from the main thread (not, e.g., in a notebook worker).
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# --------------------------------------------------------------------------- fit / evaluate / drift / init-config


def _init_config(args) -> int:
    from kerafine._io import atomic_write_text
    from kerafine.config import EXAMPLE_CONFIG

    path = Path(args.path)
    if path.exists() and not args.force:
        raise invalid_argument("PATH", os.fspath(path), "a path that does not exist yet", "Pass --force to overwrite it.")
    if path.parent and not path.parent.exists():
        raise invalid_argument("PATH", os.fspath(path), "a path in an existing directory")
    atomic_write_text(path, EXAMPLE_CONFIG)
    print(f"Wrote {path}. Edit the paths under `data:` and run: kerafine fit {path}")
    return 0


def _fit_data(cfg, con: "_Console") -> dict:
    """Load and split the data a config names; returns arrays and the spec evaluate needs later."""
    import numpy as np

    d = cfg.data
    sp = d.split
    if d.kind == "server_metrics":
        import warnings

        from kerafine.data import load_server_metrics, split_by_group, split_by_time

        m = load_server_metrics(cpu=d.cpu, memory=d.memory, diskio=d.diskio, uptime=d.uptime, failures=d.failures,
                                freq=d.freq, horizon=d.horizon, max_gap=d.max_gap)
        con.step(f"Loaded server metrics: {m.summary()}")
        if sp.by == "server":
            splits = split_by_group(m, val=sp.val, test=sp.test, seed=sp.seed)
        else:
            splits = split_by_time(m, val=sp.val, test=sp.test)
        splits, norm = splits.normalized()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            parts = {name: getattr(splits, name).windows(d.window, stride=d.stride)
                     for name in ("train", "val", "test")}
            pretrain_x = splits.train.forecast_windows(d.window, stride=d.stride)[0]
        for w in {str(w.message) for w in caught}:
            con.print(f"    note: {w}")
        spec = {"kind": "server_metrics", "features": list(m.features), "window": d.window, "stride": d.stride,
                "freq": d.freq, "horizon": d.horizon, "max_gap": d.max_gap, "normalizer": norm.to_dict()}
        return {**parts, "pretrain_x": pretrain_x, "spec": spec, "shape": (d.window, len(m.features))}
    from kerafine.data import load_tabular

    t = load_tabular(d.csv, d.label, numeric=d.numeric, categorical=d.categorical)
    rng = np.random.default_rng(sp.seed)
    order = rng.permutation(len(t))
    n_test, n_val = int(round(sp.test * len(t))), int(round(sp.val * len(t)))
    idx = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    parts = {}
    for name, rows in idx.items():
        sub = t.take(np.sort(rows))
        if len(rows) == 0 or len(np.unique(sub.y)) < 2:
            raise DataError(
                f"The {name} split of {d.csv} has {len(rows)} rows and {len(np.unique(sub.y))} class(es); "
                "each split needs both classes. Use more rows or larger split fractions."
            )
        parts[name] = (sub.x, sub.y)
    con.step(f"Loaded {len(t)} rows: {len(t.numeric)} numeric, {len(t.categorical)} categorical columns; "
             f"train {len(idx['train'])}, val {len(idx['val'])}, test {len(idx['test'])}")
    spec = {"kind": "tabular", "label": d.label, "numeric": list(t.numeric), "categorical": list(t.categorical)}
    return {**parts, "pretrain_x": None, "spec": spec, "shape": None}


def _fit_backbone(cfg, data: dict, out: Path, con: "_Console", verbose: int):
    """The backbone, pretrained when asked; a sequence encoder is saved to ``encoder.keras`` for resumes."""
    import keras

    b = cfg.backbone
    if b.name == "tabular":
        from kerafine.backbones import tabular_encoder

        spec = data["spec"]
        return lambda: tabular_encoder(spec["numeric"], spec["categorical"], hidden=tuple(b.units),
                                       data=data["train"][0])
    enc_path = out / "encoder.keras"
    if b.weights is not None:
        from kerafine.backbones import from_model

        if not Path(b.weights).is_file():
            raise invalid_argument("backbone.weights", os.fspath(b.weights), "an existing .keras file")
        enc = from_model(os.fspath(b.weights))
        want = tuple(data["shape"])
        got = tuple(enc.input.shape[1:])
        if got != want:
            raise invalid_argument("backbone.weights", os.fspath(b.weights),
                                   f"an encoder taking windows of shape {want} (window, features)",
                                   f"It takes {got}.")
        _save_model_atomically(enc, enc_path)
    elif enc_path.exists():
        con.step(f"Encoder found: {enc_path} (pretrained in an earlier run)")
    else:
        enc = _sequence_encoder(data["shape"][0], data["shape"][1], b.name, tuple(b.units))
        if b.pretrain_epochs:
            con.step(f"Pretraining the {b.name.upper()} encoder self-supervised on {len(data['pretrain_x'])} "
                     f"training windows ({b.pretrain_epochs} epochs)")
            cbs, _ = _callbacks(x_train=None, x_val=None, y_val=None, log_dir=out / "logs" / "pretrain",
                                ckpt_dir=out / "checkpoints" / "pretrain" if cfg.callbacks.checkpoint else None,
                                patience=None, auc=False, monitor=cfg.callbacks.monitor)
            with _collect_warnings(con):
                _pretrain(enc, data["pretrain_x"], b.pretrain_epochs, cfg.schedule.batch_size, cbs, verbose)
        _save_model_atomically(enc, enc_path)

    def load():
        return _load_model(enc_path)

    return load


def _lr_search(cfg, data, make_backbone, out: Path, con: "_Console") -> tuple[float, list]:
    """Train the head briefly at each candidate rate; keep the best validation ROC-AUC."""
    import keras

    from kerafine import tensorboard
    from kerafine._io import atomic_write_json, read_json

    s = cfg.schedule
    if s.learning_rate != "search":
        return float(s.learning_rate), []
    path = out / "lr_search.json"
    if path.exists():
        rows = read_json(path)["candidates"]
        con.step("Learning-rate search done in an earlier run")
    else:
        con.step(f"Learning-rate search: {len(s.lr_search.candidates)} candidates x {s.lr_search.epochs} epoch(s) "
                 "of head training, scored by validation ROC-AUC")
        rows = []
        log_dir = out / "logs" / "lr_search"
        for i, lr in enumerate(s.lr_search.candidates):
            keras.utils.set_random_seed(cfg.seed)
            model = _transfer_model(make_backbone(), cfg.head.hidden, cfg.head.dropout)
            with _collect_warnings(con):
                _train_phase(model, "head", data["train"], data["val"], epochs=s.lr_search.epochs, lr=lr,
                             batch_size=s.batch_size, callbacks=[], verbose=0)
            score = _scores(data["val"][1], _predict(model, data["val"][0]))["roc_auc"]
            rows.append({"learning_rate": lr, "val_roc_auc": score})
            tensorboard.scalars(log_dir, {"lr_search/val_roc_auc": score, "lr_search/learning_rate": lr}, step=i)
            con.step(f"  lr {lr:g}: val ROC-AUC {score:.4f}")
        atomic_write_json(path, {"candidates": rows})
    import math

    best = max(rows, key=lambda r: (r["val_roc_auc"] if not math.isnan(r["val_roc_auc"]) else -1.0))
    con.step(f"Best learning rate: {best['learning_rate']:g}")
    return float(best["learning_rate"]), rows


def _fit(args) -> int:
    _quiet_tensorflow()
    from kerafine.config import load_config

    con = _Console()
    cfg = load_config(args.config)  # every field checked before any data is read
    out = Path(cfg.output_dir)
    con.step(f"kerafine fit {args.config}: output in {out}")
    t_start = time.monotonic()
    data = _fit_data(cfg, con)

    import keras

    from kerafine import tensorboard
    from kerafine._io import atomic_write_json

    verbose = 0 if args.quiet_fit else 2
    keras.utils.set_random_seed(cfg.seed)
    make_backbone = _fit_backbone(cfg, data, out, con, verbose)
    lr, search = _lr_search(cfg, data, make_backbone, out, con)
    s = cfg.schedule
    ft_lr = s.finetune_learning_rate or lr / 10.0

    keras.utils.set_random_seed(cfg.seed)
    backbone = make_backbone()
    model = _transfer_model(backbone, cfg.head.hidden, cfg.head.dropout)
    used = set()
    cb = cfg.callbacks

    def callbacks_for(phase):
        cbs, names = _callbacks(
            x_train=data["train"][0], x_val=data["val"][0], y_val=data["val"][1], log_dir=out / "logs" / phase,
            ckpt_dir=out / "checkpoints" / phase if cb.checkpoint else None,
            patience=cb.early_stopping.patience if cb.early_stopping.enabled else None, auc=cb.auc,
            drift_layer=backbone.name if cb.drift and data["spec"]["kind"] == "server_metrics" else None,
            monitor=cb.monitor)
        used.update(names)
        return cbs

    con.step(f"Training: head {s.head_epochs} epochs at {lr:g}, then fine-tuning {s.finetune_epochs} epochs at "
             f"{ft_lr:g} (unfreeze: {s.unfreeze})")
    histories = _run_phases(model, [("head", "head", s.head_epochs, lr), ("finetune", "finetune", s.finetune_epochs,
                                                                           ft_lr)],
                            train=data["train"], val=data["val"], weights_dir=out / "checkpoints", name="model",
                            callbacks_for=callbacks_for, batch_size=s.batch_size, con=con, verbose=verbose)
    model_path = out / "model.keras"
    _save_model_atomically(model, model_path)
    atomic_write_json(_sidecar(model_path), data["spec"])

    from kerafine.evaluation import evaluate

    reports = {name: evaluate(model, data[name]) for name in ("val", "test")}
    fig = reports["test"].plot()
    fig.savefig(out / "report.png", dpi=90)
    tensorboard.figure(out / "logs" / "finetune" if s.finetune_epochs else out / "logs" / "head", "report/test",
                       fig, step=s.head_epochs + s.finetune_epochs, close_figure=False)
    report = {
        "config": cfg.model_dump(mode="json"),
        "data": {k: {"rows": int(len(data[k][1])), "positives": int(data[k][1].sum())} for k in ("train", "val", "test")},
        "learning_rate": lr, "finetune_learning_rate": ft_lr, "lr_search": search,
        "history": histories, "callbacks": sorted(used),
        "val": reports["val"].to_dict(), "test": reports["test"].to_dict(),
        "artifacts": {"model": "model.keras", "spec": _sidecar(model_path).name, "figure": "report.png",
                      "logs": "logs", "checkpoints": "checkpoints"},
        "seconds": round(time.monotonic() - t_start, 1),
    }
    atomic_write_json(out / "report.json", report)
    con.print()
    con.print(f"{'split':<6}{'ROC-AUC':>9}{'PR-AUC':>9}{'rows':>8}{'positives':>11}")
    for k in ("val", "test"):
        con.print(f"{k:<6}{reports[k].roc_auc:>9.4f}{reports[k].pr_auc:>9.4f}{report['data'][k]['rows']:>8}"
                  f"{report['data'][k]['positives']:>11}")
    con.print(f"\nWrote {model_path}, {out / 'report.json'}, {out / 'report.png'}")
    con.print(f"TensorBoard: tensorboard --logdir {out / 'logs'}")
    return 0


def _sidecar(model_path: Path) -> Path:
    """``model.keras`` -> ``model.kerafine.json``: what evaluate needs to rebuild the inputs."""
    return model_path.with_name(model_path.name.removesuffix(".keras") + ".kerafine.json")


def _evaluate(args) -> int:
    _quiet_tensorflow()
    from kerafine._io import atomic_write_text, read_json

    model_path, data_path = Path(args.model), Path(args.data)
    if not model_path.is_file():
        raise invalid_argument("MODEL", os.fspath(model_path), "an existing .keras file")
    sidecar = _sidecar(model_path)
    if not sidecar.is_file():
        raise invalid_argument("MODEL", os.fspath(model_path), f"a model written by `kerafine fit`, with {sidecar.name} "
                               "beside it", "That file records the columns and windows the model was trained on.")
    spec = read_json(sidecar)
    robustness = None
    if args.robustness is not None:
        from kerafine.security.robustness import check_epsilons

        robustness = check_epsilons(_parse_floats(args.robustness, "--robustness"), "--robustness")
    x, y = _load_labelled(spec, data_path)
    membership = None
    if args.membership_train is not None:
        membership = (_load_labelled(spec, Path(args.membership_train), "--membership-train"), (x, y))
    from kerafine.evaluation import evaluate

    model = _load_model(model_path)
    report = evaluate(model, (x, y), robustness=robustness, membership=membership)
    print(report)
    if args.json:
        atomic_write_text(args.json, report.to_json() + "\n")
        print(f"\nWrote {args.json}")
    return 0


def _parse_floats(text: str, argument: str) -> list:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise invalid_argument(argument, text, "numbers separated by commas, e.g. 1,2,4") from None


def _load_labelled(spec: dict, data_path: Path, argument: str = "DATA"):
    """``(x, y)`` of labelled data in the form the model described by ``spec`` was trained on."""
    if spec.get("kind") == "server_metrics":
        import warnings

        from kerafine.data import Normalizer, load_server_metrics

        names = ("cpu", "memory", "diskio", "uptime", "failures")
        if not data_path.is_dir():
            raise invalid_argument(argument, os.fspath(data_path), "a directory holding " + ", ".join(f"{n}.csv" for n in names),
                                   "This model reads server metrics.")
        missing = [f"{n}.csv" for n in names if not (data_path / f"{n}.csv").is_file()]
        if missing:
            raise invalid_argument(argument, os.fspath(data_path), "a directory holding " + ", ".join(f"{n}.csv" for n in names),
                                   f"Missing: {', '.join(missing)}.", error=DataError)
        m = load_server_metrics(**{n: data_path / f"{n}.csv" for n in names}, freq=spec["freq"],
                                horizon=spec["horizon"], max_gap=spec["max_gap"])
        _same_columns(list(m.features), spec["features"], data_path, argument=argument)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            x, y = m.windows(spec["window"], stride=spec["stride"], normalizer=Normalizer.from_dict(spec["normalizer"]))
    else:
        import pandas as pd

        from kerafine.data import load_tabular

        try:
            header = list(pd.read_csv(data_path, nrows=0).columns)
        except (OSError, ValueError) as exc:
            raise invalid_argument(argument, os.fspath(data_path), "a readable CSV file", str(exc), error=DataError) from None
        _same_columns(header, spec["numeric"] + spec["categorical"] + [spec["label"]], data_path, extra_ok=True,
                      argument=argument)
        t = load_tabular(data_path, spec["label"], numeric=spec["numeric"], categorical=spec["categorical"])
        x, y = t.x, t.y
    return x, y


def _same_columns(found: list, trained: list, data_path: Path, extra_ok: bool = False, argument: str = "DATA") -> None:
    missing = [c for c in trained if c not in found]
    extra = [c for c in found if c not in trained]
    if missing or (extra and not extra_ok):
        detail = []
        if missing:
            detail.append(f"missing {missing}")
        if extra and not extra_ok:
            detail.append(f"not seen in training {extra}")
        raise DataError(
            f"Invalid value for argument `{argument}`: {os.fspath(data_path)!r} has other columns than the model was trained "
            f"on ({'; '.join(detail)}); the model expects {trained}, the data has {found}."
        )


def _drift_paths(args) -> tuple[str, str]:
    """REFERENCE and CURRENT from ``--reference``/``--current``, positionals filling what the flags leave open."""
    positionals = [p for p in (args.reference_pos, args.current_pos) if p is not None]
    paths = {}
    for name in ("reference", "current"):
        value = getattr(args, name)
        if value is None and positionals:
            value = positionals.pop(0)
        if value is None:
            raise KerafineError(f"Missing argument `--{name}`: expected a path, e.g. `kerafine drift "
                                f"--reference REF.csv --current CUR.csv`.")
        paths[name] = value
    if positionals:
        raise KerafineError(
            f"Invalid value for argument `--current`: received {paths['current']!r} and also {positionals[0]!r}; "
            "expected two paths in all (a reference and a current file)."
        )
    return paths["reference"], paths["current"]


def _drift(args) -> int:
    run = _optional("kerafine.drift._command", "run")
    if run is None:
        raise KerafineError("`kerafine drift` needs kerafine.drift._command, which is not installed.")
    reference, current = _drift_paths(args)
    return int(run(reference, current, categorical=args.categorical, json_path=args.json,
                   p_value=args.p_value, correction=args.correction, min_effect=args.min_effect, top=args.top))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
