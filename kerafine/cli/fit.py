"""``kerafine fit``, ``kerafine init-config`` and ``kerafine evaluate``."""

from __future__ import annotations

import argparse
import os
import textwrap
import time
from pathlib import Path

from kerafine.cli._common import (
    _callbacks,
    _check_run_dir,
    _collect_warnings,
    _Console,
    _load_model,
    _predict,
    _pretrain,
    _quiet_tensorflow,
    _save_model_atomically,
    _scores,
    _sequence_encoder,
    _sidecar,
    _train,
    _transfer_model,
)
from kerafine.errors import DataError, invalid_argument


def _init_config(args) -> int:
    from kerafine._io import atomic_write_text
    from kerafine.config import EXAMPLE_CONFIG

    path = Path(args.path)
    if path.exists() and not args.force:
        raise invalid_argument(
            "PATH", os.fspath(path), "a path that does not exist yet", "Pass --force to overwrite it."
        )
    if path.parent and not path.parent.exists():
        raise invalid_argument("PATH", os.fspath(path), "a path in an existing directory")
    atomic_write_text(path, EXAMPLE_CONFIG)
    print(f"Wrote {path}. Edit the paths under `data:` and run: kerafine fit {path}")
    return 0


def _fit_data(cfg, con: _Console) -> dict:
    """Load and split the data a config names (:func:`kerafine.data._spec.load_config_data`), with progress lines."""
    from kerafine.data._spec import load_config_data

    data = load_config_data(cfg.data, say=con.step)
    for note in data["notes"]:
        con.note(note)
    return data


def _fit_backbone(cfg, data: dict, out: Path, con: _Console, verbose: int):
    """The backbone, pretrained when asked; a sequence encoder is saved to ``encoder.keras`` for resumes."""

    b = cfg.backbone
    if b.name == "tabular":
        from kerafine.backbones import tabular_encoder

        spec = data["spec"]
        return lambda: tabular_encoder(
            spec["numeric"], spec["categorical"], hidden=tuple(b.units), data=data["train"][0]
        )
    enc_path = out / "encoder.keras"
    if b.weights is not None:
        if not Path(b.weights).is_file() or Path(b.weights).suffix != ".keras":
            raise invalid_argument("backbone.weights", os.fspath(b.weights), "an existing .keras file")
        # The file is the encoder itself (e.g. the encoder.keras of an earlier run), used whole:
        # `backbones.from_model` would cut its last layer off as an old head.
        try:
            enc = _load_model(b.weights)
        except Exception as exc:  # Keras raises many types for a file it cannot read
            raise invalid_argument(
                "backbone.weights",
                os.fspath(b.weights),
                "a .keras encoder Keras can load",
                f"Loading it failed: {str(exc)[:300]}",
            ) from None
        want = tuple(data["shape"])
        got = tuple(enc.input.shape[1:])
        if got != want:
            raise invalid_argument(
                "backbone.weights",
                os.fspath(b.weights),
                f"an encoder taking windows of shape {want} (window, features)",
                f"It takes {got}.",
            )
        _save_model_atomically(enc, enc_path)
    elif enc_path.exists():
        con.step(f"Encoder found: {enc_path} (pretrained in an earlier run)")
    else:
        enc = _sequence_encoder(data["shape"][0], data["shape"][1], b.name, tuple(b.units))
        if b.pretrain_epochs:
            con.step(
                f"Pretraining the {b.name.upper()} encoder self-supervised on {len(data['pretrain_x'])} "
                f"training windows ({b.pretrain_epochs} epochs)"
            )
            cbs, _ = _callbacks(
                x_train=None,
                x_val=None,
                y_val=None,
                log_dir=out / "logs" / "pretrain",
                ckpt_dir=out / "checkpoints" / "pretrain" if cfg.callbacks.checkpoint else None,
                patience=None,
                auc=False,
                drift=False,
                monitor=cfg.callbacks.monitor,
            )
            with _collect_warnings(con):
                _pretrain(enc, data["pretrain_x"], b.pretrain_epochs, cfg.schedule.batch_size, cbs, verbose)
        _save_model_atomically(enc, enc_path)

    def load():
        return _load_model(enc_path)

    return load


