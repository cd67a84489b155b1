"""skhydra._data: TransferDataset (rows read in order, row subsets, disk-backed targets,
device copies) and batch_loader (every row once per epoch, shuffling, batch sizes).

device="cpu" stands in for a GPU: TransferDataset.to is plain tensor code.
"""

import numpy as np
import pytest
import torch
from skorch.dataset import Dataset as SkorchDataset

from skhydra import _data
from skhydra._data import TransferDataset, batch_loader
from skhydra._storage import DiskArray, RowStore


class RecordingArray:
    """An array that records the row indices it is read with."""

    def __init__(self, values):
        self.values = values
        self.shape, self.dtype = values.shape, values.dtype
        self.reads = []

    def __len__(self):
        return len(self.values)

    def __getitem__(self, index):
        self.reads.append(np.asarray(index).tolist())
        return self.values[index]


def _rows_dataset(n=23, rows=None, store=None):
    """X row i is (2i, 2i + 1), target "t" of row i is i, target "u" of row i is (10i,)."""
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    targets = {"t": np.arange(n, dtype=np.float64), "u": np.arange(n, dtype=np.float32)[:, None]}
    targets["u"] = targets["u"] * 10
    if store is not None:
        for key, value in targets.items():
            targets[key] = store.empty(value.shape, value.dtype)
            targets[key][0:n] = value
    return TransferDataset(X, targets, rows)


def _row_numbers(X, targets):
    """The row numbers of a batch, checking that its targets are those of its rows."""
    X, t, u = (np.asarray(v) for v in (X, targets["t"], targets["u"]))
    rows = (X[:, 0] / 2).astype(int)
    np.testing.assert_array_equal(X[:, 1], 2 * rows + 1)
    np.testing.assert_array_equal(t, rows)
    np.testing.assert_array_equal(u[:, 0], 10 * rows)
    return rows.tolist()


def _epoch(loader):
    """The row numbers of one epoch, batch by batch."""
    batches = [_row_numbers(X, targets) for X, targets in loader]
    assert len(batches) == len(loader)
    return batches


@pytest.fixture
def disk_store(tmp_path):
    with RowStore(budget=0, folder=str(tmp_path)) as store:
        yield store


# -- TransferDataset -----------------------------------------------------------------


def test_getitems_reads_rows_in_sorted_order():
    X = RecordingArray(np.arange(20.0).reshape(10, 2))
    t = RecordingArray(np.arange(10.0))
    dataset = TransferDataset(X, {"t": t})
    X_batch, targets = dataset.__getitems__([7, 2, 9, 0])
    # One read per array, in file order; the batch comes in that order too.
    assert X.reads == t.reads == [[0, 2, 7, 9]]
    np.testing.assert_array_equal(targets["t"], [0, 2, 7, 9])
    np.testing.assert_array_equal(X_batch[:, 0], [0, 4, 14, 18])


def test_row_subset_maps_positions_to_rows():
    rows = np.array([1, 4, 5, 8, 20])
    dataset = _rows_dataset(rows=rows)
    assert len(dataset) == 5
    X, targets = dataset.__getitems__([4, 0, 2])
    assert _row_numbers(X, targets) == [1, 5, 20]
    X, targets = dataset[3]  # one position
    np.testing.assert_array_equal(X, [16.0, 17.0])
    assert targets["t"] == 8.0 and targets["u"].tolist() == [80.0]
    with pytest.raises(IndexError):
        dataset.__getitems__([5])


def test_disk_backed_targets(disk_store):
    rows = np.array([0, 3, 4, 10, 22])
    dataset = _rows_dataset(rows=rows, store=disk_store)
    assert {type(v) for v in dataset.targets.values()} == {DiskArray}
    X, targets = dataset.__getitems__([4, 1, 3])
    assert all(type(v) is np.ndarray for v in targets.values())  # read into memory
    assert _row_numbers(X, targets) == [3, 10, 22]


@pytest.mark.parametrize("disk", [False, True])
def test_nbytes_counts_the_rows_of_the_dataset(disk, disk_store):
    # Per row: two float32 inputs, a float64 "t" and a float32 "u".
    per_row = 2 * 4 + 8 + 4
    store = disk_store if disk else None
    assert _rows_dataset(store=store).nbytes == 23 * per_row
    assert _rows_dataset(rows=np.arange(3, 13), store=store).nbytes == 10 * per_row


def test_nbytes_of_a_dataset_of_tensors():
    dataset = _rows_dataset(rows=np.arange(3, 13)).to("cpu")
    assert dataset.nbytes == 10 * (2 * 4 + 8 + 4)


