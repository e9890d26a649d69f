"""Time kerafine.data.sliding_windows against the alternatives a user would reach for.

Alternatives: a Python loop over start rows (per server), and Keras's
``keras.utils.timeseries_dataset_from_array`` run per server and materialised
to arrays. Same input (a fleet of servers, one row per minute), same windows.

Run: python benchmarks/windows.py [n_servers] [n_steps]
"""

import sys
import time

import numpy as np


def main():
    n_servers = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    window, features = 32, 4
    rng = np.random.default_rng(0)
    series = rng.normal(size=(n_servers * n_steps, features)).astype("float32")
    groups = np.repeat(np.arange(n_servers), n_steps)

    from kerafine.data import sliding_windows

    t = time.perf_counter()
    x, y = sliding_windows(series, window, horizon=1, groups=groups)
    t_kf = time.perf_counter() - t

    t = time.perf_counter()
    xs, ys = [], []
    for g in range(n_servers):
        s = series[g * n_steps : (g + 1) * n_steps]
        for i in range(n_steps - window):
            xs.append(s[i : i + window])
            ys.append(s[i + window])
    x_loop, y_loop = np.stack(xs), np.stack(ys)
    t_loop = time.perf_counter() - t
    assert np.array_equal(x, x_loop) and np.array_equal(y, y_loop)

    import keras

    t = time.perf_counter()
    parts = []
    for g in range(n_servers):
        s = series[g * n_steps : (g + 1) * n_steps]
        ds = keras.utils.timeseries_dataset_from_array(s[:-1], s[window:], sequence_length=window, batch_size=4096)
        parts.extend(b[0].numpy() for b in ds)
    x_keras = np.concatenate(parts)
    t_keras = time.perf_counter() - t
    assert np.array_equal(x, x_keras)

    print(f"{len(x)} windows of {window}x{features} from {n_servers} servers x {n_steps} steps")
    print(f"kerafine.sliding_windows        {t_kf:8.3f} s")
    print(f"Python loop                     {t_loop:8.3f} s   ratio {t_loop / t_kf:6.1f}x")
    print(f"keras timeseries_dataset (+np)  {t_keras:8.3f} s   ratio {t_keras / t_kf:6.1f}x")


if __name__ == "__main__":
    main()