def _lr_search(cfg, data, make_backbone, out: Path, con: _Console) -> tuple[float, list]:
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
        con.step(
            f"Learning-rate search: {len(s.lr_search.candidates)} candidates x {s.lr_search.epochs} epoch(s) "
            "of head training, scored by validation ROC-AUC"
        )
        rows = []
        log_dir = out / "logs" / "lr_search"
        for i, lr in enumerate(s.lr_search.candidates):
            keras.utils.set_random_seed(cfg.seed)
            model = _transfer_model(make_backbone(), cfg.head.hidden, cfg.head.dropout)
            with _collect_warnings(con):
                _train(
                    model,
                    data["train"],
                    data["val"],
                    head_epochs=s.lr_search.epochs,
                    finetune_epochs=0,
                    head_lr=lr,
                    finetune_lr=lr,
                    batch_size=s.batch_size,
                    callbacks=[],
                    verbose=0,
                    class_weight=data["class_weight"],
                )
            score = _scores(data["val"][1], _predict(model, data["val"][0]))["roc_auc"]
            rows.append({"learning_rate": lr, "val_roc_auc": score})
            tensorboard.scalars(log_dir, {"lr_search/val_roc_auc": score, "lr_search/learning_rate": lr}, step=i)
            con.step(f"  lr {lr:g}: val ROC-AUC {score:.4f}")
        atomic_write_json(path, {"candidates": rows})
    import math

    best = max(rows, key=lambda r: r["val_roc_auc"] if not math.isnan(r["val_roc_auc"]) else -1.0)
    con.step(f"Best learning rate: {best['learning_rate']:g}")
    return float(best["learning_rate"]), rows


# Config keys left out of the run-directory comparison: they cannot change the trained model.
# `output_dir` is the directory itself; the drift and training monitors only warn and log.
IGNORED_KEYS = ("output_dir", "callbacks.drift", "callbacks.monitor")
# What a `fit` run writes in output_dir (deleted by --fresh; other files there are kept).
RUN_FILES = (
    "logs",
    "checkpoints",
    "encoder.keras",
    "lr_search.json",
    "model.keras",
    "model.kerafine.json",
    "report.json",
    "report.png",
)


