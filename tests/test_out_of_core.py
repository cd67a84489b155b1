"""Transfer sets on disk: fit reads a memmap, zarr or Dask array block by block."""

import tracemalloc

import numpy as np
import pytest
from conftest import TINY as SMALL
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skhydra._base as base
from skhydra import HydraDistilledClassifier, HydraDistilledRegressor
from skhydra._rows import BLOCK_ROWS, SCAN_NUMBERS, ConcatRows, OutOfCoreRows, is_out_of_core
from skhydra._transfer import input_scaling

#: Larger batches than the suite's TINY: these fits see thousands of synthetic rows.
TINY = dict(SMALL, batch_size=256)


def _on_disk(X, tmp_path, name="X.npy"):
    path = tmp_path / name
    np.save(path, X)
    return np.load(path, mmap_mode="r")


@pytest.fixture(scope="module")
def table():
    X, y = make_classification(1200, 8, n_informative=5, random_state=0)
    X = X.astype(np.float32)
    forest = RandomForestClassifier(10, max_depth=6, random_state=0).fit(X, y)
    return X, y, forest


def _containers(X, tmp_path):
    zarr = pytest.importorskip("zarr")
    da = pytest.importorskip("dask.array")
    z = zarr.open_array(
        store=str(tmp_path / "X.zarr"), mode="w", shape=X.shape, dtype=X.dtype, chunks=(500, 8)
    )
    z[:] = X
    return {
        "memmap": _on_disk(X, tmp_path),
        "zarr": z,
        "dask": da.from_array(X, chunks=(700, 8)),
    }


def test_out_of_core_containers_are_recognised(tmp_path):
    X = np.zeros((4, 2), np.float32)
    found = {k: is_out_of_core(v) for k, v in _containers(X, tmp_path).items()}
    assert found == {"memmap": True, "zarr": True, "dask": True}
    assert not is_out_of_core(X)
    assert not is_out_of_core(X.tolist())


def test_student_from_disk_equals_student_from_memory(table, tmp_path):
    """One block of rows: the same student, bit for bit, from every container."""
    X, _, forest = table
    in_memory = HydraDistilledClassifier(forest, **TINY).fit(X)
    expected = in_memory.predict_proba(X)
    for name, X_disk in _containers(X, tmp_path).items():
        student = HydraDistilledClassifier(forest, **TINY).fit(X_disk)
        np.testing.assert_array_equal(student.predict_proba(X), expected, err_msg=name)
        np.testing.assert_array_equal(student.predict_proba(X_disk), expected, err_msg=name)
        assert student.n_features_in_ == X.shape[1]