@pytest.mark.parametrize("block_rows", [65536, 3])
@pytest.mark.parametrize("disk", [False, True])
def test_to_device_copies_the_rows_block_by_block(monkeypatch, disk_store, block_rows, disk):
    monkeypatch.setattr(_data, "_BLOCK_ROWS", block_rows)
    rows = np.arange(2, 23, 2)  # 11 rows: blocks of 3, 3, 3 and 2
    host = _rows_dataset(rows=rows, store=disk_store if disk else None)
    moved = host.to("cpu")
    assert moved.rows is None and len(moved) == len(rows)
    assert isinstance(moved.X, torch.Tensor) and moved.X.device.type == "cpu"
    assert moved.X.dtype == torch.float32 and moved.X.shape == (11, 2)
    assert moved.targets["t"].dtype == torch.float64 and moved.targets["u"].shape == (11, 1)
    X, targets = moved.__getitems__(list(range(11)))
    assert _row_numbers(X, targets) == rows.tolist()
    X, targets = moved.__getitems__([9, 0, 4])
    assert isinstance(X, torch.Tensor)
    assert _row_numbers(X, targets) == [rows[0], rows[4], rows[9]]
    assert host.rows is rows and isinstance(host.X, np.ndarray)  # the original is unchanged


# -- batch_loader --------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 5, 23, 64])
def test_batch_loader_covers_every_row_once_per_epoch(batch_size):
    loader = batch_loader(
        _rows_dataset(), batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    assert len(loader) == -(-23 // batch_size)
    orders = []
    for _ in range(3):
        batches = _epoch(loader)
        assert all(len(b) == batch_size for b in batches[:-1])
        assert 1 <= len(batches[-1]) <= batch_size
        rows = [row for batch in batches for row in batch]
        assert sorted(rows) == list(range(23))
        orders.append(rows)
    if 1 < batch_size < 23:
        # A new permutation each epoch (three equal orders are a 1 in 23!^2 chance).
        assert orders[0] != orders[1] or orders[1] != orders[2]
    # Without shuffle: in order.
    in_order = _epoch(batch_loader(_rows_dataset(), batch_size))
    assert [row for batch in in_order for row in batch] == list(range(23))


def test_batch_loader_batch_sizes():
    assert [len(b) for b in _epoch(batch_loader(_rows_dataset(), 5))] == [5, 5, 5, 5, 3]
    assert [len(b) for b in _epoch(batch_loader(_rows_dataset(n=20), 5))] == [5, 5, 5, 5]
    X, targets = next(iter(batch_loader(_rows_dataset(), 4)))
    # Batches are tensors: X (4, 2) and each target with its trailing shape.
    assert isinstance(X, torch.Tensor) and X.shape == (4, 2)
    assert targets["t"].shape == (4,) and targets["u"].shape == (4, 1)


def test_batch_loader_is_reproducible_with_a_seeded_generator():
    def epochs(seed):
        loader = batch_loader(
            _rows_dataset(), 4, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        return [_epoch(loader) for _ in range(2)]

    first = epochs(3)
    assert first == epochs(3)
    assert first != epochs(4)
    assert first[0] != first[1]  # the second epoch is another permutation


def test_batch_loader_on_a_row_subset_with_disk_targets(disk_store):
    rows = np.array([1, 2, 3, 7, 8, 15, 20, 21, 22, 29])
    dataset = _rows_dataset(n=30, rows=rows, store=disk_store)
    loader = batch_loader(dataset, 3, shuffle=True, generator=torch.Generator().manual_seed(0))
    batches = _epoch(loader)
    assert len(batches) == len(loader) == 4
    assert sorted(row for batch in batches for row in batch) == rows.tolist()
    assert all(batch == sorted(batch) for batch in batches)  # each batch read in file order
    in_order = _epoch(batch_loader(dataset, 4))
    assert [row for batch in in_order for row in batch] == rows.tolist()


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("disk", [False, True])
def test_batch_loader_on_a_device_copy(shuffle, disk, disk_store):
    # The data of a GPU fit: the dataset moved whole to the device, batched there.
    rows = np.arange(3, 100, 2)
    dataset = _rows_dataset(n=103, rows=rows, store=disk_store if disk else None).to("cpu")
    loader = batch_loader(dataset, 8, shuffle=shuffle, generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert all(isinstance(X, torch.Tensor) for X, _ in batches)
    assert max(len(X) for X, _ in batches) == 8
    seen = [row for X, targets in batches for row in _row_numbers(X, targets)]
    assert sorted(seen) == rows.tolist()
    assert (seen == rows.tolist()) != shuffle


def test_batch_loader_passes_pin_memory():
    assert batch_loader(_rows_dataset(), 4, pin_memory=True).pin_memory is True
    assert batch_loader(_rows_dataset(), 4).pin_memory is False


def test_batch_loader_stacks_a_plain_skorch_dataset():
    # The fitted net_ keeps batch_loader as its iterators: skorch calls on arrays
    # (net_.forward(X), net_.partial_fit(X, y)) batch a skorch Dataset, which
    # has no __getitems__.
    X = np.arange(10.0, dtype=np.float32).reshape(5, 2)
    batches = list(batch_loader(SkorchDataset(X, np.arange(5.0)), batch_size=2))
    assert [Xb.tolist() for Xb, _ in batches] == [[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[8, 9]]]
    assert [yb.tolist() for _, yb in batches] == [[0.0, 1.0], [2.0, 3.0], [4.0]]
