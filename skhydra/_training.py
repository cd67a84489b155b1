"""The two-phase Hydra schedule, on skorch nets.

Phase 1 trains the body and a single head against the ensemble's mean
(knowledge distillation, the "Hinton head"). Phase 2 copies that head into
every head and trains body and heads, head ``h`` against its members. Each
phase is one skorch net (a fresh optimiser and fresh callbacks); the second
net takes over the first one's module and history, so ``net_.history`` holds
the epochs of both phases.

skorch is extended only through its public parameters and methods: the data
arrives as a :class:`~skhydra._data.TransferDataset`, batched by
``iterator_train`` / ``iterator_valid`` (:func:`~skhydra._data.batch_loader`),
and the net overrides :meth:`HydraNet.infer` for bfloat16 autocast.
"""

import copy
import os
import warnings

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, ProgressBar
from skorch.helper import predefined_split
from skorch.utils import to_device

from ._data import TransferDataset, batch_loader
from ._progress import EpochProgress, progress_sink

__all__ = ["DivergenceCheck", "HydraNet", "train_two_phase"]

#: Fraction of the GPU's free memory the training data may take to be moved there whole.
DEVICE_DATA_FRACTION = 0.5

#: Skorch parameters the estimators set from their own parameters.
RESERVED_SKORCH_PARAMS = frozenset(
    {
        "module",
        "criterion",
        "lr",
        "batch_size",
        "max_epochs",
        "train_split",
        "device",
        "verbose",
        "callbacks",
        "precision",
        "accelerator",
    }
)


class HydraNet(NeuralNet):
    """skorch ``NeuralNet`` with an optional bfloat16 forward pass.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`skorch.NeuralNet`.
    precision : {"float32", "bfloat16"}, default="float32"
        ``"bfloat16"`` runs the forward pass under :func:`torch.autocast`
        (weights, optimiser state and losses stay float32).
    """

    def __init__(self, *args, precision="float32", **kwargs):
        super().__init__(*args, **kwargs)
        self.precision = precision

    def infer(self, x, **fit_params):
        if self.precision != "bfloat16":
            return super().infer(x, **fit_params)
        with torch.autocast(self._compute_device().type, dtype=torch.bfloat16):
            out = super().infer(x, **fit_params)
        return out.float()

    def _compute_device(self):
        return torch.device(self.device or "cpu")


class _TrainablePrepared:
    """An ``accelerate.Accelerator`` that prepares only modules with trainable parameters.

    skorch prepares the criterion too, and Accelerate wraps every module in
    ``DistributedDataParallel`` on several CPU processes (on GPUs it skips
    modules without trainable parameters), which refuses a module without
    any. Such a module is only moved to the accelerator's device here.
    Everything else is the wrapped accelerator's.
    """

    def __init__(self, accelerator):
        self.accelerator = accelerator

    def __getattr__(self, name):
        if name == "accelerator":  # not set yet: a copy being built
            raise AttributeError(name)
        return getattr(self.accelerator, name)

    def prepare(self, *args, **kwargs):
        if len(args) == 1 and isinstance(args[0], torch.nn.Module):
            module = args[0]
            if not any(p.requires_grad for p in module.parameters()):
                return module.to(self.accelerator.device)
        return self.accelerator.prepare(*args, **kwargs)


def _accelerated_net_class():
    from skorch.hf import AccelerateMixin

    class AcceleratedHydraNet(AccelerateMixin, HydraNet):
        """:class:`HydraNet` trained through Hugging Face Accelerate.

        Only training batches are sharded across processes: every process
        evaluates all validation rows, so early stopping decides the same
        epoch on all of them. The module stays wrapped (e.g. in
        ``DistributedDataParallel``) after training, so that early stopping
        restores the best weights into the module it saved them from; the
        caller unwraps it.
        """

        def get_iterator(self, dataset, training=False):
            if training:
                return super().get_iterator(dataset, training=True)
            return HydraNet.get_iterator(self, dataset, training=False)

        def validation_step(self, batch, **fit_params):
            # Validation batches are not sharded, so Accelerate does not move them.
            batch = to_device(batch, self.accelerator.device)
            return super().validation_step(batch, **fit_params)

        def _compute_device(self):
            return self.accelerator.device

    return AcceleratedHydraNet


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


