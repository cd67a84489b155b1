"""Scale features: bounded-memory fit, disk arrays, n_jobs, the prediction cache,
bfloat16, Accelerate and the batch iterator."""

import collections
import gc
import os
import pickle
import tempfile
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import BayesianRidge, LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from skorch.callbacks import Callback
from torch import nn

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor
from skhydra._storage import DiskArray, RowStore, parse_bytes
from skhydra._training import BatchIterator, HydraNet, RowDataset
from skhydra.ensembles import predict_members

FAST = dict(body_layer_sizes=(16,), phase1_epochs=3, max_epochs=3, batch_size=64, random_state=0)

# Calls made by the counting members below. Counted outside the members so that
# joblib's hash of a member (the cache key) does not change as it is called.
CALLS = collections.Counter()
# Temporary folders of skhydra seen while a fit was running.
SEEN = []
TARGET_KINDS = []


def _skhydra_dirs():
    """The store folders (``skhydra-*``) under the current temporary directory."""
    root = tempfile.gettempdir()
    return sorted(name for name in os.listdir(root) if name.startswith("skhydra-"))


class CountingLogistic(LogisticRegression):
    """A logistic regression that counts its predict_proba calls in CALLS."""

    def predict_proba(self, X):
        CALLS["predict_proba"] += 1
        return super().predict_proba(X)


class NaNLogistic(LogisticRegression):
    """A member whose probabilities are NaN on its first row."""

    def predict_proba(self, X):
        proba = super().predict_proba(X)
        proba[0] = np.nan
        return proba


class FailingLogistic(LogisticRegression):
    """Raises on its second predict_proba call (the synthetic rows), after the
    store already holds the first chunk of targets."""

    def predict_proba(self, X):
        CALLS["failing"] += 1
        if CALLS["failing"] > 1:
            SEEN.extend(_skhydra_dirs())
            raise RuntimeError("member exploded")
        return super().predict_proba(X)


class CountingMLP(nn.Module):
    """A torch member that counts its forward calls in CALLS."""

    def __init__(self, n_features, n_outputs, seed, gaussian=False):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(n_features, 8), nn.Tanh(), nn.Linear(8, n_outputs))
        self.gaussian = gaussian

    def forward(self, x):
        CALLS["forward"] += 1
        out = self.net(x)
        if self.gaussian:
            return torch.stack([out[:, 0], nn.functional.softplus(out[:, 1]) + 0.1], dim=1)
        return out if out.shape[1] > 1 else out[:, 0]


class DirsAtTrainBegin(Callback):
    """Records the store folders present when training starts (in SEEN) and the kinds
    of arrays the training dataset reads its targets from (in TARGET_KINDS)."""

    def on_train_begin(self, net, X=None, **kwargs):
        SEEN.append(_skhydra_dirs())
        TARGET_KINDS.append({type(v).__name__ for k, v in X.y.items() if k != "weight"})


@pytest.fixture(autouse=True)
def _reset_counters():
    CALLS.clear()
    SEEN.clear()
    TARGET_KINDS.clear()


