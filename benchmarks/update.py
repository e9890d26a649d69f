"""Measured goals of kerafine.update (issue 13), on the demo fleets B (old) and C (new, drifted).

Run: PYTHONPATH=. python benchmarks/update.py [--quick]

Prints, in one run:
1. refresh (new labels + 30 % replay) against a model trained on all old + new labels, and
   fine-tuning on the new labels alone (no replay), with each one's old-fleet ROC-AUC change
   (forgetting);
2. distillation: a small 1-D convolution student (far under 1/4 of the LSTM teacher's parameters),
   distilled and trained on labels only, over several teacher and student seeds: its test ROC-AUC
   against the teacher, the distilled - labels-only difference with a 95 % t-interval, and its
   predict speed-up over the teacher (same rows and batch size, warm-up excluded, median of
   alternating rounds);
3. ensembles of three differently seeded fine-tuned models (two kinds of seeding: refreshed copies
   of one model, and independently initialised models) against their best member chosen on the
   validation servers (paired DeLong p-value), with diagnostics: member correlation, calibration,
   the best member picked on the test set (biased) for contrast;
4. the paired DeLong test against the O(mn) definition (max abs difference) and its rejection rate
   on equally good models over seeded draws.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def fleet_windows(fleet, n_servers, n_steps, seed, norm=None):
    from kerafine.data import Normalizer, load_server_metrics, split_by_group
    from kerafine.data.demo import generate_fleet

    d = tempfile.mkdtemp(prefix=f"kf-bench-{fleet}-")
    paths = generate_fleet(d, fleet, n_servers=n_servers, n_steps=n_steps, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = load_server_metrics(**paths, freq="1min", horizon=30)
        s = split_by_group(m, val=0.2, test=0.4, seed=seed)
        feats = ("cpu", "memory", "diskio")
        norm = norm or Normalizer.fit(s.train, feats)
        parts = {
            k: getattr(s, k).windows(16, stride=4, features=feats, normalizer=norm) for k in ("train", "val", "test")
        }
    return parts, norm


def transfer_model(units, seed):
    import keras

    import kerafine
    from kerafine import backbones, heads

    keras.utils.set_random_seed(seed)
    return kerafine.build_transfer_model(
        backbones.sequence_encoder((16, 3), units=(units,)), heads.classification(2), freeze="none"
    )


def train(model, data, epochs, lr=3e-3, val=None):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
    model.fit(data[0], data[1], epochs=epochs, batch_size=64, verbose=0, validation_data=val)
    return model


def auc(model, data):
    from kerafine.metrics import roc_auc

    return roc_auc(data[1], model.predict(data[0], batch_size=1024, verbose=0).ravel())


STUDENTS = {
    "conv8": "Conv1D(8, kernel 3, ReLU) -> global average and max pooling -> Dense(1, sigmoid)",
    "conv16": "Conv1D(16, kernel 5, ReLU) -> global average and max pooling -> Dense(16, ReLU) -> Dense(1, sigmoid)",
}


def conv_student(seed, kind="conv8"):
    """The distillation student: a small 1-D convolution and pooled statistics; no recurrence.

    An LSTM's predict time on a CPU is dominated by its 16 sequential steps whatever its width, so
    a narrow LSTM is not a fast student; a convolution over the window is one parallel op.
    """
    import keras

    keras.utils.set_random_seed(seed)
    filters, kernel, hidden = (8, 3, 0) if kind == "conv8" else (16, 5, 16)
    inputs = keras.Input((16, 3), name="window")
    h = keras.layers.Conv1D(filters, kernel, activation="relu", name="conv")(inputs)
    h = keras.layers.Concatenate(name="pooled")(
        [keras.layers.GlobalAveragePooling1D(name="avg")(h), keras.layers.GlobalMaxPooling1D(name="max")(h)]
    )
    if hidden:
        h = keras.layers.Dense(hidden, activation="relu", name="hidden")(h)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="predictions")(h), name="student")


def _timed_rounds(slow, fast, rounds):
    """Median times of two zero-argument callables and their median per-round ratio.

    Both are called once first (tracing, allocation; not timed); rounds then alternate the two (and
    their order), so both see the same machine load, and the ratio is taken per round.
    """
    slow(), fast()
    ts, tf_, ratios = [], [], []
    for r in range(rounds):
        pair = {}
        for name, f in (("slow", slow), ("fast", fast)) if r % 2 == 0 else (("fast", fast), ("slow", slow)):
            t0 = time.perf_counter()
            f()
            pair[name] = time.perf_counter() - t0
        ts.append(pair["slow"])
        tf_.append(pair["fast"])
        ratios.append(pair["slow"] / pair["fast"])
    return float(np.median(ratios)), float(np.median(ts)), float(np.median(tf_))


def predict_speedup(slow, fast, x, batch_size, rounds):
    """``model.predict`` of both models on the same rows and batch size: (ratio, slow s, fast s)."""
    return _timed_rounds(
        lambda: slow.predict(x, batch_size=batch_size, verbose=0),
        lambda: fast.predict(x, batch_size=batch_size, verbose=0),
        rounds,
    )


def forward_speedup(slow, fast, x, batch_size, rounds):
    """The compiled forward pass (``tf.function`` of ``model(x, training=False)``) over the same batches.

    This is what a serving path runs (an exported SavedModel, or a model called on tensors); it leaves
    out ``model.predict``'s per-call and per-batch work (building a ``tf.data`` pipeline from numpy,
    the predict loop, callbacks), which costs the same for any model and so hides a cheap model's speed.
    """
    import tensorflow as tf

    batches = [tf.constant(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]

    def runner(model):
        step = tf.function(lambda b: model(b, training=False), reduce_retracing=True)

        def run():
            for b in batches:
                step(b).numpy()

        return run

    return _timed_rounds(runner(slow), runner(fast), rounds)


def speed_table(teacher, students, x, rounds, batch_size=1024):
    """Print the teacher's and each student's predict speed; return the students' forward-pass ratios."""
    print(
        f"  predict speed on {len(x)} rows, batch {batch_size}, warm-up excluded, median of {rounds} rounds "
        "alternating teacher and student:"
    )
    out = {}
    for name, student in students.items():
        r_p, t_p, s_p = predict_speedup(teacher, student, x, batch_size, rounds)
        r_f, t_f, s_f = forward_speedup(teacher, student, x, batch_size, rounds)
        ms = 1e6 / len(x)
        print(
            f"    {name:<7} {student.count_params():>4} params ({student.count_params() / teacher.count_params():.4f}"
            f" of {teacher.count_params()}): model.predict teacher {t_p * ms:.1f} / student {s_p * ms:.1f} ms per 1k "
            f"rows, x{r_p:.2f}; compiled forward pass teacher {t_f * ms:.1f} / student {s_f * ms:.1f} ms per 1k rows,"
            f" x{r_f:.2f}"
        )
        out[name] = (r_p, r_f)
    return out