class SignedEarlyStopping(EarlyStopping):
    """skorch's :class:`~skorch.callbacks.EarlyStopping` for losses of either sign.

    skorch asks a new best score to be ``threshold * score`` below the last
    one; with a negative score (the Gaussian likelihood of regression) that
    margin changes sign, a slightly worse epoch passes as an improvement and
    patience never runs out. Here the margin is ``threshold * |score|``.

    Examples
    --------
    >>> from skhydra._training import SignedEarlyStopping
    >>> stopper = SignedEarlyStopping(threshold=0.1)
    >>> float(stopper._calc_new_threshold(-2.0)), float(stopper._calc_new_threshold(2.0))
    (-2.2, 1.8)
    """

    def _calc_new_threshold(self, score):
        if self.threshold_mode == "rel":
            change = self.threshold * abs(score)
        else:
            change = self.threshold
        return score - change if self.lower_is_better else score + change


def _fused_adamw(device):
    """Whether AdamW's fused kernel serves ``device``: CUDA, and the CPU from torch 2.4.

    It runs the whole update as one kernel, about 3x faster than the default
    per-tensor loop on the CPU, the same arithmetic up to rounding.
    """
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and torch.__version__ >= (2, 4))


def _silent(*args, **kwargs):
    """A print sink that prints nothing (verbose=0 under Accelerate)."""


