"""Logic of ``kerafine update RUN_DIR NEW_DATA`` and ``kerafine update RUN_DIR --rollback VERSION``.

``kerafine.cli`` only registers the subcommand (:func:`add_parser`); the
work is here. The steps, each resumable:

1. check the arguments and that ``NEW_DATA`` has the schema the run was
   trained on (exit 2 otherwise, naming the problem);
2. rebuild the run's data from its ``report.json`` (same split, same
   normalisation) and check ``NEW_DATA`` for drift against the run's reference
   profile (``RUN_DIR/reference_profile``, written on first use from the
   training windows);
3. train the candidates (``refresh``, ``retrain``, ``distil``, ``ensemble``)
   on the new labelled servers; each finished candidate is saved, an
   interrupted one resumes from its checkpoints (``CheckpointRestart``);
4. compare them with the current model on the old and the new test servers
   and :func:`kerafine.update.decide`; write ``comparison.json``,
   ``comparison.png`` and print the table;
5. on a positive decision, promote the champion as the next numbered version
   (``RUN_DIR/versions/vN/model.keras``; ``RUN_DIR/model.keras`` replaced
   atomically; older versions kept). ``--rollback N`` serves version N again.

Everything of one update lives in ``RUN_DIR/updates/<id>/``, ``<id>`` naming
the version updated and the new data, so re-running the same command after
Ctrl-C (or a kill) resumes it, and re-running it after it finished only
prints its result.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import textwrap
import time
import warnings
from pathlib import Path

from kerafine.errors import DataError, KerafineError, invalid_argument

__all__ = ["add_parser", "run", "rollback", "CANDIDATES"]

CANDIDATES = ("refresh", "retrain", "distil", "ensemble")
_METRIC_FILES = ("cpu", "memory", "diskio", "uptime", "failures")


# --------------------------------------------------------------------------- parser


def add_parser(sub) -> None:
    """Register ``update`` on the ``kerafine`` subparsers object ``sub``."""
    p = sub.add_parser(
        "update",
        help="update a model of `kerafine fit` on new data: candidates, comparison, promotion",
        description=textwrap.dedent("""\
            Check NEW_DATA for drift against the run's reference, train candidate replacements of the run's
            model on it (refresh: fine-tune on the new labels with a replay of the old; retrain: the same
            architecture from scratch on old + new; distil: a 4x smaller student of the refreshed model;
            ensemble: the current and the new models combined), compare them with the current model on the
            old and the new test servers (ROC-AUC with DeLong intervals, paired DeLong test) and promote a
            challenger that is significantly better on the new data and not worse than --margin on the old
            as the next model version. --rollback VERSION serves an earlier version again. Interrupt it with
            Ctrl-C and run the same command again to resume."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="output directory of `kerafine fit`")
    p.add_argument(
        "new_data",
        nargs="?",
        metavar="NEW_DATA",
        help="new labelled data: a directory of the five metric CSVs, or a CSV for a tabular run",
    )
    p.add_argument(
        "--candidates",
        default=",".join(CANDIDATES),
        metavar="LIST",
        help=f"comma-separated candidates among {','.join(CANDIDATES)} (default: all)",
    )
    p.add_argument("--rollback", type=int, metavar="VERSION", help="serve model version VERSION again and exit")
    p.add_argument("--epochs", type=int, default=6, help="training epochs of each candidate (default: 6)")
    p.add_argument(
        "--margin",
        type=float,
        default=0.01,
        help="largest ROC-AUC loss on the old test data a promoted model may have (default: 0.01)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="significance level of the paired DeLong test on the new data (default: 0.05)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the new data's split and of training (default: 0)")
    p.add_argument("--quiet-fit", action="store_true", help="no per-epoch lines from Keras")
    p.set_defaults(func=_main)


def _main(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.rollback is not None:
        if args.new_data is not None:
            raise invalid_argument(
                "NEW_DATA",
                args.new_data,
                "nothing with --rollback",
                "Roll back with `kerafine update RUN_DIR --rollback VERSION` alone.",
            )
        return rollback(args.run_dir, args.rollback)
    if args.new_data is None:
        raise KerafineError(
            "Missing argument `NEW_DATA`: expected the new labelled data, e.g. "
            "`kerafine update RUN_DIR data/fleet-c`, or --rollback VERSION."
        )
    return run(
        args.run_dir,
        args.new_data,
        candidates=args.candidates,
        epochs=args.epochs,
        margin=args.margin,
        alpha=args.alpha,
        seed=args.seed,
        verbose=0 if args.quiet_fit else 2,
    )


# --------------------------------------------------------------------------- validation


def _say(message: str, t0=[time.monotonic()]) -> None:  # noqa: B006, B008 (start time of the process)
    print(f"[{time.monotonic() - t0[0]:6.1f}s] {message}", flush=True)


def _check_candidates(value) -> list[str]:
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else list(value))]
    names = [n for n in names if n]
    if not names:
        raise invalid_argument("--candidates", value, f"a comma-separated list of {', '.join(CANDIDATES)}")
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        from kerafine.errors import did_you_mean

        raise invalid_argument(
            "--candidates",
            value,
            f"names among {', '.join(CANDIDATES)}",
            f"Unknown: {', '.join(unknown)}.{did_you_mean(unknown[0], CANDIDATES)}",
        )
    return [n for n in CANDIDATES if n in names]  # training order: refresh first (distil and ensemble use it)