def test_student_from_many_blocks_matches_memory(tmp_path):
    """Rows over several blocks: statistics merged block by block, equal up to rounding."""
    X, y = make_regression(2 * SCAN_NUMBERS // 6 + 17, 6, noise=5.0, random_state=1)
    X = (X * 3.0 + 10.0).astype(np.float32)
    forest = RandomForestRegressor(5, max_depth=5, random_state=0).fit(X[:2000], y[:2000])
    params = dict(TINY, phase1_epochs=1, max_epochs=2, batch_size=512, augmentation=None)
    in_memory = HydraDistilledRegressor(forest, **params).fit(X, y)
    on_disk = HydraDistilledRegressor(forest, **params).fit(_on_disk(X, tmp_path), y)
    rows = OutOfCoreRows(_on_disk(X, tmp_path, "again.npy"))
    statistics = rows.scan(allow_nan=False)
    loc, scale = input_scaling(X, "auto")
    np.testing.assert_allclose(statistics.scaling("auto")[0], loc, rtol=1e-6)
    np.testing.assert_allclose(statistics.scaling("auto")[1], scale, rtol=1e-6)
    mean, std = in_memory.predict(X[:500], return_std=True)
    mean_disk, std_disk = on_disk.predict(X[:500], return_std=True)
    np.testing.assert_allclose(mean_disk, mean, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(std_disk, std, rtol=1e-3, atol=1e-3)


def test_fit_never_loads_the_table_whole(tmp_path):
    """Peak traced allocations of a fit stay well under the size of X on disk."""
    n, d = 100_000, 200  # 80 MB of float32
    X = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(0)
    for start in range(0, n, 20_000):
        X[start : start + 20_000] = rng.standard_normal((20_000, d), dtype=np.float32)
    X.flush()
    X = np.load(tmp_path / "big.npy", mmap_mode="r")
    y = (X[:1000, 0] > 0).astype(int)
    forest = RandomForestClassifier(4, max_depth=4, random_state=0).fit(X[:1000], y)
    params = dict(TINY, phase1_epochs=1, max_epochs=2, batch_size=1024, augmentation=None)
    HydraDistilledClassifier(forest, **params).fit(X[:1000])  # imports and warm-up
    tracemalloc.start()
    try:
        student = HydraDistilledClassifier(forest, **params).fit(X)
        proba = student.predict_proba(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert proba.shape == (n, 2)
    assert peak < X.nbytes / 2, f"peak {peak / 1e6:.1f} MB for {X.nbytes / 1e6:.0f} MB of X"


def test_synthetic_rows_come_from_a_bounded_sample(table, tmp_path, monkeypatch):
    X, _, forest = table
    seen = {}
    augment = base.augment

    def spy(teacher, X_teacher, X_student, *args, **kwargs):
        seen["rows"] = type(X_student), len(X_student)
        return augment(teacher, X_teacher, X_student, *args, **kwargs)

    monkeypatch.setattr(base, "augment", spy)
    monkeypatch.setattr(base, "AUGMENT_SAMPLE_ROWS", 500)
    student = HydraDistilledClassifier(forest, **TINY).fit(_on_disk(X, tmp_path))
    assert seen["rows"] == (np.ndarray, 500)
    assert student.score(X, forest.predict(X)) > 0.8


def test_concat_rows_reads_both_parts():
    first = OutOfCoreRows(np.arange(10.0).reshape(5, 2))
    rows = ConcatRows(first, np.full((3, 2), -1.0, np.float32))
    assert rows.shape == (8, 2) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[np.array([0, 4, 5, 7])][:, 0], [0.0, 8.0, -1.0, -1.0])
    np.testing.assert_array_equal(rows[3:6][:, 1], [7.0, 9.0, -1.0])
    mask = np.zeros(8, bool)
    mask[[1, 6]] = True
    np.testing.assert_array_equal(rows[mask][:, 0], [2.0, -1.0])


def test_reads_do_not_return_views_of_the_map(tmp_path):
    X = _on_disk(np.arange(20.0, dtype=np.float32).reshape(10, 2), tmp_path)
    rows = OutOfCoreRows(X)
    block = rows[2:5]
    assert type(block) is np.ndarray and block.flags.owndata
    assert type(rows[np.array([1, 7])]) is np.ndarray


def test_bad_values_on_disk_are_named(table, tmp_path):
    X, y, forest = table
    smooth = [LogisticRegression().fit(X, y)]  # takes no NaN, unlike the forest
    bad = X.copy()
    bad[1100, 3] = np.nan
    with pytest.raises(ValueError, match="contains NaN .*from row"):
        HydraDistilledClassifier(smooth, **TINY).fit(_on_disk(bad, tmp_path, "nan.npy"))
    bad[1100, 3] = np.inf
    with pytest.raises(ValueError, match="contains infinity"):
        HydraDistilledClassifier(forest, **TINY).fit(_on_disk(bad, tmp_path, "inf.npy"))


def test_nan_on_disk_is_accepted_when_the_teacher_takes_it(tmp_path):
    X, y = make_classification(600, 5, random_state=0)
    X[::7, 2] = np.nan
    forest = RandomForestClassifier(5, random_state=0).fit(X, y)
    on_disk = HydraDistilledClassifier(forest, **TINY).fit(_on_disk(X, tmp_path))
    in_memory = HydraDistilledClassifier(forest, **TINY).fit(X)
    np.testing.assert_array_equal(on_disk.predict_proba(X), in_memory.predict_proba(X))


def test_prediction_from_disk_checks_each_block(table, tmp_path):
    X, _, forest = table
    student = HydraDistilledClassifier([LogisticRegression().fit(X, forest.predict(X))], **TINY)
    student.fit(X)
    bad = X.copy()
    bad[-1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        student.predict_proba(_on_disk(bad, tmp_path))
    with pytest.raises(ValueError, match="X has 5 features"):
        student.predict(_on_disk(X[:, :5], tmp_path, "narrow.npy"))


def test_out_of_core_refusals(table, tmp_path):
    da = pytest.importorskip("dask.array")
    X, y, forest = table
    X_dask = da.from_array(X, chunks=(1000, 8))
    pipeline = make_pipeline(StandardScaler(), forest).fit(X, y)
    with pytest.raises(ValueError, match="preprocessing steps"):
        HydraDistilledClassifier(pipeline, **TINY).fit(X_dask)
    with pytest.raises(ValueError, match="not fitted"):
        HydraDistilledClassifier(RandomForestClassifier(3), **TINY).fit(X_dask, y)
    with pytest.raises(ValueError, match="not fitted"):
        HydraDistilledClassifier(**TINY).fit(X_dask, y)
    cube = _on_disk(np.zeros((10, 2, 2), np.float32), tmp_path, "cube.npy")
    with pytest.raises(ValueError, match="must be a table"):
        HydraDistilledClassifier(forest, **TINY).fit(cube)


def test_a_memmap_is_read_whole_where_the_teacher_needs_it(table, tmp_path, monkeypatch):
    """A memmap is an ndarray: fitted here, or preprocessed, it is used as one."""
    X, y, forest = table
    X_disk = _on_disk(X, tmp_path)
    monkeypatch.setattr(OutOfCoreRows, "scan", lambda *a, **k: pytest.fail("read block by block"))
    pipeline = make_pipeline(StandardScaler(), forest).fit(X, y)
    for ensemble in (pipeline, RandomForestClassifier(3, random_state=0), None):
        student = HydraDistilledClassifier(ensemble, **TINY).fit(X_disk, y)
        expected = HydraDistilledClassifier(ensemble, **TINY).fit(X, y)
        np.testing.assert_array_equal(student.predict_proba(X), expected.predict_proba(X))


def test_scattered_reads_go_window_by_window(tmp_path, monkeypatch):
    """Many scattered rows of a memmap: read through one map per window, in the asked order."""
    X = np.random.default_rng(0).standard_normal((5 * BLOCK_ROWS, 3)).astype(np.float32)
    rows = OutOfCoreRows(_on_disk(X, tmp_path))
    index = np.random.default_rng(1).integers(0, len(X), 3000)  # unsorted, with repeats
    maps = []
    reopen = rows._reopen
    monkeypatch.setattr(rows, "_reopen", lambda: maps.append(1) or reopen())
    np.testing.assert_array_equal(rows[index], X[index])
    assert len(maps) == 5  # one per window of BLOCK_ROWS rows
    maps.clear()
    np.testing.assert_array_equal(rows[index[:100]], X[index[:100]])
    assert len(maps) == 1  # a training batch: one map
