"""``kerafine demo``: pretrain an LSTM on a simulated fleet, fine-tune on few labels, compare with from-scratch."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from kerafine.cli._common import (
    _callbacks,
    _check_run_dir,
    _collect_warnings,
    _Console,
    _load_model,
    _predict,
    _quiet_tensorflow,
    _save_model_atomically,
    _scores,
    _sequence_encoder,
    _sidecar,
    _train,
    _transfer_model,
)

DEFAULT_DEMO_DIR = "kerafine-demo"
# What a demo run writes in --out (deleted by --fresh).
DEMO_FILES = ("data", "models", "checkpoints", "logs", "results.json", "demo.json", "fleet-b.yaml")
# The demo's labelled data and its split as the `data:` section of a `kerafine fit` config, for
# `kerafine evaluate models/finetuned.keras fleet-b.yaml` (the test split by default).
DEMO_DATA_CONFIG = """\
# Fleet B as `kerafine demo` read and split it: the data section of a `kerafine fit` config.
# kerafine evaluate models/finetuned.keras fleet-b.yaml [--split train|val|test]
data:
  kind: server_metrics
  cpu: data/fleet-b/cpu.csv
  memory: data/fleet-b/memory.csv
  diskio: data/fleet-b/diskio.csv
  uptime: data/fleet-b/uptime.csv
  failures: data/fleet-b/failures.csv
  freq: 1min
  horizon: {horizon}
  max_gap: 3
  window: {window}
  stride: {stride}
  split:
    by: server
    val: {val!r}     # {b_val} servers
    test: {test!r}   # the rest: {b_test} servers (training: {b_train})
    seed: {seed}