def _check_run_dir(run_dir) -> Path:
    run = Path(run_dir)
    needed = ("report.json", "model.keras", "model.kerafine.json")
    if not run.is_dir() or any(not (run / n).is_file() for n in needed):
        raise invalid_argument(
            "RUN_DIR", os.fspath(run), "an output directory of `kerafine fit`, holding " + ", ".join(needed)
        )
    return run


def _check_number(name: str, value, low: float, high: float | None = None, integer: bool = False):
    bad = value is None or (integer and int(value) != value) or value < low or (high is not None and value >= high)
    if bad:
        rng = f">= {low}" + (f" and < {high}" if high is not None else "")
        raise invalid_argument(name, value, f"{'an int' if integer else 'a number'} {rng}")


def _load_new(spec: dict, path: Path):
    """``NEW_DATA`` read with the run's schema (``ServerMetrics`` or ``TabularData``), before any training."""
    if spec.get("kind") == "server_metrics":
        from kerafine.data import load_server_metrics

        if not path.is_dir():
            raise invalid_argument(
                "NEW_DATA",
                os.fspath(path),
                "a directory holding " + ", ".join(f"{n}.csv" for n in _METRIC_FILES),
                "This run reads server metrics.",
                error=DataError,
            )
        missing = [f"{n}.csv" for n in _METRIC_FILES if not (path / f"{n}.csv").is_file()]
        if missing:
            raise invalid_argument(
                "NEW_DATA",
                os.fspath(path),
                "a directory holding " + ", ".join(f"{n}.csv" for n in _METRIC_FILES),
                f"Missing: {', '.join(missing)}.",
                error=DataError,
            )
        m = load_server_metrics(
            **{n: path / f"{n}.csv" for n in _METRIC_FILES},
            freq=spec["freq"],
            horizon=spec["horizon"],
            max_gap=spec["max_gap"],
        )
        missing_cols = [c for c in spec["features"] if c not in m.features]
        if missing_cols:
            raise DataError(
                f"Invalid value for argument `NEW_DATA`: {os.fspath(path)!r} has other columns than the "
                f"run was trained on (missing {missing_cols}); the model expects {spec['features']}, "
                f"the data has {list(m.features)}."
            )
        return m
    import pandas as pd

    from kerafine.data import load_tabular

    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except (OSError, ValueError) as exc:
        raise invalid_argument("NEW_DATA", os.fspath(path), "a readable CSV file", str(exc), error=DataError) from None
    want = spec["numeric"] + spec["categorical"] + [spec["label"]]
    missing_cols = [c for c in want if c not in header]
    if missing_cols:
        raise DataError(
            f"Invalid value for argument `NEW_DATA`: {os.fspath(path)!r} has other columns than the run "
            f"was trained on (missing {missing_cols}); the model expects {want}, the data has {header}."
        )
    table = load_tabular(path, spec["label"], numeric=spec["numeric"], categorical=spec["categorical"])
    from kerafine import _finite

    found = _finite.scan({"columns": table.x})
    if found.count:
        # The candidates train on these rows: one of them would poison a model (and a finite loss may hide it).
        raise DataError(
            f"Invalid value for argument `NEW_DATA`: {os.fspath(path)!r}: {_finite.describe(found)}, CSV lines "
            f"{[i + 2 for i in found.first_rows()]}. Fix or remove these rows before updating the model."
        )
    return table


