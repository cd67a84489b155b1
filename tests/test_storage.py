"""skhydra._storage: parse_bytes, DiskArray, RowStore and its temporary folder, and the
estimators' memory_budget (targets on disk give the same student as targets in RAM)."""

import collections
import gc
import os
import pickle
import tempfile
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY
from sklearn.linear_model import BayesianRidge, LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor
from skhydra._storage import DiskArray, RowStore, parse_bytes

# Calls made by the members below, counted outside them. Also the store folders
# seen while a fit was running, and the kinds of arrays training read targets from.
CALLS = collections.Counter()
SEEN = []
TARGET_KINDS = []


def _skhydra_dirs():
    """The store folders (``skhydra-*``) under the current temporary directory."""
    root = tempfile.gettempdir()
    return sorted(name for name in os.listdir(root) if name.startswith("skhydra-"))


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


class DirsAtTrainBegin(Callback):
    """Records the store folders present when a phase starts (in SEEN) and the kinds
    of arrays its training dataset reads the targets from (in TARGET_KINDS)."""

    def on_train_begin(self, net, X=None, **kwargs):
        SEEN.append(_skhydra_dirs())
        TARGET_KINDS.append({type(v).__name__ for k, v in X.targets.items() if k != "weight"})


@pytest.fixture(autouse=True)
def _reset_records():
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
    np.testing.assert_array_equal(a[::3], values[::3])  # steps are fine too
    for rows in ([1, 2, 3, 7], [7, 1, 2, 3, 0], [9, 8, 7], [3, 3, 4], [0], [-1, -10], []):
        index = np.array(rows, dtype=np.int64)
        got = a[index]
        assert got.dtype == np.float32 and got.shape == (len(rows), 3)
        np.testing.assert_array_equal(got, values[index])  # negative rows count from the end
    mask = np.zeros(10, dtype=bool)
    mask[[0, 4, 5, 9]] = True
    np.testing.assert_array_equal(a[mask], values[mask])


def test_disk_array_writes_take_any_numpy_index(tmp_path):
    a = DiskArray(str(tmp_path / "w.bin"), (6, 2), np.float64)
    expected = np.zeros((6, 2))
    a[:] = 0.0
    mask = np.array([True, False, False, True, False, False])
    for index, value in [
        (np.array([4, 1]), [[1.0, 2.0], [3.0, 4.0]]),
        (mask, 7.0),
        (slice(None, None, 5), [[8.0, 9.0]]),
        (2, [5.0, 6.0]),
        (np.array([-1]), -1.0),
    ]:
        a[index] = value
        expected[index] = value
        np.testing.assert_array_equal(a[:], expected)


def test_disk_array_empty_slices_and_empty_arrays(tmp_path):
    a = DiskArray(str(tmp_path / "e.bin"), (10, 3), np.float32)
    a[:] = 1.0
    a[5:5] = np.empty((0, 3), np.float32)  # writes nothing
    empty = a[5:5]
    assert empty.shape == (0, 3) and empty.dtype == np.float32
    assert a[20:30].shape == (0, 3)
    np.testing.assert_array_equal(a[:], np.ones((10, 3)))
    # An array of no rows (numpy cannot map an empty file).
    none = DiskArray(str(tmp_path / "n.bin"), (0, 3), np.float32)
    assert len(none) == 0 and none.nbytes == 0 and os.path.getsize(tmp_path / "n.bin") == 0
    none[:] = np.empty((0, 3))
    assert none[:].shape == (0, 3) and none[np.array([], dtype=int)].shape == (0, 3)


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


def test_disk_array_errors(tmp_path):
    a = DiskArray(str(tmp_path / "c.bin"), (4, 2), np.float32)
    a[:] = np.ones((4, 2))
    with pytest.raises(IndexError, match="out of bounds"):
        a[np.array([1, 4])]
    with pytest.raises(IndexError, match="out of bounds"):
        a[np.array([-5])]
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(a)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps")
def test_disk_array_keeps_no_mapping_between_accesses(tmp_path):
    # A map kept open would count the file's touched pages in the resident memory
    # that memory_budget bounds; each access maps the file and lets the map go.
    path = str(tmp_path / "m.bin")

    def mapped():
        with open("/proc/self/maps") as f:
            return path in f.read()

    a = DiskArray(path, (4096, 4), np.float32)
    probe = np.memmap(path, dtype=np.float32, mode="r", shape=(4096, 4))
    assert mapped()  # the check sees a live map of the file
    del probe
    gc.collect()
    assert not mapped()
    a[0:4096] = np.ones((4096, 4), np.float32)
    a[np.array([7, 3])] = 2.0
    rows = a[np.array([3, 7, 9])]
    block = a[10:20]
    assert not mapped()
    # What a read returns is an in-memory copy, not a view of a map.
    for got in (rows, block):
        assert type(got) is np.ndarray and got.flags.owndata
    np.testing.assert_array_equal(rows[:, 0], [2.0, 2.0, 1.0])
    assert not any(isinstance(v, np.memmap) for v in vars(a).values())


