"""ReferenceProfile: what it keeps, its bounded sample, and crash-safe save/load."""

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from kerafine import _io
from kerafine.drift import DriftDetector, ReferenceProfile
from kerafine.errors import CheckpointError, DataError, KerafineError


def _frame(rng, n=2000):
    df = pd.DataFrame(
        {
            "cpu": rng.normal(50, 10, n),
            "latency": rng.lognormal(3, 1, n),
            "region": rng.choice(["eu", "us", "asia"], n),
            "tier": rng.integers(1, 4, n),
        }
    )
    df.loc[::50, "latency"] = np.nan
    return df


def test_types_are_inferred_and_can_be_declared_by_name_or_position():
    rng = np.random.default_rng(0)
    df = _frame(rng)
    assert ReferenceProfile.from_data(df).categorical == ("region",)
    by_name = ReferenceProfile.from_data(df, categorical=["tier"])
    assert by_name.categorical == ("region", "tier") and by_name.continuous == ("cpu", "latency")
    assert ReferenceProfile.from_data(df.to_numpy()[:, [0, 3]].astype(float), categorical=[1]).categorical == ("f1",)
    named = ReferenceProfile.from_data(rng.normal(size=(20, 2)), feature_names=["a", "b"])
    assert named.feature_names == ("a", "b")


def test_summaries_are_exact_on_the_full_data_while_the_sample_is_bounded():
    rng = np.random.default_rng(1)
    df = _frame(rng, 5000)
    prof = ReferenceProfile.from_data(df, max_samples=1000, n_bins=10)
    assert prof.n_rows == 5000 and prof.sample.shape == (1000, 3)  # cpu, latency, tier
    lat = prof.continuous_summary("latency")
    assert lat["n_missing"] == 100 and lat["n_valid"] == 4900
    assert lat["bin_counts"].sum() == 4900 and len(lat["bin_counts"]) == 10
    assert lat["mean"] == pytest.approx(df.latency.mean()) and lat["std"] == pytest.approx(df.latency.std(ddof=0))
    assert np.all(np.diff(lat["sorted_sample"]) >= 0) and np.isin(lat["sorted_sample"], df.latency).all()
    # Decile bins of the full data hold a tenth of it each.
    assert np.abs(lat["bin_counts"] / 4900 - 0.1).max() < 0.002
    region = prof.categorical_summary("region")
    assert dict(zip(region["levels"], region["counts"])) == df.region.value_counts().to_dict()


def test_save_load_round_trip_gives_identical_checks(tmp_path):
    rng = np.random.default_rng(2)
    df = _frame(rng)
    prof = ReferenceProfile.from_data(df, max_samples=500)
    path = tmp_path / "profile"
    prof.save(path)
    assert _io.verify_manifest(path) == [] and not list(path.glob("*.pkl"))
    loaded = ReferenceProfile.load(path)
    assert loaded.feature_names == prof.feature_names and loaded.categorical == prof.categorical
    np.testing.assert_array_equal(loaded.sorted_sample, prof.sorted_sample)
    current = _frame(rng, 600)
    current["cpu"] += 5
    assert DriftDetector(loaded).check(current).to_dict() == DriftDetector(prof).check(current).to_dict()


def test_save_replaces_an_existing_profile_but_not_another_directory(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "p"
    ReferenceProfile.from_data(rng.normal(size=(50, 2))).save(path)
    ReferenceProfile.from_data(rng.normal(size=(80, 3))).save(path)
    assert ReferenceProfile.load(path).n_rows == 80
    assert sorted(os.listdir(tmp_path)) == ["p"]  # no staging or old copies left
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(KerafineError, match="It exists and is not a profile"):
        ReferenceProfile.from_data(rng.normal(size=(50, 2))).save(other)


def test_corrupted_profile_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "p"
    ReferenceProfile.from_data(rng.normal(size=(100, 2))).save(path)
    npz = path / "profile.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is corrupted or incomplete: .*profile.npz fails its CRC32 check"):
        ReferenceProfile.load(path)
    (path / "profile.npz").unlink()
    with pytest.raises(CheckpointError, match="profile.npz is missing"):
        ReferenceProfile.load(path)


def test_profile_from_a_newer_format_version_is_refused(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "p"
    ReferenceProfile.from_data(rng.normal(size=(100, 2))).save(path)
    meta = _io.read_manifest_meta(path)
    meta["format_version"] = 99
    _io.write_manifest(path, meta)  # checksums still verify: only the version is new
    with pytest.raises(
        CheckpointError, match="format version 99, newer than this kerafine reads \\(up to 1\\); upgrade"
    ):
        ReferenceProfile.load(path)


def test_missing_or_foreign_path_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="No saved reference profile at"):
        ReferenceProfile.load(tmp_path / "nope")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("hello")
    _io.write_manifest(foreign, {"kind": "something-else"})
    with pytest.raises(CheckpointError, match="is not a kerafine reference profile"):
        ReferenceProfile.load(foreign)