def _split_new(spec: dict, new, seed: int) -> dict:
    """New data split into train / val / test: by server for server metrics, at random for tables."""
    import numpy as np

    if spec.get("kind") == "server_metrics":
        from kerafine.data import Normalizer, split_by_group

        n = len(new.servers)
        if n < 4:
            raise invalid_argument(
                "NEW_DATA",
                f"{n} server(s)",
                "at least 4 servers (train, validation and test each need their own)",
                error=DataError,
            )
        splits = split_by_group(new, val=max(1, round(0.2 * n)) / n, test=max(1, round(0.4 * n)) / n, seed=seed)
        norm = Normalizer.from_dict(spec["normalizer"])  # the model's own input scaling, not refitted
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            parts = {
                k: getattr(splits, k).windows(
                    spec["window"], stride=spec["stride"], features=spec["features"], normalizer=norm
                )
                for k in ("train", "val", "test")
            }
    else:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(new))
        n_test, n_val = int(round(0.4 * len(new))), int(round(0.2 * len(new)))
        idx = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
        parts = {}
        for k, rows in idx.items():
            sub = new.take(np.sort(rows))
            parts[k] = (sub.x, sub.y)
    from kerafine import _finite

    for k, (x, y) in parts.items():
        found = _finite.scan({"inputs": x, "labels": y})
        if found.count:
            # Candidates train on the new data: a NaN window would poison them (and a finite loss may hide it).
            raise DataError(
                f"Invalid value for argument `NEW_DATA`: its {k} part (windows): {_finite.describe(found)}. "
                "Fix or remove the rows behind these windows before updating the model."
            )
        if len(y) == 0 or len(np.unique(y)) < 2:
            raise invalid_argument(
                "NEW_DATA",
                f"a {k} part with {len(y)} rows and {len(np.unique(y))} class(es)",
                "new data with failures (positives) and normal rows in each of train, validation and test",
                "Give more servers or a longer period.",
                error=DataError,
            )
    return parts


def _profile_rows(x):
    """Rows the drift profile sees: the last step of each window (server metrics), the rows (tables)."""
    import numpy as np

    x = np.asarray(x)
    return x[:, -1, :] if x.ndim == 3 else x


# --------------------------------------------------------------------------- versions


def _versions(run: Path) -> dict:
    from kerafine._io import read_json

    path = run / "versions.json"
    if path.is_file():
        return read_json(path)
    return {"current": 1, "versions": [{"version": 1, "source": "kerafine fit", "model": "model.keras"}]}


def _write_versions(run: Path, versions: dict) -> None:
    from kerafine._io import atomic_write_json

    atomic_write_json(run / "versions.json", versions)


def _copy_atomically(src: Path, dst: Path) -> None:
    from kerafine._io import fsync_dir

    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


def _ensure_first_version(run: Path) -> dict:
    """Keep the model of `kerafine fit` as version 1 before anything replaces it."""
    versions = _versions(run)
    v1 = run / "versions" / "v1" / "model.keras"
    if not v1.is_file():
        v1.parent.mkdir(parents=True, exist_ok=True)
        _copy_atomically(run / "model.keras", v1)
        versions["versions"][0]["model"] = "versions/v1/model.keras"
        _write_versions(run, versions)
    return versions


def _promote(run: Path, model_path: Path, record: dict) -> int:
    """Store ``model_path`` as the next version and serve it; returns the version number."""
    versions = _ensure_first_version(run)
    for v in versions["versions"]:
        if record.get("update") and v.get("update") == record["update"]:
            # Killed after promoting but before the update was marked done: promoted already.
            versions["current"] = v["version"]
            _write_versions(run, versions)
            return v["version"]
    number = max(v["version"] for v in versions["versions"]) + 1
    target = run / "versions" / f"v{number}" / "model.keras"
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_atomically(model_path, target)
    _copy_atomically(target, run / "model.keras")
    versions["versions"].append({"version": number, "model": f"versions/v{number}/model.keras", **record})
    versions["current"] = number
    _write_versions(run, versions)
    return number


def rollback(run_dir, version) -> int:
    """Serve model version ``version`` of ``run_dir`` again (atomically); returns the exit status 0.

    Raises:
        KerafineError: ``run_dir`` is not a run, or ``version`` is not one of its versions.
    """
    run = _check_run_dir(run_dir)
    versions = _versions(run)
    known = [v["version"] for v in versions["versions"]]
    if isinstance(version, bool) or not isinstance(version, int) or version not in known:
        raise invalid_argument("--rollback", version, f"one of the run's model versions {known}")
    entry = next(v for v in versions["versions"] if v["version"] == version)
    src = run / entry["model"]
    if entry["model"] == "model.keras" or not src.is_file():
        if version == versions["current"]:
            print(f"Version {version} is already served.")
            return 0
        raise invalid_argument(
            "--rollback", version, "a version whose model file is kept", f"{src} is missing.", error=KerafineError
        )
    _copy_atomically(src, run / "model.keras")
    versions["current"] = version
    _write_versions(run, versions)
    print(f"Serving model version {version} again ({entry.get('source', '')}): {run / 'model.keras'}")
    return 0


