"""The two-phase Hydra schedule on a skorch ``NeuralNet``.

Phase 1 trains the body and a single head against the ensemble's mean
(knowledge distillation, the "Hinton head"). Phase 2 copies that head into
every head and trains body and heads, head ``h`` against its members.

The data side is built for large transfer sets: a :class:`RowDataset` reads
its rows through an index (train and validation rows are never copied out
of the arrays, which may be disk-backed), and :class:`BatchIterator` slices
whole batches, moves the data to a GPU once when it fits there or in large
pinned blocks when it does not, and never goes back to the host per batch.
"""

import contextlib
import copy
import ctypes
import math
import sys

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, ProgressBar
from skorch.helper import predefined_split
from skorch.hf import AccelerateMixin
from skorch.utils import is_dataset

__all__ = [
    "AcceleratedHydraNet",
    "BatchIterator",
    "DivergenceCheck",
    "HydraNet",
    "RowDataset",
    "train_two_phase",
]

#: Fraction of the GPU's free memory the training data may take to be moved whole.
DEVICE_DATA_FRACTION = 0.5

#: Batches per host-to-device block when the data stays on the host.
BLOCK_BATCHES = 64

#: Training batches between two returns of freed heap memory to the OS.
TRIM_EVERY = 32


def _load_malloc_trim():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim() if sys.platform.startswith("linux") else None


def trim_heap():
    """Return the free pages of glibc's heap to the OS (a no-op elsewhere).

    Each training batch allocates and frees arrays of a few MB (targets of
    many heads, outputs, gradients). glibc serves such sizes from its heap
    once its adaptive mmap threshold has grown, and the freed blocks, pinned
    between longer-lived small allocations, stay in the resident set: about
    a MB per batch with 200 heads and 10 classes, gigabytes per epoch on a
    million rows. ``malloc_trim`` gives those pages back.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _take(array, rows):
    return array[rows] if rows is not None else array[:]


def _map_targets(func, y):
    """``func`` applied to targets that are None, one array, or a dict of arrays."""
    if y is None:
        return None
    if isinstance(y, dict):
        return {key: func(value) for key, value in y.items()}
    return func(y)


class RowDataset(torch.utils.data.Dataset):
    """Rows of an input array and of a dict of target arrays, through an index.

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...)
        Student inputs, float32.
    y : array-like or dict of array-like, default=None
        Per-row targets (ndarrays or :class:`skhydra._storage.DiskArray`).
    rows : ndarray of int, default=None
        Sorted row numbers this dataset holds; None holds every row.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._training import RowDataset
    >>> ds = RowDataset(np.zeros((5, 2), np.float32), {"t": np.arange(5.0)}, rows=np.array([1, 3]))
    >>> len(ds), ds.take(np.array([1]))[1]["t"]
    (2, array([3.]))
    """

    def __init__(self, X, y=None, rows=None):
        self.X = X
        self.y = y
        self.rows = rows
        self._device_copy = None

    def __len__(self):
        return len(self.X) if self.rows is None else len(self.rows)

    def __getitem__(self, i):
        X, y = self.take(np.array([i]))
        return X[0], _map_targets(lambda v: v[0], y)

    def _global(self, index):
        if self.rows is None:
            return index
        return self.rows if index is None else self.rows[index]

    def take(self, index=None):
        """Inputs and targets of positions ``index`` (sorted; None = all)."""
        rows = self._global(index)
        return _take(self.X, rows), _map_targets(lambda v: _take(v, rows), self.y)

    @property
    def nbytes(self):
        """Bytes of this dataset's rows (inputs and targets)."""
        targets = self.y.values() if isinstance(self.y, dict) else [self.y]
        per_row = self.X[:1].nbytes + sum(v[:1].nbytes for v in targets if v is not None)
        return per_row * len(self)

    def on_device(self, device):
        """All rows as tensors on ``device``, moved once and kept for later epochs.

        Rows are read and moved in blocks, so disk-backed targets never sit
        whole in host memory.
        """
        if self._device_copy is None or self._device_copy[0] != device:
            move = lambda v: _to_device_blocks(v, self.rows, device)  # noqa: E731
            self._device_copy = (device, (move(self.X), _map_targets(move, self.y)))
        return self._device_copy[1]

    def release(self):
        """Drop the device copy (frees its GPU memory)."""
        self._device_copy = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_device_copy"] = None
        return state


