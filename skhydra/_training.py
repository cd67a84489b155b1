"""The two-phase Hydra schedule on a skorch ``NeuralNet``.

Phase 1 trains the body and a single head against the ensemble's mean
(knowledge distillation, the "Hinton head"). Phase 2 copies that head into
every head and trains body and heads, head ``h`` against its members.
"""

import copy

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, ProgressBar
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from skorch.utils import multi_indexing

__all__ = ["BatchIterator", "DivergenceCheck", "train_two_phase"]


class BatchIterator:
    """Mini-batches sliced from in-memory arrays, one indexing call per batch.

    A drop-in ``iterator_train`` / ``iterator_valid`` for skorch that avoids
    the per-row ``__getitem__`` and collation of a ``DataLoader``.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Holds ``X`` (an array) and ``y`` (an array or a dict of arrays).
    batch_size : int
        Rows per batch.
    shuffle : bool, default=False
        Draw a new permutation each epoch.
    generator : torch.Generator, default=None
        Source of the permutations, for reproducibility.
    """

    def __init__(self, dataset, batch_size, shuffle=False, generator=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self):
        n = len(self.dataset)
        return (n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).numpy()
        else:
            order = None
        for start in range(0, n, self.batch_size):
            if order is None:
                index = slice(start, start + self.batch_size)
            else:
                index = np.sort(order[start : start + self.batch_size])
            X = multi_indexing(self.dataset.X, index)
            y = None if self.dataset.y is None else multi_indexing(self.dataset.y, index)
            yield X, y


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


def _subset(targets, index):
    return {key: value[index] for key, value in targets.items()}


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
):
    """Train ``module`` through Hydra's two phases and return the skorch net.

    Parameters
    ----------
    module : skhydra.nn.HydraModule
        A module with one head.
    criterion : torch.nn.Module
        Loss taking ``(y_pred, y_true_dict)``.
    X : ndarray of shape (n_samples, n_features), float32
        Transfer set.
    targets_phase1, targets_phase2 : dict of ndarray
        Per-row teacher targets for the single head and for all heads.
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

    Returns
    -------
    skorch.NeuralNet
        The initialised, trained net holding ``module``.
    """
    generator = torch.Generator().manual_seed(seed)

    def split(targets):
        if valid_index is None:
            return X, targets, None
        train, valid = ~valid_index, valid_index
        valid_ds = Dataset(X[valid], _subset(targets, valid))
        return X[train], _subset(targets, train), predefined_split(valid_ds)

    def phase_callbacks(phase):
        extra = [(f"divergence_{phase}", DivergenceCheck(phase))]
        if valid_index is not None:
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
    }
    params.update(skorch_params or {})
    X1, y1, split1 = split(targets_phase1)
    net = NeuralNet(
        module=module,
        criterion=criterion,
        lr=lr,
        batch_size=batch_size,
        max_epochs=phase1_epochs,
        train_split=split1,
        device=device,
        verbose=verbose,
        callbacks=phase_callbacks(1) + user_callbacks,
        **params,
    )
    net.initialize()
    if phase1_epochs > 0:
        if verbose:
            print("Phase 1: body and one head against the ensemble mean")
        net.partial_fit(X1, y1, epochs=phase1_epochs)
    if n_heads > 1:
        net.module_.expand_heads(n_heads)
    if phase2_epochs > 0:
        net.callbacks = phase_callbacks(2) + user_callbacks
        net.initialize_callbacks()
        net.initialize_optimizer()
        X2, y2, split2 = split(targets_phase2)
        net.train_split = split2
        if verbose:
            print(f"Phase 2: body and {n_heads} heads, each against its members")
        net.partial_fit(X2, y2, epochs=phase2_epochs)
    return net