# -- RowStore ------------------------------------------------------------------------


def test_row_store_switches_to_disk_past_the_budget(tmpdir_root):
    store = RowStore(budget=1000)
    small = store.empty((10, 5), np.float32)  # 200 bytes
    exact = store.empty((200,), np.float32)  # 800 more: exactly the budget
    assert isinstance(small, np.ndarray) and isinstance(exact, np.ndarray)
    assert small.shape == (10, 5) and exact.dtype == np.float32
    assert store.in_memory == 1000 and store.on_disk == 0
    assert _skhydra_dirs() == []  # no folder until something goes to disk
    large = store.empty((3, 1), np.float32)  # 12 bytes: over the budget
    assert isinstance(large, DiskArray) and large.shape == (3, 1)
    assert store.on_disk == 12 and store.in_memory == 1000
    (name,) = _skhydra_dirs()
    folder = tmpdir_root / name
    assert os.path.dirname(large.path) == str(folder)
    large[:] = np.array([[1.0], [2.0], [3.0]])
    np.testing.assert_array_equal(large[np.array([2, 0])], [[3.0], [1.0]])
    # Once over the budget, later arrays go to the same folder, in new files.
    other = store.empty((2,), np.int64)
    assert isinstance(other, DiskArray) and other.path != large.path
    assert sorted(os.listdir(folder)) == ["0.bin", "1.bin"] and store.on_disk == 28

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


# -- memory_budget in the estimators ---------------------------------------------------


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
            forest, augmentation=augmentation, early_stopping=early_stopping, **TINY, **params
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
        ("forest_r", True, "noise"),
        ("forest_r", True, "mixup"),
        ("forest_r", False, "noise"),
        ("bayes_ridges", False, "mixup"),
        ("bayes_ridges", True, None),
    ],
)
def test_memory_budget_zero_matches_in_memory_regressor(
    request, diabetes, tmpdir_root, teacher, with_y, augmentation
):
    X, y = diabetes
    ensemble = request.getfixturevalue(teacher)

    def make(**params):
        return HydraDistilledRegressor(
            ensemble, augmentation=augmentation, early_stopping=True, **TINY, **params
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
    reference = HydraDistilledClassifier(forest, memory_budget=None, **TINY).fit(X)
    # 300 rows x 3 classes of float32 targets is more than 1 kB: on disk.
    small = HydraDistilledClassifier(
        forest, memory_budget="1KB", callbacks=[DirsAtTrainBegin()], **TINY
    ).fit(X)
    assert len(SEEN) == 2 and all(len(seen) == 1 for seen in SEEN)
    SEEN.clear()
    large = HydraDistilledClassifier(
        forest, memory_budget="1 GiB", callbacks=[DirsAtTrainBegin()], **TINY
    ).fit(X)
    assert SEEN == [[], []]
    assert _skhydra_dirs() == []
    np.testing.assert_array_equal(small.predict_proba(X), reference.predict_proba(X))
    np.testing.assert_array_equal(large.predict_proba(X), reference.predict_proba(X))


@pytest.mark.parametrize("budget", ["lots", "-1", "1e9", "2 XB", "", -1, 2.5])
def test_bad_budget_is_a_clear_error(iris, forest, budget):
    message = (
        "The 'memory_budget' parameter of HydraDistilledClassifier must be an int in the "
        "range [0, inf), a str such as '2GB' or '512MiB' or None"
    )
    with pytest.raises(InvalidParameterError) as excinfo:
        HydraDistilledClassifier(forest, memory_budget=budget, **TINY).fit(iris[0])
    assert str(excinfo.value).startswith(message)


def test_boolean_budget_is_a_clear_error(iris, forest):
    # bool is an Integral, which scikit-learn's validation accepts; parse_bytes refuses it.
    with pytest.raises(ValueError, match="memory_budget must be a number of bytes"):
        HydraDistilledClassifier(forest, memory_budget=True, **TINY).fit(iris[0])


def test_temp_folder_removed_when_training_diverges(iris, forest, tmpdir_root):
    model = HydraDistilledClassifier(
        forest,
        memory_budget=0,
        lr=1e12,
        skorch_params={"optimizer": torch.optim.SGD},
        callbacks=[DirsAtTrainBegin()],
        **TINY,
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
        [member], memory_budget=0, callbacks=[DirsAtTrainBegin()], **TINY
    )
    # The teacher's predictions are checked as they come: a clear error before training.
    with pytest.raises(ValueError, match="Member 0 of the ensemble predicted NaN") as excinfo:
        model.fit(X)
    assert SEEN == []
    assert excinfo.tb is not None and _skhydra_dirs() == []


def test_temp_folder_removed_when_a_member_raises(iris, tmpdir_root):
    X, y = iris
    member = FailingLogistic(max_iter=1000).fit(X, y)
    with pytest.raises(RuntimeError, match="member exploded") as excinfo:
        HydraDistilledClassifier([member], memory_budget=0, **TINY).fit(X)
    assert len(SEEN) == 1  # the store's folder existed when the member failed
    assert excinfo.tb is not None and _skhydra_dirs() == []
