"""Does pretraining the sequence encoder help on real metric series? (issue 17)

Data: the NAB development subset (23 real series in three groups: road traffic,
ad-exchange prices, tweet counts, with NAB's labelled anomaly windows), read from
``../shared/data/nab-dev`` beside the repository (or ``--data DIR``, or the
``KERAFINE_NAB_DEV`` environment variable). Nothing is copied into the repository.

Protocol, per group and seed (the seed draws the split, the initial weights and the
shuffling):

1. The group's series are shuffled; the first ``n_test`` are the **test series**
   (never seen in any way before scoring), the rest is the **pool**.
2. The encoder (``kerafine.backbones.sequence_encoder``) is pretrained
   self-supervised (``pretrain_sequence_encoder``) on the windows of every pool
   series, **without labels**.
3. For each label budget ``b`` (1, 2, 4 series) the first ``b`` pool series are the
   labelled series. On their windows we train
   - **pretrained**: the pretrained encoder + a sigmoid head, with
     ``kerafine.fine_tune`` (head on the frozen encoder, then the unfrozen encoder);
   - **scratch**: the same architecture from random weights, ``model.fit`` for the
     same total number of epochs;
   - **hgb** / **logreg**: scikit-learn's ``HistGradientBoostingClassifier`` and
     ``LogisticRegression`` on window statistics (level, spread, trend, recent
     change), what a practitioner would try first.
4. Every model scores the same windows of the test series: exact ROC-AUC with a
   DeLong interval and PR-AUC (``kerafine.metrics``), and the **paired** DeLong test
   (same rows, correlated AUCs) of pretrained against each of the others.

The target of a window is "is the next step inside a NAB anomaly window". A
window is ``--window`` steps of the series normalised per series (robust: median
and IQR of that series, no labels involved). Tweet counts (5-minute bins, 15,800
steps) are averaged to hourly bins, as the ad-exchange series are, so a window sees
about two days.

Choosing the recipe without touching the test series: ``--evaluate validation``
scores on the pool series that are *not* labelled (budgets smaller than the pool
only); the test series are then not even loaded into a model.

kerafine.metrics has no paired DeLong test on this branch (one is being added on
another branch), so ``_paired_delong`` below implements it (DeLong, DeLong &
Clarke-Pearson 1988, structural components from mid-ranks).

Caveat printed with the table: test windows of one series are autocorrelated and
NAB anomaly windows are long runs of positives, so DeLong's independence
assumption does not hold and its intervals and p-values are optimistic; the
across-seed spread is the more honest measure of uncertainty.

Run: python benchmarks/transfer_real.py [--quick] [--data DIR] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# group -> (NAB folder, steps averaged into one, number of test series)
GROUPS = {
    "traffic": ("realTraffic", 1, 3),
    "adexchange": ("realAdExchange", 1, 2),
    "tweets": ("realTweets", 12, 4),
}
MODELS = ("pretrained", "scratch", "hgb", "logreg")


def default_data_dir() -> Path:
    env = os.environ.get("KERAFINE_NAB_DEV")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nab-dev"


@dataclass
class Series:
    name: str
    values: np.ndarray  # float64, raw
    labels: np.ndarray  # int8, 1 inside a NAB anomaly window


def load_group(root: Path, group: str) -> list[Series]:
    import pandas as pd

    folder, factor, _ = GROUPS[group]
    windows = json.loads((root / "combined_windows.json").read_text())
    out = []
    for path in sorted((root / "data" / folder).glob("*.csv")):
        frame = pd.read_csv(path)
        stamps = pd.to_datetime(frame["timestamp"])
        values = frame["value"].to_numpy(dtype=np.float64)
        labels = np.zeros(len(values), dtype=np.int8)
        for start, end in windows[f"{folder}/{path.name}"]:
            labels |= ((stamps >= pd.Timestamp(start)) & (stamps <= pd.Timestamp(end))).to_numpy()
        if factor > 1:
            n = len(values) // factor * factor
            values = values[:n].reshape(-1, factor).mean(axis=1)
            labels = labels[:n].reshape(-1, factor).max(axis=1)
        out.append(Series(path.stem, values, labels))
    return out


def cut(series: Series, args, stride: int, how: str, reference: tuple[float, float] | None = None):
    """Windows and labels of one series. ``how="series"``: kerafine's per-series robust
    z-scores (``sliding_windows(normalize="robust")``); ``"global"``: z-scores with the
    pooled mean and std of the pretraining series (``reference``), clipped alike."""
    from kerafine.data import sliding_windows

    if how == "series":
        return sliding_windows(
            series.values, window=args.window, horizon=1, stride=stride, labels=series.labels, normalize="robust"
        )
    centre, scale = reference
    z = np.clip((series.values - centre) / scale, -10.0, 10.0)
    return sliding_windows(z, window=args.window, horizon=1, stride=stride, labels=series.labels)


def window_statistics(x: np.ndarray) -> np.ndarray:
    """Level, spread, trend and recent change of each window, shape (n, 11)."""
    v = x[:, :, 0].astype(np.float64)
    w = v.shape[1]
    t = np.arange(w) - (w - 1) / 2.0
    slope = v @ t / float(t @ t)
    mean, std = v.mean(1), v.std(1) + 1e-6
    k = max(2, w // 8)
    recent = v[:, -k:].mean(1)
    diffs = np.diff(v, axis=1)
    return np.column_stack(
        [
            v[:, -1],
            mean,
            std,
            v.min(1),
            v.max(1),
            slope,
            v[:, -1] - mean,
            (v[:, -1] - mean) / std,
            recent - v[:, :-k].mean(1),
            np.abs(diffs).max(1),
            diffs[:, -1],
        ]
    )


# ----------------------------------------------------------------- statistics


def _paired_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    """Paired DeLong test of ROC-AUC(a) - ROC-AUC(b) on the same rows.

    Structural components (placement values) from mid-ranks: for a positive,
    the share of negatives it outranks (ties one half); for a negative, the share
    of positives that outrank it. The variance of the difference is
    ``c' (S10 / m + S01 / n) c`` with ``c = (1, -1)`` and ``S10``, ``S01`` the
    2x2 sample covariances of the components. Two-sided normal p-value.
    """
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    m, n = len(pos), len(neg)
    v10, v01 = [], []
    for s in (np.asarray(a, np.float64), np.asarray(b, np.float64)):
        r_all = rankdata(s)
        r_pos, r_neg = rankdata(s[pos]), rankdata(s[neg])
        v10.append((r_all[pos] - r_pos) / n)
        v01.append(1.0 - (r_all[neg] - r_neg) / m)
    v10, v01 = np.array(v10), np.array(v01)
    aucs = v10.mean(axis=1)
    cov = np.cov(v10) / m + np.cov(v01) / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[0] - aucs[1])
    if var <= 0:
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        z = diff / math.sqrt(var)
    p = 2.0 * (1.0 - statistics.NormalDist().cdf(abs(z)))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": diff, "z": z, "p": p}


def _stouffer(zs: list[float]) -> tuple[float, float]:
    """Combined z and two-sided p of per-seed z scores (equal weights)."""
    zs = [z for z in zs if math.isfinite(z)]
    if not zs:
        return float("nan"), float("nan")
    z = sum(zs) / math.sqrt(len(zs))
    return z, 2.0 * (1.0 - statistics.NormalDist().cdf(abs(z)))


# ----------------------------------------------------------------- models


def _encoder(args):
    from kerafine import backbones

    # mask_value=None: after normalisation a real step can be exactly 0.0 (the
    # series' median), which the default Masking would silently skip.
    return backbones.sequence_encoder((None, 1), kind=args.kind, units=tuple(args.units), mask_value=None)


def _classifier(encoder):
    import kerafine
    from kerafine import heads

    return kerafine.build_transfer_model(encoder, heads.classification(2), freeze="none")


def _class_weight(y: np.ndarray, mode: str):
    if mode != "balanced":
        return None
    pos = float(np.mean(y))
    if pos in (0.0, 1.0):
        return None
    return {0: 0.5 / (1.0 - pos), 1: 0.5 / pos}


def pretrain(args, windows: np.ndarray, seed: int):
    import keras

    from kerafine import backbones

    keras.utils.set_random_seed(seed)
    encoder = _encoder(args)
    kwargs = {}
    if args.objective == "masked":
        kwargs["seed"] = seed
    backbones.pretrain_sequence_encoder(
        encoder,
        windows,
        objective=args.objective,
        epochs=args.pretrain_epochs,
        batch_size=args.batch_size,
        verbose=0,
        **kwargs,
    )
    return encoder.get_weights()


def train_pretrained(args, weights, x, y, seed: int):
    import keras

    import kerafine

    keras.utils.set_random_seed(seed)
    encoder = _encoder(args)
    encoder.set_weights(weights)
    model = _classifier(encoder)
    kerafine.fine_tune(
        model,
        (x, y),
        head_epochs=args.head_epochs,
        finetune_epochs=args.finetune_epochs,
        head_lr=args.head_lr,
        finetune_lr=args.finetune_lr,
        unfreeze_top=args.unfreeze,
        batch_size=args.batch_size,
        verbose=0,
        class_weight=_class_weight(y, args.class_weight),
    )
    return model


def train_scratch(args, x, y, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = _classifier(_encoder(args))
    model.compile(optimizer=keras.optimizers.Adam(args.scratch_lr), loss="binary_crossentropy")
    model.fit(
        x,
        y,
        epochs=args.head_epochs + args.finetune_epochs,
        batch_size=args.batch_size,
        verbose=0,
        class_weight=_class_weight(y, args.class_weight),
    )
    return model


def train_classical(x, y, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    f = window_statistics(x)
    # One OpenMP thread: on a loaded machine HGB's spinning threads took 149 s
    # instead of 2 s for the same 1,200-row fit (measured while writing this).
    with threadpool_limits(1):
        hgb = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed).fit(f, y)
        logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(f, y)
    return hgb, logreg


def _predict(model, x):
    return np.asarray(model.predict(x, batch_size=512, verbose=0)).reshape(-1)


# ----------------------------------------------------------------- protocol


def run(args) -> list[dict]:
    from kerafine import metrics

    rows = []
    for group in args.groups:
        series = load_group(args.data, group)
        n_test = GROUPS[group][2]
        for seed in args.seeds:
            rng = np.random.default_rng(1000 * seed + list(GROUPS).index(group))
            order = rng.permutation(len(series))
            test = [series[i] for i in order[:n_test]]
            pool = [series[i] for i in order[n_test:]]
            reference = None
            if args.normalise == "global":
                allv = np.concatenate([s.values for s in pool])
                reference = (float(allv.mean()), float(allv.std()) or 1.0)
            unlabeled = np.concatenate([cut(s, args, args.pretrain_stride, args.normalise, reference)[0] for s in pool])
            t0 = time.perf_counter()
            weights = pretrain(args, unlabeled, seed)
            t_pre = time.perf_counter() - t0
            for budget in args.budgets:
                if budget > len(pool):
                    continue
                labelled = pool[:budget]
                evaluated = test if args.evaluate == "test" else pool[budget:]
                if not evaluated:
                    continue
                parts = [cut(s, args, args.train_stride, args.normalise, reference) for s in labelled]
                x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
                parts = [cut(s, args, args.test_stride, args.normalise, reference) for s in evaluated]
                xt, yt = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
                if y.min() == y.max() or yt.min() == yt.max():
                    print(f"  skip {group} seed={seed} budget={budget}: one class only", file=sys.stderr)
                    continue
                t0 = time.perf_counter()
                scores = {"pretrained": _predict(train_pretrained(args, weights, x, y, seed), xt)}
                t_ft = time.perf_counter() - t0
                t0 = time.perf_counter()
                scores["scratch"] = _predict(train_scratch(args, x, y, seed), xt)
                t_sc = time.perf_counter() - t0
                hgb, logreg = train_classical(x, y, seed)
                ft = window_statistics(xt)
                from threadpoolctl import threadpool_limits

                with threadpool_limits(1):
                    scores["hgb"] = hgb.predict_proba(ft)[:, 1]
                    scores["logreg"] = logreg.predict_proba(ft)[:, 1]
                row = {
                    "group": group,
                    "seed": seed,
                    "budget": budget,
                    "labelled": [s.name for s in labelled],
                    "evaluated": [s.name for s in evaluated],
                    "n_train": int(len(y)),
                    "train_pos": int(y.sum()),
                    "n_eval": int(len(yt)),
                    "eval_pos": int(yt.sum()),
                    "seconds": {"pretrain": t_pre, "pretrained": t_ft, "scratch": t_sc},
                }
                for name, s in scores.items():
                    ci = metrics.roc_auc_ci(yt, s)
                    row[name] = {
                        "roc_auc": ci.auc,
                        "lower": ci.lower,
                        "upper": ci.upper,
                        "pr_auc": float(metrics.pr_auc(yt, s)),
                    }
                for other in MODELS[1:]:
                    row[f"vs_{other}"] = _paired_delong(yt, scores["pretrained"], scores[other])
                rows.append(row)
                print(
                    f"  {group:10s} seed={seed} budget={budget}: "
                    + "  ".join(f"{k}={row[k]['roc_auc']:.3f}" for k in MODELS)
                    + f"  p(vs scratch)={row['vs_scratch']['p']:.3g}"
                    + f"  [s: pretrain {t_pre:.0f}, fine-tune {t_ft:.0f}, scratch {t_sc:.0f}]",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def summarise(rows: list[dict]) -> str:
    lines = [
        "| group | labelled series | pretrained ROC-AUC | scratch | HGB | logreg | pretrained PR-AUC | scratch PR | HGB PR "
        "| pre - scratch | paired p per seed (vs scratch) | combined p | pre - HGB | combined p |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["group"], r["budget"]) for r in rows}, key=lambda k: (list(GROUPS).index(k[0]), k[1]))
    for group, budget in keys:
        rs = [r for r in rows if r["group"] == group and r["budget"] == budget]

        def ms(model, metric="roc_auc"):
            v = [r[model][metric] for r in rs]
            return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if metric == "roc_auc" else f"{np.mean(v):.3f}"

        def paired(other):
            d = np.mean([r[f"vs_{other}"]["diff"] for r in rs])
            _, p = _stouffer([r[f"vs_{other}"]["z"] for r in rs])
            return f"{d:+.3f}", f"{p:.2g}"

        per_seed = ", ".join(f"{r['vs_scratch']['p']:.2g}{'+' if r['vs_scratch']['diff'] > 0 else '-'}" for r in rs)
        d_s, p_s = paired("scratch")
        d_h, p_h = paired("hgb")
        lines.append(
            f"| {group} | {budget} | {ms('pretrained')} | {ms('scratch')} | {ms('hgb')} | {ms('logreg')} "
            f"| {ms('pretrained', 'pr_auc')} | {ms('scratch', 'pr_auc')} | {ms('hgb', 'pr_auc')} "
            f"| {d_s} | {per_seed} | {p_s} | {d_h} | {p_h} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="the nab-dev folder (default ../shared/data/nab-dev)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, budget 1, 1-2 epochs")
    p.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budgets", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument(
        "--evaluate",
        choices=["test", "validation"],
        default="test",
        help="score the test series, or the unlabelled pool series (recipe selection)",
    )
    p.add_argument("--normalise", choices=["series", "global"], default="series")
    p.add_argument("--objective", default="forecast", help="pretraining objective")
    p.add_argument("--kind", choices=["gru", "lstm"], default="gru")
    p.add_argument("--units", nargs="+", type=int, default=[16])
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--pretrain-epochs", type=int, default=6)
    p.add_argument("--head-epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=6)
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--scratch-lr", type=float, default=1e-3)
    p.add_argument("--unfreeze", default="all", help='"all" or an int (top layers)')
    p.add_argument("--class-weight", choices=["none", "balanced"], default="none")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pretrain-stride", type=int, default=4)
    p.add_argument("--train-stride", type=int, default=4)
    p.add_argument("--test-stride", type=int, default=8)
    p.add_argument("--json", type=Path, default=None, help="also write every row to this JSON file")
    args = p.parse_args(argv)
    if args.unfreeze != "all":
        args.unfreeze = int(args.unfreeze)
    if args.quick:
        args.seeds, args.budgets = args.seeds[:1], [1]
        args.pretrain_epochs, args.head_epochs, args.finetune_epochs = 1, 1, 1
        args.units, args.window = [8], 24
        args.pretrain_stride, args.train_stride, args.test_stride = 8, 8, 16
    args.data = args.data or default_data_dir()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not (args.data / "combined_windows.json").exists():
        print(f"NAB data not found at {args.data}: pass --data DIR or set KERAFINE_NAB_DEV; skipping.")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import sklearn
    import tensorflow as tf

    start = time.perf_counter()
    rows = run(args)
    wall = time.perf_counter() - start
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"}
    print(f"settings: {json.dumps(settings)}")
    print(
        f"versions: TensorFlow {tf.__version__}, Keras {keras.__version__}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}; nproc {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}; "
        f"wall {wall:.0f} s"
    )
    print(summarise(rows))
    print(
        "ROC-AUC: mean ± sd over seeds (exact, kerafine.metrics); PR-AUC: mean. 'pre - scratch': mean "
        "paired difference; per-seed paired DeLong p with the sign of the difference; combined p: "
        "Stouffer over seeds. Windows are autocorrelated, so DeLong p-values are optimistic."
    )
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "wall_seconds": wall, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