def t_interval(values, level=0.95):
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float("nan"), float("nan")
    h = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - h), float(v.mean() + h)


def logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def ece(y, p, bins=10):
    """Expected calibration error over equal-width probability bins."""
    idx = np.minimum((np.asarray(p) * bins).astype(int), bins - 1)
    return float(
        sum(abs(y[idx == b].mean() - p[idx == b].mean()) * (idx == b).mean() for b in range(bins) if (idx == b).any())
    )


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller fleets and fewer epochs (about two minutes)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, to check that the script runs (no figures)")
    ap.add_argument("--teachers", type=int, default=None, help="teacher seeds (default 2 quick, 3 full)")
    ap.add_argument("--students", type=int, default=None, help="student seeds per teacher (default 4 quick, 5 full)")
    ap.add_argument("--teacher-units", type=int, default=64, help="the teacher's LSTM units. Defaults to 64.")
    ap.add_argument("--student", choices=sorted(STUDENTS), default="conv16", help="the student. Defaults to conv16.")
    ap.add_argument(
        "--sections",
        default="1,2,3,4",
        help="sections to run, from 1,2,3,4 and "
        "'speed' (predict timing of every student, untrained). Defaults to 1,2,3,4.",
    )
    ap.add_argument("--rounds", type=int, default=9, help="timed predict rounds per model. Defaults to 9.")
    args = ap.parse_args(argv)
    args.teachers = args.teachers or (2 if args.quick else 3)
    args.students = args.students or (4 if args.quick else 5)
    import keras

    import kerafine
    from kerafine.metrics import roc_auc, roc_auc_compare
    from kerafine.update import distill, ensemble, refresh

    size = dict(servers=12, steps=2160, epochs=6) if args.quick else dict(servers=20, steps=2880, epochs=10)
    if args.smoke:
        size = dict(servers=8, steps=1440, epochs=1)
    ep = size["epochs"]
    print(
        f"kerafine.update benchmark ({'quick' if args.quick else 'full'}): keras {keras.__version__}, "
        f"numpy {np.__version__}, python {sys.version.split()[0]}"
    )
    old, norm = fleet_windows("B", size["servers"], size["steps"], 0)
    new, _ = fleet_windows("C", size["servers"], size["steps"], 1, norm)
    for name, parts in (("old (B)", old), ("new (C)", new)):
        print(f"  {name}: " + ", ".join(f"{k} {len(v[1])} windows ({int(v[1].sum())} pos)" for k, v in parts.items()))

    # 1. refresh vs all labels vs new only ---------------------------------------------------------
    t0 = time.perf_counter()
    sections = set(args.sections.split(","))
    if sections & {"1", "3"}:
        base = train(transfer_model(32, 0), old["train"], 2 * ep, val=old["val"])
        path = os.path.join(tempfile.mkdtemp(), "base.keras")
        base.save(path)
    both = (np.concatenate([old["train"][0], new["train"][0]]), np.concatenate([old["train"][1], new["train"][1]]))
    if "1" in sections:
        base_old = auc(base, old["test"])
        refreshed = refresh(
            kerafine.load_model(path),
            new["train"],
            replay=old["train"],
            replay_fraction=0.3,
            epochs=ep,
            learning_rate=1e-3,
            batch_size=64,
            verbose=0,
        ).model
        alone = refresh(
            kerafine.load_model(path),
            new["train"],
            replay=None,
            epochs=ep,
            learning_rate=1e-3,
            batch_size=64,
            verbose=0,
        ).model
        all_labels = train(transfer_model(32, 0), both, 2 * ep)
        print("\n1. Refresh after the shift (ROC-AUC on the test servers of each fleet)")
        print(f"  {'model':<34}{'new (C)':>9}{'old (B)':>9}{'old change':>12}")
        rows = [
            ("current (trained on B)", base),
            ("refresh (C + 30 % replay of B)", refreshed),
            ("fine-tune on C alone (no replay)", alone),
            ("trained on all labels (B + C)", all_labels),
        ]
        res = {}
        for name, m in rows:
            a_new, a_old = auc(m, new["test"]), auc(m, old["test"])
            res[name] = (a_new, a_old)
            print(f"  {name:<34}{a_new:>9.4f}{a_old:>9.4f}{a_old - base_old:>+12.4f}")
        r_new, r_old = res["refresh (C + 30 % replay of B)"]
        ref_new = res["trained on all labels (B + C)"][0]
        print(
            f"  goal: refresh within 0.02 of all-labels on C: {r_new - ref_new:+.4f} -> "
            f"{'met' if r_new >= ref_new - 0.02 else 'NOT met'}; old-fleet drop <= 0.01: {r_old - base_old:+.4f} -> "
            f"{'met' if r_old >= base_old - 0.01 else 'NOT met'}  ({time.perf_counter() - t0:.0f}s)"
        )

    # 2. distillation -----------------------------------------------------------------------------
    if "speed" in sections:  # timing only: it does not depend on the weights, so untrained models do
        print("\n2'. Predict speed of the students against the teacher (untrained models, same architectures)")
        xs = np.concatenate([new["test"][0]] * max(1, 20000 // len(new["test"][0])))
        speed_table(transfer_model(args.teacher_units, 101), {k: conv_student(1, k) for k in STUDENTS}, xs, args.rounds)
    if "2" in sections:
        t0 = time.perf_counter()
        test = (np.concatenate([old["test"][0], new["test"][0]]), np.concatenate([old["test"][1], new["test"][1]]))
        unlabeled = np.concatenate([new["val"][0], old["val"][0]])
        xt = np.concatenate([test[0]] * max(1, 20000 // len(test[0])))
        print(
            "\n2. Distillation (test servers of both fleets): teacher LSTM "
            f"{args.teacher_units}, student {args.student}: {STUDENTS[args.student]}"
        )
        print(
            f"  {'teacher seed':<13}{'teacher':>8}{'student seed':>13}{'distilled':>10}{'labels only':>12}"
            f"{'distil - labels':>16}"
        )
        diffs, gaps, per_teacher = [], [], {}
        for ts in range(1, 1 + args.teachers):
            teacher = train(transfer_model(args.teacher_units, 100 + ts), both, 2 * ep)
            a_t = auc(teacher, test)
            for ss in range(1, 1 + args.students):
                student = conv_student(1000 * ts + ss, args.student)
                distill(
                    teacher,
                    student,
                    both,
                    unlabeled=unlabeled,
                    temperature=3.0,
                    alpha=0.5,
                    epochs=3 * ep,
                    learning_rate=3e-3,
                    verbose=0,
                )
                label_only = train(conv_student(1000 * ts + ss, args.student), both, 3 * ep)
                a_s, a_l = auc(student, test), auc(label_only, test)
                diffs.append(a_s - a_l)
                gaps.append(a_s - a_t)
                per_teacher.setdefault(ts, []).append(a_s - a_l)
                print(f"  {ts:<13}{a_t:>8.4f}{ss:>13}{a_s:>10.4f}{a_l:>12.4f}{a_s - a_l:>+16.4f}")
        speeds = speed_table(teacher, {args.student: student}, xt, args.rounds)
        r_predict, ratio = speeds[args.student]
        lo, hi = t_interval(diffs)
        glo, ghi = t_interval(gaps)
        print(
            f"  distilled student - teacher: mean {np.mean(gaps):+.4f}, 95 % interval [{glo:+.4f}, {ghi:+.4f}], "
            f"worst {min(gaps):+.4f} over {len(gaps)} runs"
        )
        print(
            f"  distilled - labels-only student: mean {np.mean(diffs):+.4f}, 95 % t-interval [{lo:+.4f}, {hi:+.4f}] "
            f"over {len(diffs)} paired runs; per teacher "
            + ", ".join(f"{k}: {np.mean(v):+.4f}" for k, v in per_teacher.items())
        )
        print(
            f"  goal: student within 0.01 of the teacher (mean): {np.mean(gaps):+.4f} -> "
            f"{'met' if np.mean(gaps) >= -0.01 else 'NOT met'}; >= 3x faster: forward pass x{ratio:.2f}, "
            f"model.predict x{r_predict:.2f} -> "
            f"{'met' if ratio >= 3 else 'NOT met'}; distillation helped: "
            f"{'yes' if lo > 0 else 'no, it hurt' if hi < 0 else 'not shown (interval contains 0)'}"
            f"  ({time.perf_counter() - t0:.0f}s)"
        )

    # 3. ensemble of three seeded fine-tuned models -------------------------------------------------
    if "3" in sections:
        t0 = time.perf_counter()
        families = {}
        members = []
        for s in (11, 12, 13):  # same start (the current model), seeds change the replay sample and shuffles
            m = kerafine.load_model(path)
            keras.utils.set_random_seed(s)
            members.append(
                refresh(
                    m,
                    new["train"],
                    replay=old["train"],
                    epochs=ep,
                    learning_rate=1e-3,
                    seed=s,
                    batch_size=64,
                    verbose=0,
                ).model
            )
        families["a. refreshed copies of one current model (seeds 11-13)"] = members
        members = []
        for s in (21, 22, 23):  # independent: own initialisation trained on B, then refreshed on C with replay
            m = train(transfer_model(32, s), old["train"], 2 * ep)
            keras.utils.set_random_seed(s)
            members.append(
                refresh(
                    m,
                    new["train"],
                    replay=old["train"],
                    epochs=ep,
                    learning_rate=1e-3,
                    seed=s,
                    batch_size=64,
                    verbose=0,
                ).model
            )
        families["b. independently initialised, trained on B, refreshed (seeds 21-23)"] = members
        print("\n3. Ensembles of three differently seeded fine-tuned models, new-fleet test ROC-AUC")
        print("  (the best member is chosen on the validation servers; the test-set pick is shown for contrast)")
        yv, yt = new["val"][1], new["test"][1]
        for fam, members in families.items():
            pv = [members[i].predict(new["val"][0], batch_size=1024, verbose=0).ravel() for i in range(3)]
            pt = [members[i].predict(new["test"][0], batch_size=1024, verbose=0).ravel() for i in range(3)]
            a_val = [roc_auc(yv, p) for p in pv]
            a_test = [roc_auc(yt, p) for p in pt]
            by_val, by_test = int(np.argmax(a_val)), int(np.argmax(a_test))
            lt = [logit(p) for p in pt]
            corr = [np.corrcoef(lt[i], lt[j])[0, 1] for i, j in ((0, 1), (0, 2), (1, 2))]
            print(f"  {fam}")
            print(
                f"    members val {', '.join(f'{a:.4f}' for a in a_val)}; "
                f"test {', '.join(f'{a:.4f}' for a in a_test)}; "
                f"ECE {', '.join(f'{ece(yt, p):.3f}' for p in pt)}"
            )
            print(
                f"    test logit correlation between members {min(corr):.3f}-{max(corr):.3f}; largest |p_i - p_j| "
                f"{max(np.abs(pt[i] - pt[j]).max() for i, j in ((0, 1), (0, 2), (1, 2))):.3f}"
            )
            print(
                f"    best member on val: {by_val} (test {a_test[by_val]:.4f}); "
                f"best on test (biased pick): {by_test} "
                f"(test {a_test[by_test]:.4f})"
            )
            for method in ("mean", "weighted", "stacking"):
                ens = ensemble(members, method, validation_data=None if method == "mean" else new["val"])
                pe = ens.predict(new["test"][0], batch_size=1024, verbose=0).ravel()
                if method == "mean":
                    print(
                        f"    check: mean ensemble = mean of the members' probabilities to "
                        f"{np.abs(pe - np.mean(pt, axis=0)).max():.1e}"
                    )
                cmp = roc_auc_compare(yt, pt[by_val], pe)
                cmp_t = roc_auc_compare(yt, pt[by_test], pe)
                print(
                    f"    {method:<9} {roc_auc(yt, pe):.4f}; vs val-chosen member {cmp.difference:+.4f} "
                    f"(paired DeLong p={cmp.p_value:.3g}) -> {'met' if cmp.difference >= 0 else 'NOT met'}; "
                    f"vs test-chosen {cmp_t.difference:+.4f} (p={cmp_t.p_value:.3g})"
                )
            pl = 1 / (1 + np.exp(-np.mean(lt, axis=0)))
            print(f"    diagnostic, mean of logits (not an ensemble() method): {roc_auc(yt, pl):.4f}")
        print(f"  ({time.perf_counter() - t0:.0f}s)")

    # 4. paired DeLong -----------------------------------------------------------------------------
    if "4" in sections:
        t0 = time.perf_counter()
        rng = np.random.default_rng(2024)
        worst = 0.0
        for _ in range(50):
            n = int(rng.integers(30, 300))
            y = rng.integers(0, 2, n)
            y[:2], y[2:4] = 0, 1
            a = np.round(y + rng.normal(size=n), 1)
            b = np.round(0.5 * a + y + rng.normal(size=n), 1)
            r = roc_auc_compare(y, a, b)
            yb = y.astype(bool)
            v = []
            for sc in (a, b):
                psi = (sc[yb][:, None] > sc[~yb][None, :]) + 0.5 * (sc[yb][:, None] == sc[~yb][None, :])
                v.append((psi.mean(1), psi.mean(0)))
            d10, d01 = v[1][0] - v[0][0], v[1][1] - v[0][1]
            se = math.sqrt(np.var(d10, ddof=1) / len(d10) + np.var(d01, ddof=1) / len(d01))
            worst = max(worst, abs(se - r.std_error))
        draws = 2000 if not args.quick else 1000
        rej = 0
        for _ in range(draws):
            y = rng.integers(0, 2, 200)
            shared = rng.normal(size=200)
            a, b = y + shared + rng.normal(size=200), y + shared + rng.normal(size=200)
            rej += roc_auc_compare(y, a, b).p_value < 0.05
        print("\n4. Paired DeLong test")
        print(
            f"  largest |standard error - O(mn) definition| over 50 tied draws: {worst:.2e} "
            f"({'met' if worst < 1e-9 else 'NOT met'} at 1e-9)"
        )
        print(
            f"  rejection rate at 0.05 on equally good models: {rej / draws:.4f} over {draws} draws "
            f"(binomial sd {math.sqrt(0.05 * 0.95 / draws):.4f})  ({time.perf_counter() - t0:.0f}s)"
        )


if __name__ == "__main__":
    main()