def _to_device_blocks(array, rows, device, block=65536):
    n = len(array) if rows is None else len(rows)
    first = array[:1] if rows is None else array[rows[:1]]
    out = torch.empty((n, *first.shape[1:]), dtype=torch.as_tensor(first).dtype, device=device)
    for start in range(0, n, block):
        stop = min(start + block, n)
        part = array[start:stop] if rows is None else array[rows[start:stop]]
        out[start:stop] = torch.as_tensor(part).to(device)
    return out


def _index_tensors(X, y, index):
    return X[index], _map_targets(lambda v: v[index], y)


def _to_device(X, y, device, pin):
    def move(a):
        t = torch.as_tensor(a)
        if pin:
            t = t.pin_memory()
        return t.to(device, non_blocking=pin)

    return move(X), _map_targets(move, y)


class BatchIterator:
    """Mini-batches of a :class:`RowDataset`, one indexing call per batch.

    A drop-in ``iterator_train`` / ``iterator_valid`` for skorch that avoids
    the per-row ``__getitem__`` and collation of a ``DataLoader``. On the CPU
    it yields arrays. On a GPU it yields tensors already there: the whole
    dataset is moved once when it takes less than half of the free GPU
    memory; otherwise blocks of ``BLOCK_BATCHES`` batches are gathered on the
    host, pinned, and copied asynchronously, then cut into batches on the GPU.

    Parameters
    ----------
    dataset : RowDataset
        The rows to iterate over.
    batch_size : int
        Rows per batch.
    shuffle : bool, default=False
        Draw a new permutation each epoch.
    generator : torch.Generator, default=None
        Source of the permutations, for reproducibility (a CPU generator).
    device : str or torch.device, default=None
        Where the batches go; None or a CPU device yields numpy arrays.
    shard : tuple of (int, int), default=(0, 1)
        ``(index, count)``: yield only the ``index``-th of ``count`` equal
        shares of each epoch's rows (data-parallel training, one share per
        process).

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._training import BatchIterator, RowDataset
    >>> ds = RowDataset(np.arange(10.0).reshape(5, 2), {"t": np.arange(5.0)})
    >>> [len(X) for X, _ in BatchIterator(ds, batch_size=2)]
    [2, 2, 1]
    """

    def __init__(
        self, dataset, batch_size, shuffle=False, generator=None, device=None, shard=(0, 1)
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = device
        self.shard = shard

    def _n_rows(self):
        n = len(self.dataset)
        index, count = self.shard
        return n if count == 1 else math.ceil(n / count)

    def __len__(self):
        return (self._n_rows() + self.batch_size - 1) // self.batch_size

    def _order(self):
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        index, count = self.shard
        if count > 1:
            # Pad by wrapping so every share has the same number of rows.
            base = order if order is not None else torch.arange(n)
            per_share = math.ceil(n / count)
            base = base.repeat(math.ceil(per_share * count / max(n, 1)) + 1)[: per_share * count]
            order = base[index::count]
        return order

    def __iter__(self):
        device = None if self.device is None else torch.device(self.device)
        order = self._order()
        if device is None or device.type == "cpu":
            yield from self._host_batches(order)
        elif self.dataset.nbytes <= DEVICE_DATA_FRACTION * _free_memory(device):
            yield from self._resident_batches(order, device)
        else:
            yield from self._block_batches(order, device)

    def _host_batches(self, order):
        n = len(self.dataset) if order is None else len(order)
        for start in range(0, n, self.batch_size):
            if order is None:
                index = slice(start, start + self.batch_size)
            else:
                index = np.sort(order[start : start + self.batch_size].numpy())
            yield self.dataset.take(index)

    def _resident_batches(self, order, device):
        X, y = self.dataset.on_device(device)
        n = len(X) if order is None else len(order)
        order = None if order is None else order.to(device)
        for start in range(0, n, self.batch_size):
            if order is None:
                yield _index_tensors(X, y, slice(start, start + self.batch_size))
            else:
                yield _index_tensors(X, y, order[start : start + self.batch_size])

    def _block_batches(self, order, device):
        n = len(self.dataset) if order is None else len(order)
        block = self.batch_size * BLOCK_BATCHES
        for start in range(0, n, block):
            if order is None:
                index = slice(start, min(start + block, n))
                inner = None
            else:
                # Read the block's rows in file order; shuffle them on the GPU.
                index = np.sort(order[start : start + block].numpy())
                inner = torch.randperm(len(index), generator=self.generator).to(device)
            X, y = _to_device(*self.dataset.take(index), device, pin=device.type == "cuda")
            for s in range(0, len(X), self.batch_size):
                part = (
                    slice(s, s + self.batch_size)
                    if inner is None
                    else inner[s : s + self.batch_size]
                )
                yield _index_tensors(X, y, part)


def _free_memory(device):
    free, _ = torch.cuda.mem_get_info(device)
    return free


class HydraNet(NeuralNet):
    """skorch ``NeuralNet`` with Hydra's data path and optional bfloat16 autocast.

    * arrays (and :class:`RowDataset`) go through :class:`BatchIterator`,
      which puts batches on the net's device itself;
    * the batch losses of an epoch stay on the device and are read back once
      at its end, so a GPU epoch has no per-batch host synchronisation;
    * ``precision="bfloat16"`` runs the forward pass under
      :func:`torch.autocast` (weights, optimiser state and losses stay float32).

    Parameters
    ----------
    *args, **kwargs
        As for :class:`skorch.NeuralNet`.
    precision : {"float32", "bfloat16"}, default="float32"
        Precision of the forward pass.
    """

    def __init__(self, *args, precision="float32", **kwargs):
        super().__init__(*args, **kwargs)
        self.precision = precision

    def _batch_device(self):
        accelerator = getattr(self, "accelerator", None)
        return accelerator.device if accelerator is not None else self.device

    def get_dataset(self, X, y=None):
        if is_dataset(X):
            return X
        return RowDataset(X, y)

    def get_iterator(self, dataset, training=False):
        iterator = super().get_iterator(dataset, training=training)
        if isinstance(iterator, BatchIterator):
            iterator.device = self._batch_device()
            accelerator = getattr(self, "accelerator", None)
            if training and accelerator is not None and accelerator.num_processes > 1:
                iterator.shard = (accelerator.process_index, accelerator.num_processes)
        return iterator

    def _autocast(self):
        if self.precision != "bfloat16":
            return contextlib.nullcontext()
        device = self._batch_device()
        device_type = torch.device(device if device is not None else "cpu").type
        return torch.autocast(device_type, dtype=torch.bfloat16)

    def infer(self, x, **fit_params):
        if self.precision != "bfloat16":
            return super().infer(x, **fit_params)
        with self._autocast():
            out = super().infer(x, **fit_params)
        return out.float()

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None:
            return
        losses = []
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            losses.append(step["loss"].detach().float())
            self.history.record_batch(prefix + "_batch_size", len(batch[0]))
            self.notify("on_batch_end", batch=batch, training=training, **step)
            del batch, step
            if len(losses) % TRIM_EVERY == 0:
                trim_heap()
        trim_heap()
        if losses:
            # One device-to-host copy per epoch instead of one per batch.
            values = torch.stack(losses).cpu().tolist()
            for record, value in zip(
                self.history[-1]["batches"][-len(values) :], values, strict=True
            ):
                record[prefix + "_loss"] = value
        self.history.record(prefix + "_batch_count", len(losses))


class AcceleratedHydraNet(AccelerateMixin, HydraNet):
    """:class:`HydraNet` trained through Hugging Face Accelerate.

    Only training batches are sharded across processes; every process
    evaluates all validation rows, so nothing is gathered. After training,
    :func:`train_two_phase` turns the net back into a plain :class:`HydraNet`
    on the accelerator's device, which pickles and predicts anywhere.
    """

    def evaluation_step(self, batch, training=False):
        return HydraNet.evaluation_step(self, batch, training=training)


def _silent(*args, **kwargs):
    """A print sink that prints nothing (verbose=0 under Accelerate)."""


def _detach_accelerator(net, accelerator):
    net.__class__ = HydraNet
    net.device = str(accelerator.device)
    for name in ("accelerator", "unwrap_after_train", "_wrapped_with_accelerator"):
        net.__dict__.pop(name, None)
    return net


class DivergenceCheck(Callback):
    """Stop with a clear error as soon as the training loss is not finite."""

    def __init__(self, phase):
        self.phase = phase

    def on_epoch_end(self, net, **kwargs):
        loss = net.history[-1, "train_loss"]
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"Training diverged: the training loss is {loss} at epoch "
                f"{len(net.history)} of phase {self.phase}. Lower lr, raise "
                "weight_decay, or check the ensemble's predictions for NaN or inf."
            )