def test_bad_reference_data():
    rng = np.random.default_rng(6)
    with pytest.raises(DataError, match="the reference has 5 rows; the drift tests .* need at least 10"):
        ReferenceProfile.from_data(rng.normal(size=(5, 2)))
    with pytest.raises(DataError, match="array of shape \\(20, 4, 4\\)"):
        ReferenceProfile.from_data(rng.normal(size=(20, 4, 4)))
    x = rng.normal(size=(20, 2))
    x[:, 1] = np.nan
    with pytest.raises(DataError, match=r"column\(s\) \['f1'\] hold no value in the reference"):
        ReferenceProfile.from_data(x)
    with pytest.raises(KerafineError, match="`categorical`: received 'regoin'.*Did you mean \"region\""):
        ReferenceProfile.from_data(_frame(rng), categorical=["regoin"])
    with pytest.raises(KerafineError, match="`feature_names`: .* expected 2 names"):
        ReferenceProfile.from_data(x, feature_names=["a"])
    with pytest.raises(KerafineError, match="`max_samples`: received 3"):
        ReferenceProfile.from_data(rng.normal(size=(20, 2)), max_samples=3)


def test_constant_feature_warns_once_at_build_time():
    x = np.c_[np.arange(30.0), np.ones(30)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ReferenceProfile.from_data(x)
    assert [str(w.message)[:40] for w in caught] == ["Feature(s) ['f1'] are constant in the re"]


def test_batches_give_exact_summaries_and_a_uniform_reservoir():
    rng = np.random.default_rng(9)
    df = _frame(rng, 6000)
    df.loc[5990:, "cpu"] = np.nan
    whole = ReferenceProfile.from_data(df)
    chunks = ReferenceProfile.from_batches(
        (df.iloc[i : i + 700] for i in range(0, 6000, 700)), max_samples=1200, seed=3
    )
    assert chunks.n_rows == 6000 and chunks.sample.shape == (1200, 3)
    for name in ("cpu", "latency", "tier"):
        a, b = whole.continuous_summary(name), chunks.continuous_summary(name)
        assert a["n_valid"] == b["n_valid"] and a["min"] == b["min"] and a["max"] == b["max"]
        assert b["mean"] == pytest.approx(a["mean"], rel=1e-12) and b["std"] == pytest.approx(a["std"], rel=1e-10)
    assert chunks.categorical_summary("region") == whole.categorical_summary("region")
    # Rows kept from the first half of the stream: about half, whatever the batch (binomial sd ~ 0.015).
    first_half = np.isin(chunks.sample[:, 2], df.tier.iloc[:3000]) & np.isin(chunks.sample[:, 0], df.cpu.iloc[:3000])
    assert abs(first_half.mean() - 0.5) < 0.05
    cur = _frame(rng, 500)
    assert DriftDetector(chunks).check(cur).is_drift == DriftDetector(whole).check(cur).is_drift


def test_batches_with_other_columns_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="batch 1 has columns"):
        ReferenceProfile.from_batches([rng.normal(size=(20, 2)), rng.normal(size=(20, 3))])
    with pytest.raises(DataError, match="they hold 4 rows in all"):
        ReferenceProfile.from_batches([rng.normal(size=(4, 2))])


# ---------------------------------------------------------------- merge
def _shards(seed=0):
    """Two shards of very different size and distribution; `shard` marks a row's origin."""
    rng = np.random.default_rng(seed)
    sizes, centres = (3000, 1000), (0.0, 3.0)
    frames = []
    for i, (n, c) in enumerate(zip(sizes, centres)):
        x = rng.normal(c, 1.0 + i, size=n)
        x[rng.random(n) < 0.05] = np.nan  # missing values are counted exactly too
        frames.append(
            pd.DataFrame(
                {"x": x, "shard": np.full(n, float(i)), "region": rng.choice(["eu", "us", "ap"], n, p=[0.5, 0.3, 0.2])}
            )
        )
    return frames


@pytest.mark.filterwarnings("ignore:Feature.s. \\['shard'\\] are constant")
def test_merge_gives_exact_counts_moments_ranges_and_levels():
    frames = _shards()
    whole = ReferenceProfile.from_data(pd.concat(frames, ignore_index=True), max_samples=400)
    merged = ReferenceProfile.merge([ReferenceProfile.from_data(f, max_samples=400) for f in frames])
    assert merged.n_rows == whole.n_rows == 4000
    assert merged.feature_names == whole.feature_names and merged.categorical == whole.categorical
    for name in whole.continuous:
        a, b = merged.continuous_summary(name), whole.continuous_summary(name)
        assert a["n_valid"] == b["n_valid"] and a["n_missing"] == b["n_missing"]
        assert a["min"] == b["min"] and a["max"] == b["max"]
        np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a["std"], b["std"], rtol=1e-12)
    assert merged.categorical_summary("region") == whole.categorical_summary("region")
    assert merged.sample.shape == (400, 2)