"""

_DEMO_SIZES = {
    # Fleet sizes (servers x one-minute steps), servers of fleet B labelled for training and validation
    # (the rest is the test set), window stride, and epochs of each phase. The from-scratch model gets
    # as many epochs as the two fine-tuning phases together.
    "full": dict(
        a_servers=16,
        b_servers=20,
        steps=2880,
        b_train=2,
        b_val=3,
        stride=2,
        window=32,
        pretrain_epochs=4,
        head_epochs=6,
        finetune_epochs=3,
        scratch_epochs=9,
    ),
    "quick": dict(
        a_servers=10,
        b_servers=14,
        steps=2400,
        b_train=2,
        b_val=3,
        stride=3,
        window=32,
        pretrain_epochs=3,
        head_epochs=5,
        finetune_epochs=2,
        scratch_epochs=7,
    ),
}


def _demo(args) -> int:
    _quiet_tensorflow()
    con = _Console()
    size = _DEMO_SIZES["quick" if args.quick else "full"]
    out = Path(args.out).expanduser()
    from kerafine._io import atomic_write_json, atomic_write_text, check_writable_directory

    check_writable_directory(out, "--out")
    settings = {"size": "quick" if args.quick else "full", "seed": args.seed, "version": 2}
    command = "kerafine demo" + (" --quick" if args.quick else "") + (f" --seed {args.seed}" if args.seed else "")
    if args.out != DEFAULT_DEMO_DIR:
        command += f" --out {args.out}"
    if _check_run_dir(out, settings, owned=DEMO_FILES, fresh=args.fresh, command=command, where="--out"):
        con.step(f"Resuming the demo in {out} (completed stages are skipped).")
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

    with warnings.catch_warnings():
        # Stretches between long outages shorter than a window are expected in the simulation.
        warnings.simplefilter("ignore", UserWarning)
        a = load_server_metrics(
            **{k: v for k, v in fleets["A"].items() if k != "failures"}, freq="1min", horizon=horizon
        )  # unlabelled: the failures file is not read
        b = load_server_metrics(**fleets["B"], freq="1min", horizon=horizon)
        con.step(f"Fleet A (unlabelled, for pretraining): {a.summary()}")
        con.step(f"Fleet B (labelled): {b.summary()}")
        n_b = len(b.servers)
        splits = split_by_group(
            b, val=size["b_val"] / n_b, test=(n_b - size["b_train"] - size["b_val"]) / n_b, seed=args.seed
        )
        features = ("cpu", "memory", "diskio")
        splits, norm_b = splits.normalized(features)
        atomic_write_text(
            out / "fleet-b.yaml",
            DEMO_DATA_CONFIG.format(
                horizon=horizon,
                window=window,
                stride=stride,
                val=size["b_val"] / n_b,
                test=(n_b - size["b_train"] - size["b_val"]) / n_b,
                b_val=size["b_val"],
                b_test=n_b - size["b_train"] - size["b_val"],
                b_train=size["b_train"],
                seed=args.seed,
            ),
        )
        from kerafine.data import Normalizer

        # Fleet A has no failure labels, but its telemetry shows every reboot (uptime drops). The
        # pretraining target "does this server reboot within the next 30 minutes?" comes from the
        # data itself; failures are among those reboots, planned ones are noise the encoder learns
        # to live with.
        a = load_server_metrics(
            **{k: v for k, v in fleets["A"].items() if k != "failures"},
            failures=a.restarts,
            freq="1min",
            horizon=horizon,
        )
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
        con.step(
            f"Pretraining the LSTM encoder on fleet A ({size['pretrain_epochs']} epochs): no failure labels, "
            f"the target is 'reboot within {horizon} min' read from the uptime series "
            f"({int(ya.sum())} of {len(ya)} windows)"
        )
        encoder = _sequence_encoder(window, xa.shape[-1], "lstm", (32,))
        proxy = _transfer_model(encoder, ())
        cbs, _ = _callbacks(
            x_train=None,
            x_val=None,
            y_val=None,
            log_dir=logs / "pretrain",
            ckpt_dir=ckpts / "pretrain",
            patience=None,
            auc=False,
            monitor=True,
        )
        with _collect_warnings(con):
            _train(
                proxy,
                (xa, ya),
                None,
                head_epochs=0,
                finetune_epochs=size["pretrain_epochs"],
                head_lr=3e-3,
                finetune_lr=3e-3,
                unfreeze="all",
                batch_size=128,
                callbacks=cbs,
                verbose=verbose,
            )
        _save_model_atomically(encoder, enc_path)

    results = {}
    used_callbacks = set()
    n_features = xa.shape[-1]

    def train_model(name: str, model, **schedule):
        path = models_dir / f"{name}.keras"
        if path.exists():
            con.step(f"Model {name!r} already trained: {path}")
            return _load_model(path)
        cbs, used = _callbacks(
            x_train=xtr,
            x_val=xv,
            y_val=yv,
            log_dir=logs / name,
            ckpt_dir=ckpts / name,
            patience=4,
            drift=True,
            features=features,
        )
        used_callbacks.update(used)
        if schedule["head_epochs"]:
            con.step(
                f"  {name}: head {schedule['head_epochs']} epochs at {schedule['head_lr']:g}, then "
                f"{schedule['finetune_epochs']} epochs at {schedule['finetune_lr']:g} (as `kerafine fit` does)"
            )
        else:
            con.step(f"  {name}: every layer, {schedule['finetune_epochs']} epochs at {schedule['finetune_lr']:g}")
        with _collect_warnings(con):
            _train(model, (xtr, ytr), (xv, yv), batch_size=64, callbacks=cbs, verbose=verbose, **schedule)
        _save_model_atomically(model, path)
        # What `kerafine evaluate models/<name>.keras fleet-b.yaml` needs to rebuild the windows.
        atomic_write_json(
            _sidecar(path),
            {
                "kind": "server_metrics",
                "features": list(features),
                "window": window,
                "stride": stride,
                "freq": "1min",
                "horizon": horizon,
                "max_gap": 3,
                "normalizer": norm_b.to_dict(),
            },
        )
        return model

    with warnings.catch_warnings():
        # An LSTM unit that stays saturated on the reference windows is expected, not news.
        warnings.filterwarnings("ignore", message=".*are constant in the reference.*")
        con.step("Fine-tuning on fleet B: the head with the encoder frozen, then the whole model")
        finetuned = train_model(
            "finetuned",
            _transfer_model(encoder, (), dropout=0.2),
            head_epochs=size["head_epochs"],
            head_lr=1e-2,
            finetune_epochs=size["finetune_epochs"],
            finetune_lr=3e-4,
            unfreeze="all",
        )
        con.step("Training the same model from scratch on the same labels")
        keras.utils.set_random_seed(args.seed)
        scratch = train_model(
            "scratch",
            _transfer_model(_sequence_encoder(window, n_features, "lstm", (32,)), (), dropout=0.2),
            head_epochs=0,
            head_lr=3e-3,
            finetune_epochs=size["scratch_epochs"],
            finetune_lr=3e-3,
            unfreeze="all",
        )

    for name, model in (("fine-tuned", finetuned), ("from scratch", scratch)):
        results[name] = {"val": _scores(yv, _predict(model, xv)), "test": _scores(yt, _predict(model, xt))}
    atomic_write_json(
        out / "results.json", {"settings": settings, "results": results, "callbacks": sorted(used_callbacks)}
    )

    con.print()
    con.print(_results_table(results))
    gain = results["fine-tuned"]["test"]["roc_auc"] - results["from scratch"]["test"]["roc_auc"]
    con.print(
        f"\nPretraining on the unlabelled fleet {'gains' if gain > 0 else 'loses'} "
        f"{abs(gain):.3f} test ROC-AUC with {int(ytr.sum())} labelled positive windows."
    )
    if used_callbacks:
        con.print(f"Callbacks used: {', '.join(sorted(used_callbacks))}.")
    con.print(f"Results: {out / 'results.json'}")
    con.print(
        f"Evaluate a model on the test servers: kerafine evaluate {models_dir / 'finetuned.keras'} "
        f"{out / 'fleet-b.yaml'}"
    )
    con.print(f"\nOpen the training curves in TensorBoard:\n  tensorboard --logdir {logs}")
    con.step("Done.")
    return 0


def _results_table(results: dict) -> str:
    rows = [f"{'model':<14}{'val ROC-AUC':>13}{'val PR-AUC':>12}{'test ROC-AUC':>14}{'test PR-AUC':>13}"]
    for name, r in results.items():
        rows.append(
            f"{name:<14}{r['val']['roc_auc']:>13.3f}{r['val']['pr_auc']:>12.3f}"
            f"{r['test']['roc_auc']:>14.3f}{r['test']['pr_auc']:>13.3f}"
        )
    return "\n".join(rows)


def add_parser(sub) -> None:
    """Register the command(s) of this module on the ``kerafine`` subparsers object ``sub``."""
    p = sub.add_parser(
        "demo",
        help="pretrain an LSTM on a simulated fleet, fine-tune on few labels, compare with from-scratch",
        description=textwrap.dedent("""\
            Generate two simulated server fleets (no download), pretrain an LSTM encoder self-supervised on the
            unlabelled fleet A, fine-tune it on a few labelled servers of fleet B (checkpoints, early stopping on
            validation ROC-AUC, drift and training monitors), train the same model from scratch on the same labels,
            and print validation/test ROC-AUC and PR-AUC of both. Interrupt it with Ctrl-C and run the same command
            again to resume. Takes about a minute and a half on two CPU cores (--quick: less)."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        default=DEFAULT_DEMO_DIR,
        metavar="DIR",
        help=f"output directory: data, models, checkpoints, TensorBoard logs (default: ./{DEFAULT_DEMO_DIR})",
    )
    p.add_argument("--quick", action="store_true", help="smaller fleets and fewer epochs (used by the test suite)")
    p.add_argument("--fresh", action="store_true", help="discard a previous run in --out instead of resuming it")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated fleets and of training (default: 0)")
    p.add_argument("--quiet-fit", action="store_true", help="no per-epoch lines from Keras")
    p.set_defaults(func=_demo)
