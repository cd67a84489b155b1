"""skhydra._training: the two-phase schedule on skorch nets, early stopping, the history,
DivergenceCheck, callbacks, verbosity, skorch_params, bfloat16, Accelerate and the
fitted net_."""

import collections
import copy
import math
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback
from skorch.history import History

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor
from skhydra._training import (
    RESERVED_SKORCH_PARAMS,
    DivergenceCheck,
    HydraNet,
    SignedEarlyStopping,
    train_two_phase,
)
from skhydra.losses import TemperedKLLoss
from skhydra.nn import HydraModule

# What the callbacks below record, by key. Callbacks are deep-copied for each phase,
# so they record into this module-level dict rather than into themselves.
RECORDS = collections.defaultdict(list)


class Record(Callback):
    """Records, under ``RECORDS[key]``: ("begin", len(history), heads), ("epoch", epoch,
    state_dict) and ("end", len(history), heads) per phase, and each training batch's loss
    under ``RECORDS[key + "/batches"]``."""

    def __init__(self, key):
        self.key = key

    def on_train_begin(self, net, **kwargs):
        RECORDS[self.key].append(("begin", len(net.history), _head_params(net.module_)))

    def on_epoch_end(self, net, **kwargs):
        state = copy.deepcopy(net.module_.state_dict())
        RECORDS[self.key].append(("epoch", net.history[-1, "epoch"], state))

    def on_batch_end(self, net, training=False, loss=None, **kwargs):
        if training:
            RECORDS[self.key + "/batches"].append(float(loss.detach()))

    def on_train_end(self, net, **kwargs):
        RECORDS[self.key].append(("end", len(net.history), _head_params(net.module_)))


class Counter(Callback):
    """Counts its epochs; every instance that trains is listed in ``RECORDS["counters"]``."""

    def __init__(self):
        self.epochs = 0

    def on_train_begin(self, net, **kwargs):
        RECORDS["counters"].append(self)

    def on_epoch_end(self, net, **kwargs):
        self.epochs += 1


@pytest.fixture(autouse=True)
def _clear_records():
    RECORDS.clear()


def _head_params(module):
    return [p.detach().clone() for p in module.heads.parameters()]


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


# -- train_two_phase on a small synthetic problem ---------------------------------------

N_ROWS, N_CLASSES = 80, 3