# --------------------------------------------------------------------------- the update


def _small_student(teacher, spec: dict):
    """A transfer model of the same kind with a quarter of the parameters or fewer."""
    import keras

    import kerafine
    from kerafine import backbones, heads

    if spec.get("kind") != "server_metrics":
        return None
    shape = tuple(teacher.inputs[0].shape[1:])
    budget = teacher.count_params() / 4
    for units in (16, 12, 8, 6, 4, 2):
        keras.utils.set_random_seed(0)
        student = kerafine.build_transfer_model(
            backbones.sequence_encoder(shape, units=(units,)), heads.classification(2), freeze="none"
        )
        if student.count_params() <= budget:
            return student
    return student


def run(
    run_dir,
    new_data,
    *,
    candidates=CANDIDATES,
    epochs: int = 6,
    margin: float = 0.01,
    alpha: float = 0.05,
    seed: int = 0,
    verbose: int = 2,
) -> int:
    """Run ``kerafine update``; returns the exit status (0; errors raise :class:`KerafineError`)."""
    names = _check_candidates(candidates)
    run = _check_run_dir(run_dir)
    _check_number("--epochs", epochs, 1, integer=True)
    _check_number("--margin", margin, 0.0)
    _check_number("--alpha", alpha, 1e-12, 1.0)
    new_path = Path(new_data)
    if not new_path.exists():
        raise invalid_argument("NEW_DATA", os.fspath(new_path), "an existing directory or CSV file", error=DataError)

    from kerafine._io import atomic_write_json, read_json
    from kerafine.cli._common import _console

    spec = read_json(run / "model.kerafine.json")
    report = read_json(run / "report.json")
    new = _load_new(spec, new_path)  # schema checked before any training
    versions = _versions(run)
    key = hashlib.sha256(f"{new_path.resolve()}|{','.join(names)}|{epochs}|{seed}|{margin}|{alpha}".encode())
    uid = f"from-v{versions['current']}-{key.hexdigest()[:10]}"
    work = run / "updates" / uid
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state = (
        read_json(state_path)
        if state_path.is_file()
        else {"new_data": os.fspath(new_path.resolve()), "candidates": names, "from_version": versions["current"]}
    )
    if state.get("done"):
        _say(f"This update finished earlier ({work}):")
        print(state["table"])
        print(state["decision"])
        return 0
    _say(f"kerafine update {run} with {new_path}: work in {work}")

    import numpy as np

    new_parts = _split_new(spec, new, seed)
    _say("Rebuilding the run's data from its report.json (same split and scaling)")
    old = _old_data(report)

    # Drift against the run's reference profile.
    from kerafine.drift import DriftDetector, ReferenceProfile

    prof_dir = run / "reference_profile"
    names_f = list(spec.get("features") or [f"f{i}" for i in range(_profile_rows(old["train"][0]).shape[1])])
    if prof_dir.is_dir():
        profile = ReferenceProfile.load(prof_dir)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            profile = ReferenceProfile.from_data(_profile_rows(old["train"][0]), feature_names=names_f)
        profile.save(prof_dir)
    x_new_all = np.concatenate([new_parts[k][0] for k in ("train", "val", "test")])
    drift = DriftDetector(profile).check(_profile_rows(x_new_all))
    drifted = [f.name for f in drift.features if f.drifted]
    _say(
        f"Drift against the run's reference: {'DETECTED' if drift.is_drift else 'none'}"
        + (f" ({', '.join(drifted)})" if drifted else "")
    )

    import keras

    import kerafine
    from kerafine.update import compare, decide, distill, ensemble, refresh

    cand_dir = work / "candidates"
    cand_dir.mkdir(exist_ok=True)
    current = kerafine.load_model(run / "model.keras")
    trained = {}
    x_tr, y_tr = new_parts["train"]
    val = new_parts["val"]

    def callbacks(name):
        from kerafine.callbacks import CheckpointRestart

        return [CheckpointRestart(os.fspath(work / "checkpoints" / name))]

    def saved(name, build):
        path = cand_dir / f"{name}.keras"
        if path.is_file():
            _say(f"  {name}: trained in an earlier run, loading {path.name}")
            return kerafine.load_model(path)
        _say(f"  {name}: training")
        keras.utils.set_random_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = build()
        tmp = path.with_name(f".{name}.tmp-{os.getpid()}.keras")
        model.save(tmp)
        os.replace(tmp, path)
        return model

    _say(f"Training candidates {', '.join(names)} on {len(y_tr)} new windows ({int(y_tr.sum())} positive)")
    if "refresh" in names:

        def build_refresh():
            m = kerafine.load_model(run / "model.keras")
            return refresh(
                m,
                (x_tr, y_tr),
                replay=old["train"],
                replay_fraction=0.3,
                validation_data=val,
                epochs=epochs,
                learning_rate=float(report.get("finetune_learning_rate") or 1e-4) * 3,
                callbacks=callbacks("refresh"),
                batch_size=64,
                seed=seed,
                verbose=verbose,
            ).model

        trained["refresh"] = saved("refresh", build_refresh)
    if "retrain" in names:

        def build_retrain():
            m = keras.models.clone_model(current)  # the same architecture, fresh weights
            for layer in m.layers:
                layer.trainable = True
            x = np.concatenate([old["train"][0], x_tr])
            y = np.concatenate([old["train"][1], y_tr])
            m.compile(
                optimizer=keras.optimizers.Adam(float(report.get("learning_rate") or 1e-3)), loss="binary_crossentropy"
            )
            m.fit(
                x,
                y,
                epochs=2 * epochs,
                batch_size=64,
                validation_data=val,
                callbacks=_console(callbacks("retrain"), verbose),
                verbose=0,
            )
            return m

        trained["retrain"] = saved("retrain", build_retrain)
    if "distil" in names:
        teacher = trained.get("refresh", current)
        student = _small_student(teacher, spec)
        if student is None:
            _say("  distil: skipped (a student architecture is only defined for server-metrics runs)")
        else:

            def build_distil():
                from kerafine.update import replay_mix

                x, y, _ = replay_mix((x_tr, y_tr), old["train"], 0.3, seed)
                return distill(
                    teacher,
                    student,
                    (x, y),
                    temperature=3.0,
                    alpha=0.5,
                    validation_data=val,
                    epochs=2 * epochs,
                    learning_rate=3e-3,
                    batch_size=64,
                    callbacks=_console(callbacks("distil"), verbose),
                    verbose=0,
                )

            trained["distil"] = saved("distil", build_distil)
    if "ensemble" in names:
        members = [current] + [trained[k] for k in ("refresh", "retrain") if k in trained]
        if len(members) < 2:
            _say("  ensemble: skipped (needs refresh or retrain among the candidates)")
        else:
            trained["ensemble"] = saved("ensemble", lambda: ensemble(members, "weighted", validation_data=val))

    _say("Comparing on the old and the new test servers")
    comparison = compare(
        {"current": current, **trained}, {"old": old["test"], "new": new_parts["test"]}, current="current"
    )
    decision = decide(comparison, new="new", old="old", alpha=alpha, margin=margin)
    comparison.to_json(work / "comparison.json")
    fig = comparison.plot()
    fig.savefig(work / "comparison.png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    table = str(comparison)
    print()
    print(table)
    print()
    print(decision.text)
    result = {
        "drift": {"is_drift": bool(drift.is_drift), "features": drifted},
        "decision": decision.to_dict(),
        "comparison": comparison.to_dict(),
    }
    if decision.promote:
        row = comparison.row(decision.champion, "new")
        record = {
            "source": f"kerafine update ({decision.champion})",
            "update": uid,
            "new_roc_auc": row["roc_auc"],
            "p_value": row["p_value"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        number = _promote(run, cand_dir / f"{decision.champion}.keras", record)
        result["promoted_version"] = number
        print(
            f"\nPromoted {decision.champion!r} as model version {number}: {run / 'model.keras'} "
            f"(roll back with `kerafine update {run} --rollback {versions['current']}`)"
        )
    else:
        print("\nThe current model keeps serving.")
    atomic_write_json(work / "result.json", result)
    state.update(done=True, table=table, decision=decision.text)
    atomic_write_json(state_path, state)
    print(f"Comparison: {work / 'comparison.json'}, {work / 'comparison.png'}")
    return 0


def _old_data(report: dict) -> dict:
    """The run's train / val / test arrays, rebuilt from the config in its report.json."""
    from kerafine.config import FitConfig

    # The loader `kerafine fit` ran (kerafine.data._spec), so the split and scaling match the run.
    from kerafine.data._spec import load_config_data

    cfg = FitConfig.model_validate(report["config"])
    return load_config_data(cfg.data)