def _fit(args) -> int:
    _quiet_tensorflow()
    from kerafine.config import load_config

    con = _Console()
    cfg = load_config(args.config)  # every field checked before any data is read
    out = Path(cfg.output_dir)
    resuming = _check_run_dir(
        out,
        cfg.model_dump(mode="json"),
        owned=RUN_FILES,
        ignored=IGNORED_KEYS,
        fresh=args.fresh,
        command=f"kerafine fit {args.config}",
        where="output_dir",
    )
    report_path = out / "report.json"
    if resuming and report_path.is_file():
        from kerafine._io import read_json

        con.print(f"{out} holds a finished run of this config (pass --fresh to train again):")
        _print_table(read_json(report_path), con)
        return 0
    con.step(f"kerafine fit {args.config}: output in {out}" + (" (resuming)" if resuming else ""))
    t_start = time.monotonic()
    data = _fit_data(cfg, con)
    data["class_weight"] = _class_weight(cfg, data, con)

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
    model = _transfer_model(make_backbone(), cfg.head.hidden, cfg.head.dropout)
    cb = cfg.callbacks
    spec = data["spec"]
    cbs, used = _callbacks(
        x_train=data["train"][0],
        x_val=data["val"][0],
        y_val=data["val"][1],
        log_dir=out / "logs" / "train",
        ckpt_dir=out / "checkpoints" / "train" if cb.checkpoint else None,
        patience=cb.early_stopping.patience if cb.early_stopping.enabled else None,
        auc=cb.auc,
        drift=cb.drift,
        features=spec.get("features"),
        categorical=spec.get("categorical"),
        monitor=cb.monitor,
    )

    con.step(
        f"Training: head {s.head_epochs} epochs at {lr:g}, then fine-tuning {s.finetune_epochs} epochs at "
        f"{ft_lr:g} (unfreeze: {s.unfreeze}); one run in {out / 'logs' / 'train'}"
    )
    with _collect_warnings(con):
        histories = _train(
            model,
            data["train"],
            data["val"],
            head_epochs=s.head_epochs,
            finetune_epochs=s.finetune_epochs,
            head_lr=lr,
            finetune_lr=ft_lr,
            unfreeze=s.unfreeze,
            batch_size=s.batch_size,
            callbacks=cbs,
            verbose=verbose,
            class_weight=data["class_weight"],
        )
    from kerafine.transfer import backbone_of

    model_path = out / "model.keras"
    _save_model_atomically(model, model_path)
    atomic_write_json(_sidecar(model_path), spec)

    from kerafine.evaluation import evaluate

    reports = {name: evaluate(model, data[name]) for name in ("val", "test")}
    fig = reports["test"].plot()
    fig.savefig(out / "report.png", dpi=90)
    tensorboard.figure(
        out / "logs" / "train", "report/test", fig, step=s.head_epochs + s.finetune_epochs, close_figure=False
    )
    report = {
        "config": cfg.model_dump(mode="json"),
        "data": {
            k: {"rows": int(len(data[k][1])), "positives": int(data[k][1].sum())} for k in ("train", "val", "test")
        },
        "learning_rate": lr,
        "finetune_learning_rate": ft_lr,
        "lr_search": search,
        "class_weight": None if data["class_weight"] is None else {str(k): v for k, v in data["class_weight"].items()},
        "history": histories,
        "callbacks": sorted(used),
        # What `schedule.unfreeze` left trainable in the backbone for the fine-tuning phase.
        "trainable_backbone_layers": [layer.name for layer in backbone_of(model).layers if layer.trainable_weights],
        "val": reports["val"].to_dict(),
        "test": reports["test"].to_dict(),
        "artifacts": {
            "model": "model.keras",
            "spec": _sidecar(model_path).name,
            "figure": "report.png",
            "logs": "logs",
            **({"checkpoints": "checkpoints"} if cb.checkpoint else {}),
        },
        "seconds": round(time.monotonic() - t_start, 1),
    }
    atomic_write_json(report_path, report)
    con.print()
    _print_table(report, con)
    con.print(f"\nWrote {model_path}, {report_path}, {out / 'report.png'}")
    con.print(f"TensorBoard: tensorboard --logdir {out / 'logs'}")
    return 0


def _class_weight(cfg, data: dict, con: _Console):
    """``schedule.class_weight`` checked against the training labels (``balanced`` computed), before training."""
    from kerafine.data.labels import resolve_class_weight

    cw = resolve_class_weight(cfg.schedule.class_weight, data["train"][1], argument="schedule.class_weight")
    if cw is not None:
        con.step("Class weights: " + ", ".join(f"{k}: {v:.4g}" for k, v in sorted(cw.items())))
    return cw


def _print_table(report: dict, con) -> None:
    con.print(f"{'split':<6}{'ROC-AUC':>9}{'PR-AUC':>9}{'rows':>8}{'positives':>11}")
    for k in ("val", "test"):
        con.print(
            f"{k:<6}{report[k]['roc_auc']:>9.4f}{report[k]['pr_auc']:>9.4f}{report['data'][k]['rows']:>8}"
            f"{report['data'][k]['positives']:>11}"
        )