def _release(train, split):
    train.release()
    if split is not None:
        # predefined_split keeps its dataset in the partial's keywords.
        split.keywords["valid_ds"].release()


def train_two_phase(
    module,
    criterion,
    X,
    targets_phase1,
    targets_phase2,
    *,
    n_heads,
    phase1_epochs,
    phase2_epochs,
    lr,
    weight_decay,
    batch_size,
    valid_index,
    n_iter_no_change,
    device,
    seed,
    verbose,
    callbacks,
    skorch_params,
    precision="float32",
    accelerator=None,
):
    """Train ``module`` through Hydra's two phases and return the skorch net.

    Parameters
    ----------
    module : skhydra.nn.HydraModule
        A module with one head.
    criterion : torch.nn.Module
        Loss taking ``(y_pred, y_true_dict)``.
    X : ndarray of shape (n_samples, ...), float32
        Transfer set.
    targets_phase1, targets_phase2 : dict of array-like
        Per-row teacher targets for the single head and for all heads
        (ndarrays or disk-backed arrays, read batch by batch).
    n_heads : int
        Heads of phase 2.
    phase1_epochs, phase2_epochs : int
        Maximum epochs of each phase; a phase with 0 epochs is skipped. With
        one head, phase 2 continues phase 1 (same target, fresh optimiser), so
        knowledge distillation gets the same budget as Hydra.
    valid_index : ndarray of bool or None
        Rows held out for early stopping; ``None`` trains on all rows
        without early stopping.
    n_iter_no_change : int
        Patience of early stopping, in epochs.
    seed : int
        Seeds the shuffling; the caller seeds the initialisation.
    skorch_params : dict
        Extra ``NeuralNet`` parameters.
    precision : {"float32", "bfloat16"}
        Precision of the forward pass.
    accelerator : accelerate.Accelerator, default=None
        Train through skorch's ``AccelerateMixin`` (``device`` is then the
        accelerator's).

    Returns
    -------
    HydraNet
        The initialised, trained net holding ``module``.
    """
    generator = torch.Generator().manual_seed(seed)
    if valid_index is None:
        train_rows, valid_rows = None, None
    else:
        train_rows, valid_rows = np.flatnonzero(~valid_index), np.flatnonzero(valid_index)

    def datasets(targets):
        train = RowDataset(X, targets, train_rows)
        split = None if valid_rows is None else predefined_split(RowDataset(X, targets, valid_rows))
        return train, split

    def phase_callbacks(phase):
        extra = [(f"divergence_{phase}", DivergenceCheck(phase))]
        if valid_rows is not None:
            stopper = EarlyStopping(patience=n_iter_no_change, load_best=True, sink=print)
            extra.append(("early_stopping", stopper))
        if verbose > 1:
            extra.append(("progress_bar", ProgressBar()))
        return extra

    user_callbacks = [copy.deepcopy(cb) for cb in (callbacks or [])]
    params = {
        "optimizer": torch.optim.AdamW,
        "optimizer__weight_decay": weight_decay,
        "iterator_train": BatchIterator,
        "iterator_valid": BatchIterator,
        "iterator_train__shuffle": True,
        "iterator_train__generator": generator,
        "iterator_valid__batch_size": max(batch_size, 4096),
        "precision": precision,
    }
    params.update(skorch_params or {})
    if accelerator is not None:
        net_class = AcceleratedHydraNet
        sink = getattr(accelerator, "print", print) if verbose else _silent
        params.update(accelerator=accelerator, device=None, callbacks__print_log__sink=sink)
    else:
        net_class = HydraNet
        params["device"] = device
    train1, split1 = datasets(targets_phase1)
    net = net_class(
        module=module,
        criterion=criterion,
        lr=lr,
        batch_size=batch_size,
        max_epochs=phase1_epochs,
        train_split=split1,
        verbose=verbose,
        callbacks=phase_callbacks(1) + user_callbacks,
        **params,
    )
    net.initialize()
    if phase1_epochs > 0:
        if verbose:
            print("Phase 1: body and one head against the ensemble mean")
        net.partial_fit(train1, None, epochs=phase1_epochs)
    _release(train1, split1)
    if accelerator is not None and net._wrapped_with_accelerator:
        net._unwrap_accelerator()
    if n_heads > 1:
        net.module_.expand_heads(n_heads)
    if phase2_epochs > 0:
        net.callbacks = phase_callbacks(2) + user_callbacks
        net.initialize_callbacks()
        net.initialize_optimizer()
        if accelerator is not None:
            net._initialize_accelerator()
        train2, split2 = datasets(targets_phase2)
        net.train_split = split2
        if verbose:
            print(f"Phase 2: body and {n_heads} heads, each against its members")
        net.partial_fit(train2, None, epochs=phase2_epochs)
        _release(train2, split2)
    if accelerator is not None:
        net._unwrap_accelerator()
        net = _detach_accelerator(net, accelerator)
    return net
