"""Measured goals of kerafine.update (issue 13), on the demo fleets B (old) and C (new, drifted).

Run: PYTHONPATH=. python benchmarks/update.py [--quick]

Prints, in one run:
1. refresh (new labels + 30 % replay) against a model trained on all old + new labels, and
   fine-tuning on the new labels alone (no replay), with each one's old-fleet ROC-AUC change
   (forgetting);
2. distillation: a student with at most 1/4 of the teacher's parameters, distilled and trained on
   labels only, its test ROC-AUC and its predict speed-up over the teacher;
3. an ensemble of three differently seeded fine-tuned models against its best member (paired
   DeLong p-value);
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
        parts = {k: getattr(s, k).windows(16, stride=4, features=feats, normalizer=norm)
                 for k in ("train", "val", "test")}
    return parts, norm


def transfer_model(units, seed):
    import keras

    import kerafine
    from kerafine import backbones, heads

    keras.utils.set_random_seed(seed)
    return kerafine.build_transfer_model(backbones.sequence_encoder((16, 3), units=(units,)),
                                         heads.classification(2), freeze="none")


def train(model, data, epochs, lr=3e-3, val=None):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
    model.fit(data[0], data[1], epochs=epochs, batch_size=64, verbose=0, validation_data=val)
    return model


def auc(model, data):
    from kerafine.metrics import roc_auc

    return roc_auc(data[1], model.predict(data[0], batch_size=1024, verbose=0).ravel())


def predict_seconds(model, x, repeats=5):
    model.predict(x, batch_size=256, verbose=0)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict(x, batch_size=256, verbose=0)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller fleets and fewer epochs (about two minutes)")
    args = ap.parse_args(argv)
    import keras

    import kerafine
    from kerafine.metrics import roc_auc, roc_auc_compare
    from kerafine.update import distill, ensemble, refresh, replay_mix

    size = dict(servers=12, steps=2160, epochs=6) if args.quick else dict(servers=20, steps=2880, epochs=10)
    ep = size["epochs"]
    print(f"kerafine.update benchmark ({'quick' if args.quick else 'full'}): keras {keras.__version__}, "
          f"numpy {np.__version__}, python {sys.version.split()[0]}")
    old, norm = fleet_windows("B", size["servers"], size["steps"], 0)
    new, _ = fleet_windows("C", size["servers"], size["steps"], 1, norm)
    for name, parts in (("old (B)", old), ("new (C)", new)):
        print(f"  {name}: " + ", ".join(f"{k} {len(v[1])} windows ({int(v[1].sum())} pos)" for k, v in parts.items()))

    # 1. refresh vs all labels vs new only ---------------------------------------------------------
    t0 = time.perf_counter()
    base = train(transfer_model(32, 0), old["train"], 2 * ep, val=old["val"])
    path = os.path.join(tempfile.mkdtemp(), "base.keras")
    base.save(path)
    base_old, base_new = auc(base, old["test"]), auc(base, new["test"])
    refreshed = refresh(kerafine.load_model(path), new["train"], replay=old["train"], replay_fraction=0.3,
                        epochs=ep, learning_rate=1e-3, batch_size=64, verbose=0).model
    alone = refresh(kerafine.load_model(path), new["train"], replay=None, epochs=ep, learning_rate=1e-3,
                    batch_size=64, verbose=0).model
    both = (np.concatenate([old["train"][0], new["train"][0]]), np.concatenate([old["train"][1], new["train"][1]]))
    all_labels = train(transfer_model(32, 0), both, 2 * ep)
    print("\n1. Refresh after the shift (ROC-AUC on the test servers of each fleet)")
    print(f"  {'model':<34}{'new (C)':>9}{'old (B)':>9}{'old change':>12}")
    rows = [("current (trained on B)", base), ("refresh (C + 30 % replay of B)", refreshed),
            ("fine-tune on C alone (no replay)", alone), ("trained on all labels (B + C)", all_labels)]
    res = {}
    for name, m in rows:
        a_new, a_old = auc(m, new["test"]), auc(m, old["test"])
        res[name] = (a_new, a_old)
        print(f"  {name:<34}{a_new:>9.4f}{a_old:>9.4f}{a_old - base_old:>+12.4f}")
    r_new, r_old = res["refresh (C + 30 % replay of B)"]
    ref_new = res["trained on all labels (B + C)"][0]
    print(f"  goal: refresh within 0.02 of all-labels on C: {r_new - ref_new:+.4f} -> "
          f"{'met' if r_new >= ref_new - 0.02 else 'NOT met'}; old-fleet drop <= 0.01: {r_old - base_old:+.4f} -> "
          f"{'met' if r_old >= base_old - 0.01 else 'NOT met'}  ({time.perf_counter() - t0:.0f}s)")

    # 2. distillation -----------------------------------------------------------------------------
    t0 = time.perf_counter()
    teacher = train(transfer_model(128, 1), both, 2 * ep)
    student = transfer_model(8, 2)
    label_only = train(transfer_model(8, 2), both, 3 * ep)
    x_mix, y_mix, _ = replay_mix(new["train"], old["train"], 0.5)
    distill(teacher, student, both, unlabeled=np.concatenate([new["val"][0], old["val"][0]]), temperature=3.0,
            alpha=0.5, epochs=3 * ep, learning_rate=3e-3, verbose=0)
    test = (np.concatenate([old["test"][0], new["test"][0]]), np.concatenate([old["test"][1], new["test"][1]]))
    xt = np.concatenate([test[0]] * max(1, 20000 // len(test[0])))
    t_teacher, t_student = predict_seconds(teacher, xt), predict_seconds(student, xt)
    a_t, a_s, a_l = auc(teacher, test), auc(student, test), auc(label_only, test)
    print("\n2. Distillation (test servers of both fleets)")
    print(f"  teacher  LSTM 128: {teacher.count_params():>6} params, ROC-AUC {a_t:.4f}, "
          f"predict {1000 * t_teacher / len(xt) * 1000:.1f} ms/1k rows")
    print(f"  student  LSTM 8  : {student.count_params():>6} params "
          f"({student.count_params() / teacher.count_params():.3f} of the teacher), distilled ROC-AUC {a_s:.4f}, "
          f"predict {1000 * t_student / len(xt) * 1000:.1f} ms/1k rows, speed-up x{t_teacher / t_student:.2f}")
    print(f"  same student on labels only: ROC-AUC {a_l:.4f}")
    print(f"  goal: student within 0.01 of the teacher: {a_s - a_t:+.4f} -> {'met' if a_s >= a_t - 0.01 else 'NOT met'};"
          f" >= 3x faster: x{t_teacher / t_student:.2f} -> {'met' if t_teacher / t_student >= 3 else 'NOT met'}; "
          f"distillation vs labels only: {a_s - a_l:+.4f}  ({time.perf_counter() - t0:.0f}s)")

    # 3. ensemble of three seeded fine-tuned models -------------------------------------------------
    t0 = time.perf_counter()
    members = []
    for s in (11, 12, 13):
        m = kerafine.load_model(path)
        keras.utils.set_random_seed(s)
        members.append(refresh(m, new["train"], replay=old["train"], epochs=ep, learning_rate=1e-3, seed=s,
                               batch_size=64, verbose=0).model)
    aucs = [auc(m, new["test"]) for m in members]
    best = int(np.argmax(aucs))
    pb = members[best].predict(new["test"][0], verbose=0).ravel()
    print("\n3. Ensembles of three differently seeded refreshed models, new-fleet test ROC-AUC")
    print(f"  members {', '.join(f'{a:.4f}' for a in aucs)} (best: member {best})")
    for method in ("mean", "weighted", "stacking"):
        ens = ensemble(members, method, validation_data=None if method == "mean" else new["val"])
        pe = ens.predict(new["test"][0], verbose=0).ravel()
        cmp = roc_auc_compare(new["test"][1], pb, pe)
        print(f"  {method:<9} ensemble {roc_auc(new['test'][1], pe):.4f}; vs best member {cmp.difference:+.4f}, "
              f"paired DeLong p={cmp.p_value:.3g} -> {'met' if cmp.difference >= 0 else 'NOT met'}")
    print(f"  ({time.perf_counter() - t0:.0f}s)")

    # 4. paired DeLong -----------------------------------------------------------------------------
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
        rej += roc_auc_compare(y, y + shared + rng.normal(size=200), y + shared + rng.normal(size=200)).p_value < 0.05
    print("\n4. Paired DeLong test")
    print(f"  largest |standard error - O(mn) definition| over 50 tied draws: {worst:.2e} "
          f"({'met' if worst < 1e-9 else 'NOT met'} at 1e-9)")
    print(f"  rejection rate at 0.05 on equally good models: {rej / draws:.4f} over {draws} draws "
          f"(binomial sd {math.sqrt(0.05 * 0.95 / draws):.4f})  ({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