def _problem(n_heads=2):
    """Inputs and the targets of both phases."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N_ROWS, 4)).astype(np.float32)
    p = rng.dirichlet(np.ones(N_CLASSES), size=(N_ROWS, n_heads)).astype(np.float32)
    weight = np.ones(N_ROWS, np.float32)
    phase1 = {"target": p.mean(axis=1, keepdims=True), "weight": weight}
    phase2 = {"target": p, "weight": weight}
    return X, (phase1, phase2)


def _train(X=None, targets=None, *, seed=0, **overrides):
    if X is None:
        X, targets = _problem(overrides.get("n_heads", 2))
    torch.manual_seed(seed)
    module = HydraModule(np.zeros(4), np.ones(4), (8,), (), N_CLASSES, n_heads=1)
    params = dict(
        n_heads=2,
        phase1_epochs=2,
        phase2_epochs=3,
        lr=1e-2,
        weight_decay=0.0,
        batch_size=16,
        valid_index=None,
        n_iter_no_change=5,
        device="cpu",
        seed=seed,
        verbose=0,
        callbacks=None,
        skorch_params=None,
    )
    params.update(overrides)
    return train_two_phase(module, TemperedKLLoss(1.0), X, targets, **params)


@pytest.mark.parametrize(
    "phase1_epochs, phase2_epochs, n_heads, printed, silent",
    [
        (2, 3, 2, ["Phase 1: body and one head", "Phase 2: body and 2 heads"], []),
        (0, 3, 2, ["Phase 2"], ["Phase 1"]),
        (2, 0, 1, ["Phase 1"], ["Phase 2"]),
    ],
)
def test_two_phases_share_one_history(
    capsys, phase1_epochs, phase2_epochs, n_heads, printed, silent
):
    net = _train(
        phase1_epochs=phase1_epochs,
        phase2_epochs=phase2_epochs,
        n_heads=n_heads,
        verbose=1,
        callbacks=[Record("phases")],
    )
    assert type(net) is HydraNet
    assert net.module_.n_heads == n_heads
    history = net.history
    assert len(history) == phase1_epochs + phase2_epochs
    assert history[:, "epoch"] == list(range(1, len(history) + 1))
    assert all(math.isfinite(loss) for loss in history[:, "train_loss"])
    # A phase with no epochs is skipped: it neither trains nor announces itself.
    begins = [length for kind, length, _ in RECORDS["phases"] if kind == "begin"]
    assert begins == [0] * (phase1_epochs > 0) + [phase1_epochs] * (phase2_epochs > 0)
    out = capsys.readouterr().out
    assert all(line in out for line in printed)
    assert not any(line in out for line in silent)
    # The fitted net keeps no data: the validation split is dropped.
    assert net.train_split is None


def test_phase_two_heads_start_as_copies_of_the_phase_one_head():
    _train(n_heads=3, phase2_epochs=2, callbacks=[Record("copies")])
    (_, _, _), (_, _, phase1_end), (_, _, phase2_begin), (_, _, phase2_end) = [
        r for r in RECORDS["copies"] if r[0] != "epoch"
    ]
    assert [p.shape[0] for p in phase1_end] == [1, 1]  # weight and bias of one head
    for start, trained in zip(phase2_begin, phase1_end, strict=True):
        assert start.shape[0] == 3
        for h in range(3):
            torch.testing.assert_close(start[h], trained[0], rtol=0, atol=0)
    # Phase 2 trains the copies apart.
    assert not torch.equal(phase2_end[0][0], phase2_end[0][1])


def test_skipped_phase_two_still_expands_the_heads():
    X, targets = _problem(n_heads=3)
    net = _train(X, targets, n_heads=3, phase2_epochs=0)
    reference = _train(X, targets, n_heads=1, phase2_epochs=0)  # the same phase 1
    assert net.module_.n_heads == 3 and len(net.history) == 2
    for layer, ref in zip(net.module_.heads.layers, reference.module_.heads.layers, strict=True):
        for h in range(3):
            torch.testing.assert_close(layer.weight[h], ref.weight[0], rtol=0, atol=0)
            torch.testing.assert_close(layer.bias[h], ref.bias[0], rtol=0, atol=0)


def test_early_stopping_restores_the_best_weights():
    X, targets = _problem()
    valid_index = np.zeros(N_ROWS, dtype=bool)
    valid_index[::4] = True
    # Training rows say class 0, validation rows class 2: every epoch of training
    # makes the validation loss worse, so each phase's best epoch is its first.
    for phase_targets in targets:
        target = np.zeros_like(phase_targets["target"])
        target[~valid_index, :, 0] = 1.0
        target[valid_index, :, 2] = 1.0
        phase_targets["target"] = target
    net = _train(
        X,
        targets,
        n_heads=1,
        phase1_epochs=10,
        phase2_epochs=10,
        valid_index=valid_index,
        n_iter_no_change=2,
        callbacks=[Record("stopping")],
    )
    history = net.history
    # Each phase stops after two epochs without improvement: 1 + 2 epochs each.
    assert len(history) == 6
    valid_loss = history[:, "valid_loss"]
    assert valid_loss[:3] == sorted(valid_loss[:3]) and valid_loss[3:] == sorted(valid_loss[3:])
    stopper = dict(net.callbacks_)["early_stopping"]
    assert stopper.best_epoch_ == 4 and stopper.load_best
    states = {epoch: state for kind, epoch, state in RECORDS["stopping"] if kind == "epoch"}
    _assert_same_state(net.module_.state_dict(), states[4])
    assert not torch.equal(states[4]["heads.layers.0.weight"], states[5]["heads.layers.0.weight"])
    # Phase 2 started from phase 1's best weights, not from its last ones.
    (_, _, phase2_begin) = [r for r in RECORDS["stopping"] if r[0] == "begin"][1]
    torch.testing.assert_close(phase2_begin[0], states[1]["heads.layers.0.weight"])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_early_stopping_runs_out_of_patience_for_losses_of_either_sign(sign):
    # Each epoch 1e-5 worse than the first: no improvement, whatever the sign of
    # the loss (the Gaussian likelihood of regression is often negative).
    stopper = SignedEarlyStopping(patience=3, load_best=False)
    net = SimpleNamespace(history=History(), verbose=0)
    stopper.on_train_begin(net)
    epochs = 0
    with pytest.raises(KeyboardInterrupt):  # skorch's signal to stop
        for epoch in range(1, 20):
            net.history.new_epoch()
            net.history.record("epoch", epoch)
            net.history.record("valid_loss", sign * 2.0 + 1e-5 * (epoch - 1))
            epochs = epoch
            stopper.on_epoch_end(net)
    assert epochs == 4 and stopper.best_epoch_ == 1


@pytest.mark.parametrize(
    "params, patience",
    [
        ({}, 12),  # a forest's transfer set: 4 synthetic rows per real row, 60 / 5 passes
        ({"augmentation": "noise"}, 30),  # one noise row per real row: 60 / 2
        ({"augmentation": None}, 30),  # the real rows alone: 60, at most 30
        ({"augmentation": "noise", "augmentation_factor": 9.0}, 10),  # 60 / 10, at least 10
        ({"n_iter_no_change": 7}, 7),
    ],
)
def test_auto_patience_counts_passes_over_the_real_rows(iris, forest, params, patience):
    X, y = iris
    student = HydraDistilledClassifier(forest, **{**TINY, **params}).fit(X, y)
    assert student.n_iter_no_change_ == patience
    assert dict(student.net_.callbacks_)["early_stopping"].patience == patience


def test_user_callbacks_are_copied_for_each_phase():
    counter = Counter()
    net = _train(phase1_epochs=2, phase2_epochs=3, callbacks=[counter])
    runs = RECORDS["counters"]
    assert len(runs) == 2 and runs[0] is not runs[1]
    assert [run.epochs for run in runs] == [2, 3]
    assert counter.epochs == 0  # the parameter itself is not mutated
    assert [cb for _, cb in net.callbacks_ if isinstance(cb, Counter)] == [runs[1]]


def test_verbose_two_adds_a_progress_bar():
    assert "progress_bar" in dict(_train(verbose=2).callbacks_)
    assert "progress_bar" not in dict(_train(verbose=1).callbacks_)


class OptimizerAtTrainBegin(Callback):
    """Records the number of parameters with optimiser state when a phase starts."""

    def on_train_begin(self, net, **kwargs):
        RECORDS["optimizer"].append(len(net.optimizer_.state))


def test_optimiser_and_skorch_params():
    net = _train(weight_decay=0.25, callbacks=[OptimizerAtTrainBegin()])
    assert type(net.optimizer_) is torch.optim.AdamW
    # A fresh optimiser in each phase: phase 2 starts without phase 1's moments.
    assert RECORDS["optimizer"] == [0, 0] and len(net.optimizer_.state) > 0
    assert net.optimizer_.param_groups[0]["weight_decay"] == 0.25
    assert net.optimizer_.param_groups[0]["lr"] == 1e-2
    net = _train(skorch_params={"optimizer": torch.optim.SGD, "optimizer__momentum": 0.5})
    assert type(net.optimizer_) is torch.optim.SGD
    assert net.optimizer_.param_groups[0]["momentum"] == 0.5


def test_adamw_runs_fused_on_the_cpu_unless_told_otherwise():
    assert _train().optimizer_.defaults["fused"] is True
    net = _train(skorch_params={"optimizer__fused": False})
    assert not net.optimizer_.defaults["fused"]
    # Asking for the foreach implementation is not contradicted by a fused default.
    net = _train(skorch_params={"optimizer__foreach": True})
    assert net.optimizer_.defaults["foreach"] and not net.optimizer_.defaults["fused"]


def test_same_seed_same_training():
    first, second, other = _train(seed=0), _train(seed=0), _train(seed=1)
    _assert_same_state(first.module_.state_dict(), second.module_.state_dict())
    assert first.history[:, "train_loss"] == second.history[:, "train_loss"]
    assert first.history[:, "train_loss"] != other.history[:, "train_loss"]


# -- DivergenceCheck -------------------------------------------------------------------


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf")])
def test_divergence_check_is_a_clear_error(loss):
    history = History()
    for value in (0.5, loss):
        history.new_epoch()
        history.record("train_loss", value)
    net = SimpleNamespace(history=history)
    with pytest.raises(
        FloatingPointError, match=rf"Training diverged: the training loss is {loss} at epoch 2 "
    ) as excinfo:
        DivergenceCheck(2).on_epoch_end(net)
    assert "of phase 2. Lower lr" in str(excinfo.value)
    history.record("train_loss", 0.25)  # a finite loss passes
    assert DivergenceCheck(1).on_epoch_end(net) is None


@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_diverging_training_is_a_clear_error(task, iris, diabetes, forest, forest_r):
    Est, teacher, X, y = {
        "classifier": (HydraDistilledClassifier, forest, iris[0], None),
        "regressor": (HydraDistilledRegressor, forest_r, *diabetes),
    }[task]
    model = Est(teacher, lr=1e12, skorch_params={"optimizer": torch.optim.SGD}, **TINY)
    with pytest.raises(FloatingPointError, match="diverged.*phase 1"):
        model.fit(X, y)


# -- the estimators' history, callbacks and verbosity ------------------------------------


@pytest.fixture(scope="module")
def recorded(iris, forest):
    """A student without early stopping whose callbacks recorded its training."""
    RECORDS.clear()
    params = {**TINY, "early_stopping": False, "batch_size": 48, "augmentation": "noise"}
    model = HydraDistilledClassifier(forest, callbacks=[Record("fit"), Counter()], **params).fit(
        iris[0]
    )
    return model, dict(RECORDS)


def test_history_records_one_weighted_train_loss_per_epoch(iris, recorded):
    model, records = recorded
    history = model.net_.history
    assert len(history) == TINY["max_epochs"]  # max_epochs counts both phases
    n_rows = 2 * len(iris[0])  # real and synthetic rows
    batch_losses = [b["train_loss"] for epoch in history for b in epoch["batches"]]
    # The batch losses in the history are the steps' own losses.
    np.testing.assert_allclose(batch_losses, records["fit/batches"], rtol=1e-6)
    for epoch in history:
        batches = epoch["batches"]
        assert len(batches) == epoch["train_batch_count"] == -(-n_rows // 48)
        assert all("valid_loss" not in b for b in batches)
        sizes = [b["train_batch_size"] for b in batches]
        assert sum(sizes) == n_rows
        expected = np.average([b["train_loss"] for b in batches], weights=sizes)
        assert np.isfinite(epoch["train_loss"])
        assert epoch["train_loss"] == pytest.approx(expected, rel=1e-6)
    # Losses of different epochs differ: each epoch records its own.
    assert len(set(history[:, "train_loss"])) == len(history)


def test_user_callbacks_run_in_both_phases(recorded):
    model, records = recorded
    runs = records["counters"]
    assert [run.epochs for run in runs] == [TINY["phase1_epochs"], 3]
    assert model.callbacks[1].epochs == 0  # the parameter itself is not mutated
    assert [cb for _, cb in model.net_.callbacks_ if isinstance(cb, Counter)] == [runs[1]]


def test_history_valid_loss_with_early_stopping(hydra):
    history = hydra.net_.history
    assert len(history) == TINY["max_epochs"]
    for epoch in history:
        valid = [b for b in epoch["batches"] if "valid_loss" in b]
        assert valid and np.isfinite(epoch["valid_loss"])
        expected = np.average(
            [b["valid_loss"] for b in valid], weights=[b["valid_batch_size"] for b in valid]
        )
        assert epoch["valid_loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("verbose", [0, 1])
def test_verbose_prints_both_phases(iris, forest, capsys, verbose):
    HydraDistilledClassifier(forest, verbose=verbose, **TINY).fit(iris[0])
    out = capsys.readouterr().out
    if verbose:
        assert "Phase 1" in out and "Phase 2" in out
        assert "train_loss" in out and "valid_loss" in out
        assert out.index("Phase 1") < out.index("Phase 2")
    else:
        assert out == ""


@pytest.mark.parametrize("key", sorted(RESERVED_SKORCH_PARAMS))
def test_skorch_params_cannot_set_reserved_keys(iris, forest, key):
    model = HydraDistilledClassifier(forest, skorch_params={key: None, "optimizer": None}, **TINY)
    with pytest.raises(ValueError, match=rf"skorch_params cannot set \['{key}'\]"):
        model.fit(iris[0])


# -- precision -------------------------------------------------------------------------


def test_hydra_net_infers_in_bfloat16():
    torch.manual_seed(0)
    module = HydraModule(np.zeros(4), np.ones(4), (32,), (), 3, n_heads=2)
    x = torch.randn(64, 4)
    outputs = {}
    for precision in ("float32", "bfloat16"):
        net = HydraNet(module=module, criterion=TemperedKLLoss, precision=precision).initialize()
        with torch.no_grad():
            outputs[precision] = net.infer(x)
    assert outputs["bfloat16"].dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(outputs["float32"], module(x))
    difference = (outputs["bfloat16"] - outputs["float32"]).abs().max().item()
    assert 0 < difference < 0.05  # bfloat16 keeps about three significant digits


def test_bfloat16_on_cpu(iris, forest):
    X, y = iris
    params = {**TINY, "phase1_epochs": 5, "max_epochs": 10, "lr": 1e-2, "batch_size": 32}
    full = HydraDistilledClassifier(forest, **params).fit(X)
    half = HydraDistilledClassifier(forest, precision="bfloat16", **params).fit(X)
    proba = half.predict_proba(X)
    assert proba.dtype in (np.float32, np.float64)
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
    with pytest.raises(InvalidParameterError, match="'precision' parameter"):
        HydraDistilledClassifier(forest, precision="float16", **TINY).fit(iris[0])


# -- Accelerate ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def accelerator():
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState

    yield accelerate.Accelerator(cpu=True)
    # The accelerator's state is process-wide: leave none behind for other modules.
    AcceleratorState._reset_state(reset_partial_state=True)


def test_accelerator_classifier(iris, forest, hydra, accelerator, capsys):
    X, _ = iris
    model = HydraDistilledClassifier(forest, accelerator=accelerator, **TINY).fit(X)
    assert capsys.readouterr().out == ""  # verbose=0 prints nothing
    assert model.device_ == "cpu"
    assert type(model.net_) is HydraNet
    assert not hasattr(model.net_, "accelerator")
    assert len(model.net_.history) == TINY["max_epochs"]
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    restored = pickle.loads(pickle.dumps(model))
    assert type(restored.net_) is HydraNet
    np.testing.assert_array_equal(restored.predict_proba(X), proba)
    # One CPU process trains the same student as no accelerator.
    np.testing.assert_allclose(proba, hydra.predict_proba(X), atol=1e-5)


def test_accelerator_regressor_verbose(diabetes, forest_r, accelerator, capsys):
    X, y = diabetes
    model = HydraDistilledRegressor(forest_r, accelerator=accelerator, verbose=1, **TINY).fit(X, y)
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
    with pytest.raises(InvalidParameterError, match="'accelerator' parameter"):
        HydraDistilledClassifier(forest, accelerator=object(), **TINY).fit(iris[0])


# -- the fitted net_ --------------------------------------------------------------------


def _module_outputs(model, X):
    with torch.no_grad():
        return model.net_.module_(torch.as_tensor(X, dtype=torch.float32)).numpy()


def test_fitted_net_pickles(iris, hydra):
    X, _ = iris
    assert hydra.net_.train_split is None  # no validation rows in the pickle
    restored = pickle.loads(pickle.dumps(hydra.net_))
    assert type(restored) is HydraNet
    np.testing.assert_array_equal(
        _module_outputs(SimpleNamespace(net_=restored), X), _module_outputs(hydra, X)
    )
    assert restored.history[:, "train_loss"] == hydra.net_.history[:, "train_loss"]


def test_skorch_params_save_and_load(tmp_path, iris, hydra):
    X, _ = iris
    other = clone(hydra).set_params(random_state=1).fit(X)
    assert np.abs(_module_outputs(other, X) - _module_outputs(hydra, X)).max() > 1e-4
    hydra.net_.save_params(f_params=tmp_path / "w.pt")
    other.net_.load_params(f_params=tmp_path / "w.pt")
    np.testing.assert_array_equal(_module_outputs(other, X), _module_outputs(hydra, X))
    np.testing.assert_array_equal(other.predict_proba(X), hydra.predict_proba(X))


def test_fitted_net_forward_on_arrays(iris, hydra):
    # skorch's own inference on the fitted net: batches of a plain array.
    X = iris[0].astype(np.float32)
    np.testing.assert_allclose(hydra.net_.forward(X).numpy(), _module_outputs(hydra, X), atol=1e-6)