def _check_processes_agree(accelerator, seed, n_rows):
    """Refuse to train when the processes of a distributed launch hold different data.

    Also warn when the launcher started several processes (``WORLD_SIZE``, set by
    torchrun and ``accelerate launch``) but the accelerator runs on one: without
    GPUs, ``Accelerator()`` does not join the others unless given ``cpu=True``.

    Every process draws the synthetic rows, the validation split and the
    shuffling from ``seed``: processes with different seeds (``random_state=None``)
    or different rows would stop early at different epochs, and the first to stop
    would leave the others waiting forever in a gradient exchange.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes == 1 and launched > 1:
        warnings.warn(
            f"{launched} processes were launched, but the accelerator trains on one "
            "process: each process trains its own student on all the rows. On machines "
            "without GPUs, pass Accelerator(cpu=True) to train across the processes.",
            UserWarning,
            stacklevel=2,
        )
    if accelerator.num_processes == 1:
        return
    mine = torch.tensor([[seed, n_rows]], dtype=torch.int64, device=accelerator.device)
    every = accelerator.gather(mine).cpu()
    if (every != every[0]).any():
        seeds, rows = every[:, 0].tolist(), every[:, 1].tolist()
        raise ValueError(
            f"The {accelerator.num_processes} training processes do not fit the same "
            f"transfer set (seeds {seeds}, rows {rows}); with several processes, set "
            "random_state to an int and pass every process the same X."
        )


def _on_device(dataset, device):
    """The dataset moved to a GPU once when it fits there comfortably, else as it is."""
    device = torch.device(device)
    if device.type != "cuda":
        return dataset
    free, _ = torch.cuda.mem_get_info(device)
    return dataset.to(device) if dataset.nbytes <= DEVICE_DATA_FRACTION * free else dataset


def train_two_phase(
    module,
    criterion,
    X,
    targets,
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
    targets : tuple of two dicts of array-like
        Per-row teacher targets of phase 1 (the single head) and phase 2
        (all heads): ndarrays or disk-backed arrays, read batch by batch.
    n_heads : int
        Heads of phase 2.
    phase1_epochs, phase2_epochs : int
        Maximum epochs of each phase; a phase with 0 epochs is skipped.
    lr, weight_decay : float
        AdamW settings (a fresh optimiser in each phase).
    batch_size : int
        Rows per training batch.
    valid_index : ndarray of bool or None
        Rows held out for early stopping; ``None`` trains on all rows
        without early stopping.
    n_iter_no_change : int
        Patience of early stopping, in epochs.
    device : str
        Torch device (ignored with ``accelerator``).
    seed : int
        Seeds the shuffling; the caller seeds the initialisation.
    verbose : int
        ``>= 1``: skorch's epoch table and a bar of each phase's epochs
        (without ``accelerator``: its processes would draw one bar each);
        ``> 1`` adds skorch's bar of each epoch's batches.
    callbacks : list or None
        Extra skorch callbacks, copied for each phase.
    skorch_params : dict or None
        Extra ``NeuralNet`` parameters.
    precision : {"float32", "bfloat16"}
        Precision of the forward pass.
    accelerator : accelerate.Accelerator, default=None
        Train through skorch's ``AccelerateMixin``.

    Returns
    -------
    HydraNet
        A trained net holding ``module``, its history holding both phases,
        on ``device`` (the accelerator's device with ``accelerator``).
    """
    if accelerator is not None:
        _check_processes_agree(accelerator, seed, len(X))
    generator = torch.Generator().manual_seed(seed)
    if valid_index is None:
        train_rows, valid_rows = None, None
    else:
        train_rows, valid_rows = np.flatnonzero(~valid_index), np.flatnonzero(valid_index)
    on_cuda = accelerator is None and torch.device(device).type == "cuda"
    params = {
        "criterion": criterion,
        "lr": lr,
        "batch_size": batch_size,
        "verbose": verbose,
        "precision": precision,
        "optimizer": torch.optim.AdamW,
        "optimizer__weight_decay": weight_decay,
        "iterator_train": batch_loader,
        "iterator_valid": batch_loader,
        "iterator_train__shuffle": True,
        "iterator_train__generator": generator,
        "iterator_valid__batch_size": max(batch_size, 4096),
    }
    skorch_params = skorch_params or {}
    own_optimizer = {"optimizer", "optimizer__foreach"} & set(skorch_params)
    if accelerator is None and not own_optimizer and _fused_adamw(device):
        params["optimizer__fused"] = True
    params.update(skorch_params)
    sink, placement = print, device
    if accelerator is not None:
        net_class = _accelerated_net_class()
        sink = getattr(accelerator, "print", print)
        params.update(
            accelerator=_TrainablePrepared(accelerator), device=None, unwrap_after_train=False
        )
        params["callbacks__print_log__sink"] = sink if verbose else _silent
        placement = "cpu"  # Accelerate's loaders move the batches
    else:
        net_class = HydraNet
        params["device"] = device
        if verbose:
            sink = progress_sink
            params["callbacks__print_log__sink"] = sink
    log = sink if verbose else _silent

    def phase(number, module, epochs, phase_targets, history):
        train = _on_device(TransferDataset(X, phase_targets, train_rows), placement)
        extra = [(f"divergence_{number}", DivergenceCheck(number))]
        if verbose and accelerator is None:
            # Before early stopping, which ends the epoch loop from its own on_epoch_end.
            extra.append(("epoch_progress", EpochProgress(f"Phase {number}")))
        split = None
        if valid_rows is not None:
            valid = _on_device(TransferDataset(X, phase_targets, valid_rows), placement)
            split = predefined_split(valid)
            stopper = SignedEarlyStopping(patience=n_iter_no_change, load_best=True, sink=log)
            extra.append(("early_stopping", stopper))
        if verbose > 1:
            extra.append(("progress_bar", ProgressBar()))
        net = net_class(
            module=module,
            max_epochs=epochs,
            train_split=split,
            callbacks=extra + [copy.deepcopy(cb) for cb in (callbacks or [])],
            iterator_train__pin_memory=on_cuda and isinstance(train.X, np.ndarray),
            **params,
        )
        net.initialize()
        if history is not None:
            net.history = history
        if epochs > 0:
            net.partial_fit(train)
        if accelerator is not None:
            net.module_ = accelerator.unwrap_model(net.module_, keep_fp32_wrapper=False)
        return net

    if phase1_epochs:
        log("Phase 1: body and one head against the ensemble mean")
    net = phase(1, module, phase1_epochs, targets[0], None)
    if phase2_epochs > 0 or n_heads > 1:
        module = net.module_
        module.expand_heads(n_heads)
        if phase2_epochs:
            log(f"Phase 2: body and {n_heads} heads, each against its members")
        net = phase(2, module, phase2_epochs, targets[1], net.history)
    return _served(net, params, accelerator)


def _served(net, params, accelerator):
    """The trained net without its data: what the fitted estimator keeps.

    A net trained through Accelerate becomes a plain :class:`HydraNet` on the
    accelerator's device, which pickles and predicts without Accelerate.
    """
    if accelerator is not None:
        dropped = ("accelerator", "device", "unwrap_after_train")
        params = {k: v for k, v in params.items() if k not in dropped}
        params.pop("callbacks__print_log__sink", None)
        served = HydraNet(module=net.module_, device=str(accelerator.device), **params)
        served.initialize()
        served.history = net.history
        net = served
    # The split holds the validation rows and their targets: not needed once
    # trained, and most of the student's pickled size.
    net.train_split = None
    return net