def _evaluate(args) -> int:
    _quiet_tensorflow()
    from kerafine._io import atomic_write_text, read_json

    model_path = Path(args.model)
    if not model_path.is_file():
        raise invalid_argument("MODEL", os.fspath(model_path), "an existing .keras file")
    sidecar = _sidecar(model_path)
    if not sidecar.is_file():
        raise invalid_argument(
            "MODEL",
            os.fspath(model_path),
            f"a model written by `kerafine fit`, with {sidecar.name} beside it",
            "That file records the columns and windows the model was trained on.",
        )
    spec = read_json(sidecar)
    robustness = None
    if args.robustness is not None:
        from kerafine.security.robustness import check_epsilons

        robustness = check_epsilons(_parse_floats(args.robustness, "--robustness"), "--robustness")
    for name in ("json", "figure"):
        target = getattr(args, name)
        if target is not None and not Path(target).expanduser().resolve().parent.is_dir():
            raise invalid_argument(f"--{name}", target, "a path in an existing directory")
    source = _data_source(args, spec)
    train_source = None
    if args.membership_train is not None:
        train_source = args.membership_train
        if train_source in _SPLITS:
            if not isinstance(source, _Config):
                raise invalid_argument(
                    "--membership-train",
                    train_source,
                    "a path (CSV, directory or YAML config); a split name needs DATA to be a config",
                )
            train_source = _Config(source.data, train_source)
        else:
            train_source = _classify(Path(train_source), "--membership-train")
            if isinstance(train_source, _Config):
                from kerafine.data._spec import check_config_fits_model

                check_config_fits_model(spec, train_source.data, "--membership-train")
    x, y = _read_data(spec, source, args.split, "DATA")
    membership = None
    if train_source is not None:
        membership = (_read_data(spec, train_source, "train", "--membership-train"), (x, y))
    from kerafine.evaluation import evaluate

    model = _load_model(model_path)
    report = evaluate(model, (x, y), robustness=robustness, membership=membership, non_finite=args.non_finite)
    print(report)
    if args.json:
        atomic_write_text(args.json, report.to_json() + "\n")
        print(f"\nWrote {args.json}")
    if args.figure:
        report.plot().savefig(args.figure, dpi=80)
        print(f"Wrote {args.figure}")
    return 0


_SPLITS = ("train", "val", "test")


class _Config:
    """DATA given as a fit config: its ``data`` section and the split to read."""

    def __init__(self, data, split: str | None = None):
        self.data, self.split = data, split


def _classify(path: Path, argument: str):
    """A YAML config (its data section), or a path for :func:`kerafine.data._spec.load_files`."""
    if path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise invalid_argument(
                argument, os.fspath(path), "an existing YAML config", "No such file.", error=DataError
            )
        from kerafine.config import load_data_config

        return _Config(load_data_config(path, argument))
    if not path.exists():
        raise invalid_argument(
            argument,
            os.fspath(path),
            "an existing CSV file, directory of the five metric CSVs, or YAML config (as `kerafine fit` reads)",
            "No such file or directory.",
            error=DataError,
        )
    return path


def _data_source(args, spec: dict):
    """What DATA and the --cpu ... --failures options name, checked before anything is read."""
    from kerafine.data._spec import METRIC_FILES

    given = {n: getattr(args, n) for n in METRIC_FILES if getattr(args, n) is not None}
    if args.data is None and not given:
        raise invalid_argument(
            "DATA",
            None,
            "a CSV file, a directory of the five metric CSVs, a YAML config, "
            "or the files as --cpu, --memory, --diskio, --uptime and --failures",
        )
    if args.data is not None and given:
        raise invalid_argument(
            "--" + next(iter(given)),
            given[next(iter(given))],
            "no file option when DATA is given (DATA or --cpu ... --failures, not both)",
        )
    if given:
        if spec.get("kind") != "server_metrics":
            raise invalid_argument(
                "--" + next(iter(given)),
                given[next(iter(given))],
                "no metric file: this model reads a table (pass its CSV as DATA)",
            )
        missing = [f"--{n}" for n in METRIC_FILES if n not in given]
        if missing:
            raise invalid_argument(
                ", ".join(missing), None, "a CSV file for each of --cpu, --memory, --diskio, --uptime and --failures"
            )
        return {n: Path(v) for n, v in given.items()}
    source = _classify(Path(args.data), "DATA")
    if isinstance(source, _Config):
        from kerafine.data._spec import check_config_fits_model

        check_config_fits_model(spec, source.data, "DATA")
        source.split = args.split or "test"
    elif args.split is not None:
        raise invalid_argument("--split", args.split, "no --split unless DATA is a YAML config (a file is read whole)")
    return source


def _read_data(spec: dict, source, split, argument: str):
    from kerafine.data._spec import config_split, load_files

    if isinstance(source, _Config):
        return config_split(spec, source.data, source.split or split, argument)
    return load_files(spec, source, argument)