@pytest.mark.filterwarnings("ignore:Feature.s. \\['shard'\\] are constant")
def test_merge_sample_is_a_uniform_sample_of_all_rows():
    from scipy import stats

    frames = _shards()
    profiles = [ReferenceProfile.from_data(f, max_samples=400) for f in frames]
    m, n_small, n_all = 400, 1000, 4000
    # Rows of the small shard in the merged sample, over many merges: hypergeometric(4000, 1000, 400).
    counts = np.array([int(np.sum(ReferenceProfile.merge(profiles, seed=s).sample[:, 1] == 1.0)) for s in range(300)])
    law = stats.hypergeom(n_all, n_small, m)
    assert stats.ttest_1samp(counts, law.mean()).pvalue > 1e-3
    # Variance: (n-1) s^2 / sigma^2 is about chi-squared with n-1 degrees of freedom.
    chi2 = (len(counts) - 1) * counts.var(ddof=1) / law.var()
    assert stats.chi2(len(counts) - 1).cdf(chi2) > 5e-4 and stats.chi2(len(counts) - 1).sf(chi2) > 5e-4
    # Pooled over the merges, the values look like all the rows (two-sample KS on the non-missing x).
    pooled = np.concatenate([ReferenceProfile.merge(profiles, seed=s).sample[:, 0] for s in range(10)])
    everything = pd.concat(frames)["x"].to_numpy()
    assert stats.ks_2samp(pooled[~np.isnan(pooled)], everything[~np.isnan(everything)]).pvalue > 1e-3
    # An unweighted merge (equal rows from each shard) is what the test must tell apart.
    assert abs(counts.mean() - m / 2) > 10 * counts.std() / np.sqrt(len(counts))


@pytest.mark.filterwarnings("ignore:Feature.s. \\['shard'\\] are constant")
def test_merge_of_one_profile_keeps_its_summaries():
    frame = _shards()[0]
    p = ReferenceProfile.from_data(frame, max_samples=100)
    merged = ReferenceProfile.merge([p])
    assert merged.n_rows == p.n_rows
    assert merged.categorical_summary("region") == p.categorical_summary("region")
    assert sorted(map(tuple, merged.sample[:, 1:])) == sorted(map(tuple, p.sample[:, 1:]))


@pytest.mark.filterwarnings("ignore:Feature.s. \\['shard'\\] are constant")
def test_merge_bad_input():
    a = ReferenceProfile.from_data(np.random.default_rng(0).normal(size=(50, 2)), max_samples=20)
    b = ReferenceProfile.from_data(np.random.default_rng(1).normal(size=(50, 3)), max_samples=20)
    with pytest.raises(KerafineError, match="`profiles`.*non-empty list"):
        ReferenceProfile.merge([])
    with pytest.raises(KerafineError, match="`profiles`.*non-empty list"):
        ReferenceProfile.merge(a)
    with pytest.raises(KerafineError, match=r"`profiles`.*items \[1\]"):
        ReferenceProfile.merge([a, "b"])
    with pytest.raises(KerafineError, match=r"profiles\[1\]\.feature_names"):
        ReferenceProfile.merge([a, b])
    with pytest.raises(KerafineError, match="`max_samples`.*received 21.*from 10 to 20"):
        ReferenceProfile.merge([a, a], max_samples=21)


@pytest.mark.filterwarnings("ignore:Feature.s. \\['shard'\\] are constant")
def test_to_bytes_round_trip_keeps_every_summary_and_the_checks():
    frame = _shards()[1]
    p = ReferenceProfile.from_data(frame, max_samples=300)
    q = ReferenceProfile.from_bytes(p.to_bytes())
    assert (q.feature_names, q.categorical, q.n_rows, q.max_samples, q.n_bins, q.seed) == (
        p.feature_names,
        p.categorical,
        p.n_rows,
        p.max_samples,
        p.n_bins,
        p.seed,
    )
    np.testing.assert_array_equal(q.sample, p.sample)
    for name in p.continuous:
        a, b = p.continuous_summary(name), q.continuous_summary(name)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert q.categorical_summary("region") == p.categorical_summary("region")
    current = _shards()[0]
    ra, rb = DriftDetector(p).check(current), DriftDetector(q).check(current)
    assert [(f.name, f.p_value, f.drifted) for f in ra.features] == [
        (f.name, f.p_value, f.drifted) for f in rb.features
    ]


def test_from_bytes_refuses_other_bytes_and_newer_versions():
    import io

    with pytest.raises(CheckpointError, match="Not the bytes of a kerafine ReferenceProfile"):
        ReferenceProfile.from_bytes(b"not a profile")
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(json.dumps({"kind": "something else"}).encode(), np.uint8))
    with pytest.raises(CheckpointError, match="Not the bytes of a kerafine ReferenceProfile.*something else"):
        ReferenceProfile.from_bytes(buf.getvalue())
    p = ReferenceProfile.from_data(np.arange(40.0).reshape(20, 2))
    with np.load(io.BytesIO(p.to_bytes())) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["format_version"] = 99
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(CheckpointError, match="format version 99, newer than this kerafine reads"):
        ReferenceProfile.from_bytes(buf.getvalue())