@pytest.fixture
def tmpdir_root(tmp_path, monkeypatch):
    """A fresh, empty ``tempfile.tempdir`` to watch the store's folders in."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def forest(iris):
    X, y = iris
    return RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X)[:150], y[:150]


@pytest.fixture(scope="module")
def forest_regressor(diabetes):
    X, y = diabetes
    return RandomForestRegressor(n_estimators=4, min_samples_leaf=3, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def bayes_ridges(diabetes):
    """Gaussian members (return_std): the aleatoric part is known without y."""
    X, y = diabetes
    rng = np.random.default_rng(0)
    members = []
    for _ in range(3):
        idx = rng.integers(len(X), size=len(X))
        members.append(BayesianRidge().fit(X[idx], y[idx]))
    return members


# -- parse_bytes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        (0, 0),
        (123, 123),
        (np.int64(7), 7),
        ("2GB", 2 * 10**9),
        ("512MiB", 512 * 2**20),
        ("1.5 GB", 1_500_000_000),
        ("1KB", 1000),
        ("1kib", 1024),
        (" 10 B ", 10),
        ("42", 42),
        (".5 TB", 5 * 10**11),
    ],
)
def test_parse_bytes(value, expected):
    assert parse_bytes(value) == expected


@pytest.mark.parametrize("value", [-1, "-1", "lots", "2 XB", "", "1e9", True, False, 1.5, [1]])
def test_parse_bytes_errors_name_the_parameter(value):
    with pytest.raises(ValueError, match="memory_budget"):
        parse_bytes(value)
    with pytest.raises(ValueError, match="^cache_size"):
        parse_bytes(value, name="cache_size")


# -- DiskArray -----------------------------------------------------------------------


def test_disk_array_round_trip(tmp_path):
    values = np.arange(30, dtype=np.float32).reshape(10, 3)
    a = DiskArray(str(tmp_path / "a.bin"), (10, 3), np.float32)
    assert (len(a), a.shape, a.ndim, a.dtype) == (10, (10, 3), 2, np.float32)
    assert a.nbytes == values.nbytes == os.path.getsize(tmp_path / "a.bin")
    a[0:4] = values[0:4]
    a[4:10] = values[4:10].astype(np.float64)  # cast on write
    np.testing.assert_array_equal(a[:], values)
    np.testing.assert_array_equal(a[2:5], values[2:5])
    np.testing.assert_array_equal(a[8:50], values[8:])  # clipped like numpy
    for rows in ([1, 2, 3, 7], [7, 1, 2, 3, 0], [9, 8, 7], [3, 3, 4], [0], []):
        index = np.array(rows, dtype=np.int64)
        got = a[index]
        assert got.dtype == np.float32 and got.shape == (len(rows), 3)
        np.testing.assert_array_equal(got, values[index])
    mask = np.zeros(10, dtype=bool)
    mask[[0, 4, 5, 9]] = True
    np.testing.assert_array_equal(a[mask], values[mask])
    a.close()
    a.close()  # idempotent


def test_disk_array_empty_slices(tmp_path):
    a = DiskArray(str(tmp_path / "e.bin"), (10, 3), np.float32)
    a[:] = 1.0
    a[5:5] = np.empty((0, 3), np.float32)  # writes nothing
    empty = a[5:5]
    assert empty.shape == (0, 3) and empty.dtype == np.float32
    assert a[20:30].shape == (0, 3)
    np.testing.assert_array_equal(a[:], np.ones((10, 3)))
    a.close()


def test_disk_array_broadcast_writes_and_nd_rows(tmp_path):
    a = DiskArray(str(tmp_path / "b.bin"), (6, 2, 2), np.int64)
    a[0:6] = 0
    a[1:3] = 5  # a scalar
    a[3:6] = np.array([[1, 2], [3, 4]])  # one row for every row
    expected = np.zeros((6, 2, 2), np.int64)
    expected[1:3] = 5
    expected[3:6] = [[1, 2], [3, 4]]
    np.testing.assert_array_equal(a[:], expected)
    np.testing.assert_array_equal(a[np.array([5, 1])], expected[[5, 1]])
    with pytest.raises(ValueError):
        a[0:2] = np.ones((3, 2, 2))  # shape mismatch
    a.close()


def test_disk_array_errors(tmp_path):
    a = DiskArray(str(tmp_path / "c.bin"), (4, 2), np.float32)
    a[:] = np.ones((4, 2))
    with pytest.raises(IndexError, match="out of range"):
        a[np.array([1, 4])]
    with pytest.raises(IndexError, match="out of range"):
        a[np.array([-1])]
    with pytest.raises(IndexError, match="contiguous"):
        a[::2]
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(a)
    a.close()


# -- RowStore ------------------------------------------------------------------------


def test_row_store_switches_to_disk_past_the_budget(tmpdir_root):
    store = RowStore(budget=1000)
    small = store.empty((10, 5), np.float32)  # 200 bytes
    exact = store.empty((200,), np.float32)  # 800 more: exactly the budget
    assert isinstance(small, np.ndarray) and isinstance(exact, np.ndarray)
    assert store.in_memory == 1000 and store.on_disk == 0
    assert _skhydra_dirs() == []  # no folder until something goes to disk
    large = store.empty((3, 1), np.float32)  # 12 bytes: over the budget
    assert isinstance(large, DiskArray)
    assert store.on_disk == 12 and store.in_memory == 1000
    folder = tmpdir_root / _skhydra_dirs()[0]
    assert os.path.dirname(large.path) == str(folder)
    large[:] = np.array([[1.0], [2.0], [3.0]])
    np.testing.assert_array_equal(large[np.array([2, 0])], [[3.0], [1.0]])

    store.release(small)  # its 200 bytes are free again
    assert store.in_memory == 800
    again = store.empty((50,), np.float32)
    assert isinstance(again, np.ndarray) and store.in_memory == 1000
    store.release(large)
    assert not os.path.exists(large.path) and folder.exists()

    store.close()
    assert not folder.exists() and _skhydra_dirs() == []
    store.close()  # idempotent


def test_row_store_without_budget_stays_in_memory(tmpdir_root):
    with RowStore(budget=None) as store:
        arrays = [store.empty((1000, 100), np.float64) for _ in range(3)]
        assert all(isinstance(a, np.ndarray) for a in arrays)
        assert store.on_disk == 0 and store.in_memory == 3 * 800_000
    assert _skhydra_dirs() == []


def test_row_store_folder_argument_and_context_manager(tmp_path):
    with RowStore(budget=0, folder=str(tmp_path)) as store:
        array = store.empty((4, 2), np.float32)
        assert isinstance(array, DiskArray)
        folder = os.path.dirname(array.path)
        assert os.path.dirname(folder) == str(tmp_path)
        assert os.path.basename(folder).startswith("skhydra-")
        assert os.listdir(folder) == ["0.bin"]
    assert not os.path.exists(folder)


def test_row_store_removes_its_folder_when_garbage_collected(tmpdir_root):
    store = RowStore(budget=0)
    store.empty((8, 2), np.float32)
    store.empty((8,), np.int64)
    (name,) = _skhydra_dirs()
    assert sorted(os.listdir(tmpdir_root / name)) == ["0.bin", "1.bin"]
    del store
    gc.collect()
    assert _skhydra_dirs() == []


# -- the bounded-memory fit path -----------------------------------------------------


def _fit_pair(make, X, y=None, **params):
    """The same student fitted with everything on disk and everything in memory."""
    on_disk = make(memory_budget=0, callbacks=[DirsAtTrainBegin()], **params).fit(X, y)
    disk_seen = list(SEEN)
    # Both phases trained reading their targets from disk, batch by batch.
    assert TARGET_KINDS == [{"DiskArray"}, {"DiskArray"}]
    SEEN.clear()
    TARGET_KINDS.clear()
    in_memory = make(memory_budget=None, callbacks=[DirsAtTrainBegin()], **params).fit(X, y)
    # Each phase recorded the folders at its start: the disk fit had one, the other none.
    assert len(disk_seen) == 2 and all(len(seen) == 1 for seen in disk_seen)
    assert SEEN == [[], []]
    assert TARGET_KINDS == [{"ndarray"}, {"ndarray"}]
    assert _skhydra_dirs() == []  # removed when fit ended
    return on_disk, in_memory


@pytest.mark.parametrize(
    "augmentation, early_stopping",
    [("noise", True), ("mixup", True), (None, False), ("noise", False)],
)
def test_memory_budget_zero_matches_in_memory_classifier(
    iris, forest, tmpdir_root, augmentation, early_stopping
):
    X, _ = iris

    def make(**params):
        return HydraDistilledClassifier(
            forest, augmentation=augmentation, early_stopping=early_stopping, **FAST, **params
        )

    on_disk, in_memory = _fit_pair(make, X)
    np.testing.assert_array_equal(on_disk.predict_proba(X), in_memory.predict_proba(X))
    np.testing.assert_array_equal(on_disk.predict_members(X), in_memory.predict_members(X))
    pd.testing.assert_frame_equal(on_disk.predict_uncertainty(X), in_memory.predict_uncertainty(X))
    # The fitted student holds no disk array: it pickles and predicts the same.
    restored = pickle.loads(pickle.dumps(on_disk))
    np.testing.assert_array_equal(restored.predict_proba(X), in_memory.predict_proba(X))


@pytest.mark.parametrize(
    "teacher, with_y, augmentation",
    [
        ("forest", True, "noise"),
        ("forest", True, "mixup"),
        ("forest", False, "noise"),
        ("bayes_ridges", False, "mixup"),
        ("bayes_ridges", True, None),
    ],
)
def test_memory_budget_zero_matches_in_memory_regressor(
    request, diabetes, tmpdir_root, teacher, with_y, augmentation
):
    X, y = diabetes
    ensemble = request.getfixturevalue(
        "forest_regressor" if teacher == "forest" else "bayes_ridges"
    )

    def make(**params):
        return HydraDistilledRegressor(
            ensemble, augmentation=augmentation, early_stopping=True, **FAST, **params
        )

    with warnings.catch_warnings():
        # A forest without y: the aleatoric part is unknown (NaN), with a warning.
        warnings.simplefilter("ignore", UserWarning)
        on_disk, in_memory = _fit_pair(make, X, y if with_y else None)
        mean_disk, std_disk = on_disk.predict(X, return_std=True)
        mean_mem, std_mem = in_memory.predict(X, return_std=True)
    np.testing.assert_array_equal(mean_disk, mean_mem)
    np.testing.assert_array_equal(std_disk, std_mem)  # NaN where unknown, in both
    assert np.isfinite(mean_disk).all()
    known = with_y or teacher == "bayes_ridges"
    assert np.isfinite(std_disk).all() == known
    for a, b in zip(on_disk.predict_members(X), in_memory.predict_members(X), strict=True):
        np.testing.assert_array_equal(a, b)


def test_string_budgets(iris, forest, tmpdir_root):
    X, _ = iris
    reference = HydraDistilledClassifier(forest, memory_budget=None, **FAST).fit(X)
    # 300 rows x 3 classes of float32 targets is more than 1 kB: on disk.
    small = HydraDistilledClassifier(
        forest, memory_budget="1KB", callbacks=[DirsAtTrainBegin()], **FAST
    ).fit(X)
    assert len(SEEN) == 2 and all(len(seen) == 1 for seen in SEEN)
    SEEN.clear()
    large = HydraDistilledClassifier(
        forest, memory_budget="1 GiB", callbacks=[DirsAtTrainBegin()], **FAST
    ).fit(X)
    assert SEEN == [[], []]
    assert _skhydra_dirs() == []
    np.testing.assert_array_equal(small.predict_proba(X), reference.predict_proba(X))
    np.testing.assert_array_equal(large.predict_proba(X), reference.predict_proba(X))


@pytest.mark.parametrize("budget", ["lots", "-1", "1e9", -1, True, 2.5])
def test_bad_budget_is_a_clear_error(iris, forest, budget):
    with pytest.raises(ValueError, match="memory_budget"):
        HydraDistilledClassifier(forest, memory_budget=budget, **FAST).fit(iris[0])


def test_temp_folder_removed_when_training_diverges(iris, forest, tmpdir_root):
    model = HydraDistilledClassifier(
        forest,
        memory_budget=0,
        lr=1e12,
        skorch_params={"optimizer": torch.optim.SGD},
        callbacks=[DirsAtTrainBegin()],
        **FAST,
    )
    with pytest.raises(FloatingPointError, match="diverged") as excinfo:
        model.fit(iris[0])
    assert len(SEEN[0]) == 1  # training started with the targets on disk
    # excinfo's traceback keeps fit's frame, and so its store, alive: the folder is
    # gone because fit closed the store, not because the store was collected.
    assert excinfo.tb is not None
    assert _skhydra_dirs() == []


def test_temp_folder_removed_when_a_member_returns_nan(iris, tmpdir_root):
    X, y = iris
    member = NaNLogistic(max_iter=1000).fit(X, y)
    model = HydraDistilledClassifier(
        [member], memory_budget=0, callbacks=[DirsAtTrainBegin()], **FAST
    )
    with pytest.raises((FloatingPointError, ValueError), match="NaN") as excinfo:
        model.fit(X)
    assert len(SEEN[0]) == 1
    assert excinfo.tb is not None and _skhydra_dirs() == []


def test_temp_folder_removed_when_a_member_raises(iris, tmpdir_root):
    X, y = iris
    member = FailingLogistic(max_iter=1000).fit(X, y)
    with pytest.raises(RuntimeError, match="member exploded") as excinfo:
        HydraDistilledClassifier([member], memory_budget=0, **FAST).fit(X)
    assert len(SEEN) == 1  # the store's folder existed when the member failed
    assert excinfo.tb is not None and _skhydra_dirs() == []


# -- n_jobs --------------------------------------------------------------------------


def _assert_same_predictions(a, b):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for p, q in zip(a, b, strict=True):
            np.testing.assert_array_equal(p, q)
    else:
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n_jobs", [2, 3, -1, 16])
@pytest.mark.parametrize("kind", ["forest", "forest_regressor", "mixed", "mixed_regressor"])
def test_predict_members_n_jobs(iris, diabetes, forest, forest_regressor, kind, n_jobs):
    if kind == "forest":
        ensemble, X = forest, iris[0]
    elif kind == "forest_regressor":
        ensemble, X = forest_regressor, diabetes[0]
    elif kind == "mixed":
        X, y = iris
        ensemble = [
            make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
            DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y),
            KNeighborsClassifier().fit(X, y),
            GaussianNB().fit(X, y),
        ]
    else:
        X, y = diabetes
        ensemble = [
            Ridge().fit(X, y),
            BayesianRidge().fit(X, y),
            DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, y),
        ]
    serial = predict_members(ensemble, X, n_jobs=None)
    parallel = predict_members(ensemble, X, n_jobs=n_jobs)
    _assert_same_predictions(serial, parallel)
    # Several chunks of rows, and the members of each chunk over workers.
    _assert_same_predictions(serial, predict_members(ensemble, X, batch_size=40, n_jobs=n_jobs))
    if kind == "mixed_regressor":
        # Point members give NaN variances, the Gaussian member finite ones.
        assert np.isnan(parallel[1][:, [0, 2]]).all() and np.isfinite(parallel[1][:, 1]).all()


def test_students_with_n_jobs_predict_identically(iris, diabetes, forest, forest_regressor):
    X, _ = iris
    one = HydraDistilledClassifier(forest, n_jobs=1, **FAST).fit(X)
    two = HydraDistilledClassifier(forest, n_jobs=2, **FAST).fit(X)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))
    Xr, yr = diabetes
    one = HydraDistilledRegressor(forest_regressor, n_jobs=1, **FAST).fit(Xr, yr)
    two = HydraDistilledRegressor(forest_regressor, n_jobs=2, **FAST).fit(Xr, yr)
    mean_one, std_one = one.predict(Xr, return_std=True)
    mean_two, std_two = two.predict(Xr, return_std=True)
    np.testing.assert_array_equal(mean_one, mean_two)
    np.testing.assert_array_equal(std_one, std_two)


# -- the prediction cache (memory) ---------------------------------------------------


@pytest.fixture(scope="module")
def counting_members(iris):
    X, y = iris
    return [CountingLogistic(C=c, max_iter=1000).fit(X, y) for c in (0.1, 1.0, 10.0)]


def _search(members, X, y, memory):
    search = GridSearchCV(
        HydraDistilledClassifier(members, memory=memory, **FAST),
        {"body_layer_sizes": [(8,), (16,)]},
        cv=2,
    )
    return search.fit(X, y)


@pytest.mark.parametrize("memory_kind", ["path", "joblib"])
def test_memory_cache_in_a_search(iris, counting_members, tmp_path, memory_kind):
    X, y = iris
    # One fit: each member predicts the real rows and the synthetic rows once.
    HydraDistilledClassifier(counting_members, **FAST).fit(X)
    per_fit = CALLS["predict_proba"]
    assert per_fit == 2 * len(counting_members)

    CALLS.clear()
    _search(counting_members, X, y, memory=None)
    uncached = CALLS["predict_proba"]
    assert uncached == 5 * per_fit  # 2 candidates x 2 folds, and the refit

    CALLS.clear()
    location = tmp_path / "cache"
    memory = str(location) if memory_kind == "path" else joblib.Memory(location, verbose=0)
    search = _search(counting_members, X, y, memory=memory)
    # Once per distinct X: the two training folds and the whole X of the refit.
    assert CALLS["predict_proba"] == 3 * per_fit < uncached
    assert any(location.iterdir())

    # A refit on the same X hits the cache, and gives the same student.
    CALLS.clear()
    refit = HydraDistilledClassifier(counting_members, memory=memory, **FAST)
    refit.set_params(**search.best_params_).fit(X, y)
    assert CALLS["predict_proba"] == 0
    np.testing.assert_array_equal(refit.predict_proba(X), search.best_estimator_.predict_proba(X))
    uncached_model = HydraDistilledClassifier(counting_members, **FAST)
    uncached_model.set_params(**search.best_params_).fit(X, y)
    np.testing.assert_array_equal(refit.predict_proba(X), uncached_model.predict_proba(X))


def test_memory_cache_misses_on_other_rows(iris, counting_members, tmp_path):
    X, _ = iris
    memory = str(tmp_path / "cache")
    HydraDistilledClassifier(counting_members, memory=memory, **FAST).fit(X)
    first = CALLS["predict_proba"]
    assert first > 0
    # Another random_state draws other synthetic rows: those are predicted again.
    HydraDistilledClassifier(counting_members, memory=memory, **{**FAST, "random_state": 1}).fit(X)
    assert CALLS["predict_proba"] == first + len(counting_members)
    HydraDistilledClassifier(counting_members, memory=memory, **FAST).fit(X[:100])
    assert CALLS["predict_proba"] == first + len(counting_members) + first


def test_memory_cache_torch_classifier_teacher(iris, tmp_path):
    X, _ = iris
    X = StandardScaler().fit_transform(X).astype(np.float32)
    members = [CountingMLP(4, 3, seed) for seed in range(3)]
    memory = str(tmp_path / "cache")
    first = HydraDistilledClassifier(members, memory=memory, **FAST).fit(X)
    assert CALLS["forward"] > 0
    CALLS.clear()
    second = HydraDistilledClassifier(members, memory=memory, **FAST).fit(X)
    assert CALLS["forward"] == 0  # a cache hit: no member ran
    np.testing.assert_array_equal(second.classes_, [0, 1, 2])  # inferred from the cache
    assert second.predict_proba(X).shape == (len(X), 3)
    np.testing.assert_array_equal(second.predict_proba(X), first.predict_proba(X))
    plain = HydraDistilledClassifier(members, **FAST).fit(X)
    np.testing.assert_array_equal(second.predict_proba(X), plain.predict_proba(X))


@pytest.mark.parametrize("gaussian", [True, False])
def test_memory_cache_torch_regressor_teacher(diabetes, tmp_path, gaussian):
    X, _ = diabetes
    X = X.astype(np.float32)
    members = [CountingMLP(X.shape[1], 2 if gaussian else 1, s, gaussian) for s in range(3)]
    memory = str(tmp_path / "cache")
    with warnings.catch_warnings():
        # Mean-only members and no y: the aleatoric part is unknown, with a warning.
        warnings.simplefilter("ignore", UserWarning)
        first = HydraDistilledRegressor(members, memory=memory, **FAST).fit(X)
        CALLS.clear()
        second = HydraDistilledRegressor(members, memory=memory, **FAST).fit(X)
        assert CALLS["forward"] == 0
        plain = HydraDistilledRegressor(members, **FAST).fit(X)
        u_first, u_second = first.predict_uncertainty(X), second.predict_uncertainty(X)
        u_plain = plain.predict_uncertainty(X)
    # Whether the members give variances is known on the cache hit too.
    assert np.isfinite(u_second["aleatoric"]).all() == gaussian
    pd.testing.assert_frame_equal(u_second, u_first)
    pd.testing.assert_frame_equal(u_second, u_plain)


# -- precision -----------------------------------------------------------------------


def test_bfloat16_on_cpu(iris, forest):
    X, y = iris
    params = {**FAST, "phase1_epochs": 5, "max_epochs": 5, "lr": 1e-2, "batch_size": 32}
    full = HydraDistilledClassifier(forest, **params).fit(X)
    half = HydraDistilledClassifier(forest, precision="bfloat16", **params).fit(X)
    proba = half.predict_proba(X)
    assert proba.dtype == np.float32 or proba.dtype == np.float64
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # The forward pass ran in bfloat16: not bit-identical to float32 ...
    assert np.abs(proba - full.predict_proba(X)).max() > 0
    # ... but close, and the weights themselves stay float32.
    assert half.score(X, y) >= full.score(X, y) - 0.05
    assert half.score(X, y) > 0.8
    assert all(p.dtype == torch.float32 for p in half.net_.module_.parameters())
    assert np.isfinite(half.net_.history[:, "train_loss"]).all()


def test_invalid_precision_is_an_error(iris, forest):
    with pytest.raises(ValueError, match="precision"):
        HydraDistilledClassifier(forest, precision="float16", **FAST).fit(iris[0])


# -- Accelerate ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def accelerator():
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState

    yield accelerate.Accelerator(cpu=True)
    # The accelerator's state is process-wide: leave none behind for other modules.
    AcceleratorState._reset_state(reset_partial_state=True)


def test_accelerator_classifier(iris, forest, accelerator, capsys):
    X, _ = iris
    model = HydraDistilledClassifier(forest, accelerator=accelerator, **FAST).fit(X)
    assert capsys.readouterr().out == ""  # verbose=0 prints nothing
    assert model.device_ == "cpu"
    assert type(model.net_) is HydraNet
    assert not hasattr(model.net_, "accelerator")
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    restored = pickle.loads(pickle.dumps(model))
    assert type(restored.net_) is HydraNet
    np.testing.assert_array_equal(restored.predict_proba(X), proba)
    # One CPU process trains the same student as no accelerator.
    plain = HydraDistilledClassifier(forest, **FAST).fit(X)
    np.testing.assert_allclose(proba, plain.predict_proba(X), atol=1e-5)


def test_accelerator_regressor_verbose(diabetes, forest_regressor, accelerator, capsys):
    X, y = diabetes
    model = HydraDistilledRegressor(
        forest_regressor, accelerator=accelerator, verbose=1, **FAST
    ).fit(X, y)
    out = capsys.readouterr().out
    assert "Phase 1" in out and "Phase 2" in out
    assert "train_loss" in out and "valid_loss" in out
    assert model.device_ == "cpu" and type(model.net_) is HydraNet
    mean, std = model.predict(X, return_std=True)
    assert np.isfinite(mean).all() and (std > 0).all()
    restored = pickle.loads(pickle.dumps(model))
    for a, b in zip(restored.predict(X, return_std=True), (mean, std), strict=True):
        np.testing.assert_array_equal(a, b)


def test_accelerator_must_prepare_and_backward(iris, forest):
    with pytest.raises(ValueError, match="accelerator"):
        HydraDistilledClassifier(forest, accelerator=object(), **FAST).fit(iris[0])


# -- BatchIterator -------------------------------------------------------------------


def _dataset(n=23, rows=None, targets=None):
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = {"t": np.arange(n, dtype=np.float64) if targets is None else targets}
    return RowDataset(X, y, rows)


def _epoch(iterator):
    batches = list(iterator)
    assert len(batches) == len(iterator)
    for Xb, yb in batches:
        assert len(Xb) == len(yb["t"]) <= iterator.batch_size
        np.testing.assert_array_equal(Xb[:, 0] / 2, yb["t"])  # rows stay aligned
    return batches, np.concatenate([yb["t"] for _, yb in batches]).astype(int)


@pytest.mark.parametrize("batch_size", [1, 5, 23, 64])
def test_batch_iterator_covers_every_row_once(batch_size):
    iterator = BatchIterator(_dataset(), batch_size, shuffle=True, generator=torch.Generator())
    orders = []
    for _ in range(3):
        _, rows = _epoch(iterator)
        assert sorted(rows.tolist()) == list(range(23))
        orders.append(rows.tolist())
    if 1 < batch_size < 23:
        assert orders[0] != orders[1] or orders[1] != orders[2]  # a new order per epoch
    _, rows = _epoch(BatchIterator(_dataset(), batch_size))
    assert rows.tolist() == list(range(23))  # without shuffle: in order


def test_batch_iterator_is_reproducible_with_a_seeded_generator():
    a = BatchIterator(_dataset(), 4, shuffle=True, generator=torch.Generator().manual_seed(3))
    b = BatchIterator(_dataset(), 4, shuffle=True, generator=torch.Generator().manual_seed(3))
    assert _epoch(a)[1].tolist() == _epoch(b)[1].tolist()


@pytest.mark.parametrize("n, count", [(23, 3), (24, 4), (5, 2), (3, 4)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_iterator_shards(n, count, shuffle):
    shares = []
    for index in range(count):
        # Every process draws the same permutation and keeps its own share.
        iterator = BatchIterator(
            _dataset(n),
            4,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(0),
            shard=(index, count),
        )
        _, rows = _epoch(iterator)
        shares.append(rows)
    per_share = -(-n // count)
    assert all(len(share) == per_share for share in shares)
    assert set(np.concatenate(shares).tolist()) == set(range(n))
    if n % count == 0:  # no padding: the shares are disjoint
        assert sorted(np.concatenate(shares).tolist()) == list(range(n))


def test_batch_iterator_on_a_row_subset_with_disk_targets(tmp_path):
    n = 30
    with RowStore(budget=0, folder=str(tmp_path)) as store:
        targets = store.empty((n,), np.float64)
        assert isinstance(targets, DiskArray)
        targets[0:n] = np.arange(n, dtype=np.float64)
        rows = np.array([1, 2, 3, 7, 8, 15, 20, 21, 22, 29])
        dataset = _dataset(n, rows=rows, targets=targets)
        assert len(dataset) == len(rows)
        iterator = BatchIterator(dataset, 3, shuffle=True, generator=torch.Generator())
        batches, got = _epoch(iterator)
        assert len(batches) == len(iterator) == 4
        assert sorted(got.tolist()) == rows.tolist()
        _, got = _epoch(BatchIterator(dataset, 4))
        assert got.tolist() == rows.tolist()
        assert dataset.nbytes == len(rows) * (2 * 4 + 8)


# -- HydraNet history ----------------------------------------------------------------


class BatchLosses(Callback):
    """Records the loss of every training batch as the step returns it (in SEEN)."""

    def on_batch_end(self, net, training=False, loss=None, **kwargs):
        if training:
            SEEN.append(float(loss.detach()))


def test_history_records_one_weighted_train_loss_per_epoch(iris, forest):
    X, _ = iris
    model = HydraDistilledClassifier(
        forest, callbacks=[BatchLosses()], **{**FAST, "early_stopping": False, "batch_size": 48}
    ).fit(X)
    history = model.net_.history
    assert len(history) == FAST["phase1_epochs"] + FAST["max_epochs"]
    n_rows = 2 * len(X)  # real and synthetic rows
    recorded = [b["train_loss"] for epoch in history for b in epoch["batches"]]
    # The batch losses read back at the end of each epoch are the steps' own losses.
    np.testing.assert_allclose(recorded, SEEN, rtol=1e-6)
    for epoch in history:
        batches = epoch["batches"]
        assert len(batches) == epoch["train_batch_count"] == -(-n_rows // 48)
        assert all("train_loss" in b and np.isfinite(b["train_loss"]) for b in batches)
        sizes = [b["train_batch_size"] for b in batches]
        assert sum(sizes) == n_rows
        expected = np.average([b["train_loss"] for b in batches], weights=sizes)
        assert np.isfinite(epoch["train_loss"])
        assert epoch["train_loss"] == pytest.approx(expected, rel=1e-6)
    # Losses of different epochs differ: each epoch records its own.
    assert len(set(history[:, "train_loss"])) == len(history)


def test_history_valid_loss_with_early_stopping(iris, forest):
    X, _ = iris
    model = HydraDistilledClassifier(forest, **{**FAST, "early_stopping": True}).fit(X)
    for epoch in model.net_.history:
        valid = [b for b in epoch["batches"] if "valid_loss" in b]
        assert valid and np.isfinite(epoch["valid_loss"])
        expected = np.average(
            [b["valid_loss"] for b in valid], weights=[b["valid_batch_size"] for b in valid]
        )
        assert epoch["valid_loss"] == pytest.approx(expected, rel=1e-6)


# -- devices -------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_an_error(iris, forest):
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="no CUDA GPU"):
            HydraDistilledClassifier(forest, device=device, **FAST).fit(iris[0])


def test_predict_members_under_a_process_backend():
    # joblib.parallel_config chooses the backend (loky here; dask or ray likewise).
    from joblib import parallel_config

    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=6, random_state=0).fit(X, y)
    with parallel_config(backend="loky"):
        parallel = predict_members(forest, X, n_jobs=2)
    np.testing.assert_array_equal(parallel, predict_members(forest, X))