def _parse_floats(text: str, argument: str) -> list:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise invalid_argument(argument, text, "numbers separated by commas, e.g. 1,2,4") from None


def add_parsers(sub) -> None:
    """Register the command(s) of this module on the ``kerafine`` subparsers object ``sub``."""
    p = sub.add_parser(
        "fit",
        help="fine-tune a model described by a YAML config",
        description=textwrap.dedent("""\
            Read CONFIG.yaml (see `kerafine init-config`), validate every field, load the data, pick the learning
            rate by a short search on validation ROC-AUC, train in two phases (head, then fine-tuning) with
            checkpoints and monitors, and write to the config's output_dir: TensorBoard logs (logs/), checkpoints
            (checkpoints/), the final model (model.keras with model.kerafine.json beside it), report.json and
            report.png. Re-running the same config resumes from the last checkpoint (or reports the finished
            run); a config changed since the run in output_dir stops with exit status 2, listing each changed
            field: pass --fresh to start over there, or set another output_dir."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.yaml", help="the YAML configuration")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="discard the run in output_dir (made with this or another config) and start over",
    )
    p.add_argument("--quiet-fit", action="store_true", help="no per-epoch lines from Keras")
    p.set_defaults(func=_fit)

    p = sub.add_parser(
        "init-config",
        help="write a commented example config to start from",
        description="Write a commented example of the `kerafine fit` configuration.",
    )
    p.add_argument(
        "path",
        nargs="?",
        default="kerafine.yaml",
        metavar="PATH",
        help="where to write it (default: kerafine.yaml); an existing file is kept unless --force",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_init_config)

    p = sub.add_parser(
        "evaluate",
        help="evaluation report (ROC-AUC, PR-AUC, ...) of a model written by `kerafine fit`",
        description=textwrap.dedent("""\
            Evaluate MODEL.keras (written by `kerafine fit` or `kerafine demo`, with MODEL.kerafine.json beside it)
            on labelled data and print the report as a table; --json writes it as JSON too, --figure as a PNG.
            DATA takes the data specification `kerafine fit` takes:
              - a YAML config (a whole `kerafine fit` config, or a file holding only its `data:` section): the rows
                of its --split (default: test), split as `fit` splits them;
              - a CSV with the columns the model was trained on (a tabular model), or a directory holding cpu.csv,
                memory.csv, diskio.csv, uptime.csv and failures.csv (a server-metrics model);
              - or, instead of DATA, the five metric files as --cpu, --memory, --diskio, --uptime and --failures.
            Inputs are scaled with the model's own normaliser. Data that does not match the model (other columns,
            another window or sampling step) is refused before the model is loaded."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("data", metavar="DATA", nargs="?", help="a YAML config, a CSV or a directory of metric CSVs")
    p.add_argument("--split", choices=_SPLITS, help="with a config as DATA: the split to evaluate (default: test)")
    for name in ("cpu", "memory", "diskio", "uptime", "failures"):
        p.add_argument(
            f"--{name}", metavar="PATH", help=f"server metrics: the {name} CSV (with the other four, instead of DATA)"
        )
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.add_argument("--figure", metavar="PATH", help="also write the report's figure (PNG)")
    p.add_argument(
        "--robustness",
        metavar="EPS,EPS,...",
        help="add a PGD-10 robustness curve at these L-inf radii (model input units), e.g. 1,2,4",
    )
    p.add_argument(
        "--membership-train",
        metavar="PATH|SPLIT",
        help="add a membership-inference section: the training rows, in the same forms as DATA (a config "
        "gives its training split), or with a config as DATA the name of one of its splits "
        "(train, val, test); DATA's rows are the held-out ones",
    )
    p.add_argument(
        "--non-finite",
        choices=("raise", "exclude"),
        default="raise",
        help="rows of DATA whose inputs hold NaN or inf: refuse them (raise, the default) or evaluate the "
        "other rows and say in the report how many were left out (exclude)",
    )
    p.set_defaults(func=_evaluate)
