"""skhydra._body and custom bodies end to end: body classes and instances, body_params /
body__ parameters, inputs of more than two dimensions (images, sequences), searches and
errors. (The input scaling of such inputs is tested in test_transfer.py.)"""

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV
from torch import nn

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor
from skhydra._body import make_body

# These tests check the plumbing of custom bodies, not distillation quality: the shared
# tiny schedule (body_layer_sizes is ignored once a body is given).
TINY_C = dict(TINY, temperature=1.0)


# ---------------------------------------------------------------------------
# bodies (module level, so fitted students pickle)
# ---------------------------------------------------------------------------


class MLPBody(nn.Module):
    """A two-layer MLP body for tables of ``in_features`` columns."""

    def __init__(self, in_features=4, width=6):
        super().__init__()
        self.hidden = nn.Linear(in_features, 10)
        self.out = nn.Linear(10, width)

    def forward(self, x):
        return torch.relu(self.out(torch.relu(self.hidden(x))))


class LazyBody(nn.Module):
    """A body whose input width is only known at the first forward pass."""

    def __init__(self, width=5):
        super().__init__()
        self.linear = nn.LazyLinear(width)

    def forward(self, x):
        return torch.relu(self.linear(x))


class SmallCNN(nn.Module):
    """Conv 3x3 + ReLU + 2x2 max pooling: (N, C_in, 8, 8) -> (N, channels, 3, 3)."""

    def __init__(self, channels=2, in_channels=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))


class Conv1dBody(nn.Module):
    """Conv1d over sequences of 8 channels: (N, 8, 8) -> (N, 3, 6)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(8, 3, 3)

    def forward(self, x):
        return torch.relu(self.conv(x))


class PooledRowsBody(nn.Module):
    """Wrong: pools over the batch, returning one row whatever the batch size."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x).sum(dim=0, keepdim=True)


class NotAModule:
    """A class that is not a torch module."""

    def __init__(self, width=3):
        self.width = width


# ---------------------------------------------------------------------------
# data and teachers
# ---------------------------------------------------------------------------


def _cnn_teachers(X, y, n_outputs, *, n_members=3, steps=15, regression=False):
    """Small CNN members, each trained a few full-batch steps from its own seed."""
    in_channels = X.shape[1]
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y.astype(np.float32 if regression else np.int64))
    members = []
    for seed in range(n_members):
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(in_channels, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, n_outputs)
        )
        opt = torch.optim.Adam(net.parameters(), lr=0.02)
        for _ in range(steps):
            opt.zero_grad()
            out = net(Xt)
            if regression:
                loss = nn.functional.mse_loss(out[:, 0], yt)
            else:
                loss = nn.functional.cross_entropy(out, yt)
            loss.backward()
            opt.step()
        members.append(net)
    return members


@pytest.fixture(scope="module")
def images():
    """200 digits as float images of shape (1, 8, 8)."""
    X, y = load_digits(return_X_y=True)
    X = (X[:200] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return X, y[:200]


@pytest.fixture(scope="module")
def cnn_teachers(images):
    return _cnn_teachers(*images, n_outputs=10)


@pytest.fixture(scope="module")
def cnn_model(images, cnn_teachers):
    X, y = images
    return HydraDistilledClassifier(
        cnn_teachers, body=SmallCNN, body_params={"channels": 3}, **TINY_C
    ).fit(X, y)


def _heads_width(model):
    return model.net_.module_.heads.layers[0].weight.shape[1]


# ---------------------------------------------------------------------------
# make_body
# ---------------------------------------------------------------------------


def test_make_body_builds_a_class_and_copies_an_instance():
    assert make_body(None, None) is None and make_body(None, {}) is None  # the default MLP
    built = make_body(MLPBody, {"in_features": 3, "width": 2})
    assert isinstance(built, MLPBody) and built.hidden.in_features == 3
    assert built.out.out_features == 2
    assert make_body(MLPBody, None).out.out_features == 6  # the class's defaults
    instance = MLPBody()
    copied = make_body(instance, None)
    assert copied is not instance and copied.hidden.weight is not instance.hidden.weight
    assert torch.equal(copied.hidden.weight, instance.hidden.weight)


def test_make_body_errors():
    with pytest.raises(ValueError, match=r"body_params \['width'\] were given without a body"):
        make_body(None, {"width": 3})
    with pytest.raises(ValueError, match="instance of MLPBody; pass the class"):
        make_body(MLPBody(), {"width": 3})
    with pytest.raises(
        TypeError, match="torch.nn.Module class or instance, got the class NotAModule"
    ):
        make_body(NotAModule, None)
    with pytest.raises(TypeError, match=r"Could not build the body MLPBody\(\*\*body_params\)"):
        make_body(MLPBody, {"depth": 2})


# ---------------------------------------------------------------------------
# custom bodies on tables
# ---------------------------------------------------------------------------


def test_custom_body_class_classifier(iris, forest):
    X, y = iris
    params = {**TINY_C, "body_layer_sizes": (999,)}  # ignored with a custom body
    model = HydraDistilledClassifier(
        forest, body=MLPBody, body_params={"in_features": 4, "width": 6}, **params
    ).fit(X)
    module = model.net_.module_
    assert isinstance(module.body, MLPBody)
    assert module.body.out.out_features == 6
    assert _heads_width(model) == 6
    assert not any(isinstance(m, nn.Linear) and m.out_features == 999 for m in module.modules()), (
        "body_layer_sizes must be ignored when a body is given"
    )
    assert model.input_shape_ == (4,)
    assert model.n_features_in_ == 4
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert model.predict_members(X).shape == (len(X), forest.n_estimators, 3)


def test_custom_body_class_regressor(diabetes, forest_r):
    X, y = diabetes
    model = HydraDistilledRegressor(
        forest_r, body=MLPBody, body_params={"in_features": 10, "width": 7}, **TINY
    ).fit(X, y)
    assert isinstance(model.net_.module_.body, MLPBody)
    assert _heads_width(model) == 7
    mean, std = model.predict(X, return_std=True)
    assert mean.shape == std.shape == (len(X),)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    means, variances = model.predict_members(X)
    assert means.shape == variances.shape == (len(X), forest_r.n_estimators)


def test_body_layer_sizes_still_shape_the_default_body(iris, forest):
    X, _ = iris
    params = {**TINY_C, "body_layer_sizes": (7,)}
    model = HydraDistilledClassifier(forest, **params, feature_encoding=None).fit(X)
    linears = [m for m in model.net_.module_.body.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 7)]
    # With the forest's split points encoded, the body reads the encoding's columns.
    encoded = HydraDistilledClassifier(forest, **params).fit(X).net_.module_
    linears = [m for m in encoded.body.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(encoded.encode.out_features, 7)]
    assert encoded.encode.out_features > 4
    assert _heads_width(model) == 7


def test_lazy_linear_body(iris, forest):
    X, _ = iris
    model = HydraDistilledClassifier(forest, body=LazyBody, body_params={"width": 5}, **TINY_C)
    model.fit(X)
    body = model.net_.module_.body
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in body.parameters())
    assert body.linear.weight.shape == (5, 4)
    assert _heads_width(model) == 5
    assert model.predict_proba(X).shape == (len(X), 3)


def test_body_instance_is_copied_not_mutated(iris, forest):
    X, _ = iris
    torch.manual_seed(0)
    body = MLPBody(in_features=4, width=6)
    before = copy.deepcopy(body.state_dict())
    model = HydraDistilledClassifier(forest, body=body, **TINY_C).fit(X)
    assert model.net_.module_.body is not body
    assert isinstance(model.net_.module_.body, MLPBody)
    assert _heads_width(model) == 6
    for name, value in body.state_dict().items():
        assert torch.equal(value, before[name]), f"fit changed the user's body ({name})"
    trained = model.net_.module_.body.state_dict()
    assert not all(torch.equal(trained[k], before[k]) for k in before), "the copy was trained"
    # Without training epochs the student's body keeps the instance's weights.
    untrained = HydraDistilledClassifier(
        forest, body=body, phase1_epochs=0, max_epochs=0, random_state=0
    ).fit(X)
    for name, value in untrained.net_.module_.body.state_dict().items():
        assert torch.equal(value, before[name])


# ---------------------------------------------------------------------------
# body_params and body__ parameters
# ---------------------------------------------------------------------------


def test_body_params_in_get_params():
    est = HydraDistilledClassifier(body=SmallCNN, body_params={"channels": 2, "in_channels": 1})
    deep = est.get_params(deep=True)
    assert deep["body__channels"] == 2 and deep["body__in_channels"] == 1
    assert deep["body"] is SmallCNN
    shallow = est.get_params(deep=False)
    assert not any(k.startswith("body__") for k in shallow)
    assert shallow["body_params"] == {"channels": 2, "in_channels": 1}
    assert not any(k.startswith("body__") for k in HydraDistilledClassifier().get_params())


def test_set_params_merges_body_args_without_mutating():
    original = {"channels": 2}
    est = HydraDistilledClassifier(body=SmallCNN, body_params=original)
    assert est.set_params(body__channels=4, body__in_channels=1) is est
    assert est.body_params == {"channels": 4, "in_channels": 1}
    assert original == {"channels": 2}, "set_params mutated the user's dict"
    assert est.get_params()["body__channels"] == 4
    # body__ entries merge into a body_params given in the same call.
    est.set_params(body_params={"in_channels": 2}, body__channels=8)
    assert est.body_params == {"in_channels": 2, "channels": 8}
    # body_params=None starts an empty dict; other parameters are set normally.
    reg = HydraDistilledRegressor(body=SmallCNN).set_params(body__channels=3, lr=0.01)
    assert reg.body_params == {"channels": 3} and reg.lr == 0.01


def test_clone_keeps_body_params():
    est = HydraDistilledClassifier(body=SmallCNN, body_params={"channels": 2})
    est.set_params(body__channels=4)
    twin = clone(est)
    assert twin.body is SmallCNN
    assert twin.body_params == {"channels": 4}
    assert twin.get_params()["body__channels"] == 4
    twin.set_params(body__channels=8)
    assert est.body_params == {"channels": 4}, "the clone shares body_params with the original"


# ---------------------------------------------------------------------------
# images: 4-D input with a CNN body and torch CNN teachers
# ---------------------------------------------------------------------------


def test_cnn_body_on_images(images, cnn_model):
    X, y = images
    model = cnn_model
    assert model.input_shape_ == (1, 8, 8)
    # scikit-learn's convention for n-D input: n_features_in_ is X.shape[1].
    assert model.n_features_in_ == X.shape[1]
    assert model.n_heads_ == 3
    assert isinstance(model.net_.module_.body, SmallCNN)
    assert model.net_.module_.body.conv.out_channels == 3
    assert _heads_width(model) == 3 * 3 * 3
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert model.predict(X).shape == (len(X),)
    assert set(model.predict(X)) <= set(range(10))
    assert model.predict_members(X).shape == (len(X), 3, 10)
    unc = model.predict_uncertainty(X)
    assert unc.shape == (len(X), 3)
    assert (unc["epistemic"] >= -1e-6).all()


def test_cnn_body_regressor_on_images(images):
    X, y = images
    y = y.astype(np.float64)
    teachers = _cnn_teachers(X, y, n_outputs=1, n_members=2, steps=10, regression=True)
    model = HydraDistilledRegressor(teachers, body=SmallCNN, **TINY).fit(X, y)
    assert model.input_shape_ == (1, 8, 8)
    assert _heads_width(model) == 2 * 3 * 3
    mean, std = model.predict(X, return_std=True)
    assert mean.shape == std.shape == (len(X),)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    means, variances = model.predict_members(X)
    assert means.shape == variances.shape == (len(X), 2)
    assert model.predict_uncertainty(X).shape == (len(X), 3)


def test_grid_search_over_body_argument(images, cnn_teachers):
    X, y = images
    est = HydraDistilledClassifier(
        cnn_teachers, body=SmallCNN, body_params={"channels": 3}, **TINY_C
    )
    search = GridSearchCV(est, {"body__channels": [2, 4]}, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 2
    assert [p["body__channels"] for p in search.cv_results_["params"]] == [2, 4]
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_
    channels = search.best_params_["body__channels"]
    assert best.body_params == {"channels": channels}
    assert best.net_.module_.body.conv.out_channels == channels
    assert _heads_width(best) == channels * 3 * 3
    assert est.body_params == {"channels": 3}, "the search changed the original estimator"
    assert search.predict(X).shape == (len(X),)


@pytest.mark.parametrize("augmentation", ["noise", "mixup"])
def test_augmentation_on_images(images, cnn_teachers, augmentation):
    X, y = images
    X, y = X[:100], y[:100]
    params = dict(TINY_C, early_stopping=False, batch_size=50)
    plain = HydraDistilledClassifier(cnn_teachers, body=SmallCNN, augmentation=None, **params).fit(
        X
    )
    model = HydraDistilledClassifier(
        cnn_teachers, body=SmallCNN, augmentation=augmentation, augmentation_factor=1.0, **params
    ).fit(X)
    # The synthetic images double the rows of each epoch.
    assert plain.net_.history[-1, "train_batch_count"] == 2
    assert model.net_.history[-1, "train_batch_count"] == 4
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 10) and np.all(np.isfinite(proba))
    assert model.input_shape_ == (1, 8, 8)


def test_sequences_with_conv1d_body(images):
    """3-D input (n_samples, channels, length): the rows of each image as 8 channels."""
    X, y = images
    X = X.reshape(-1, 8, 8)
    torch.manual_seed(0)
    teachers = [nn.Sequential(nn.Flatten(), nn.Linear(64, 10)) for _ in range(2)]
    model = HydraDistilledClassifier(teachers, body=Conv1dBody, augmentation=None, **TINY_C).fit(
        X, y
    )
    assert model.input_shape_ == (8, 8)
    assert _heads_width(model) == 3 * 6
    assert model.predict_members(X).shape == (len(X), 2, 10)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_images_need_a_custom_body(images, cnn_teachers):
    X, _ = images
    with pytest.raises(ValueError, match="custom body"):
        HydraDistilledClassifier(cnn_teachers, **TINY_C).fit(X)


def test_predict_with_other_row_shape(images, cnn_model):
    X, _ = images
    for bad in (X.reshape(-1, 1, 4, 16), X.reshape(-1, 1, 64), X[:, :, :4]):
        with pytest.raises(ValueError, match=r"rows of shape .*\(1, 8, 8\)"):
            cnn_model.predict(bad)
    with pytest.raises(ValueError, match="features"):
        cnn_model.predict(X.reshape(len(X), -1))


def test_body_failing_on_the_input_shape(iris, forest, images, cnn_teachers):
    X, _ = iris
    with pytest.raises(ValueError, match=r"SmallCNN.*\(2, 4\)"):
        HydraDistilledClassifier(forest, body=SmallCNN, **TINY_C).fit(X)
    images_2c = np.repeat(images[0][:40], 2, axis=1)  # two channels, the body expects one
    teachers_2c = _cnn_teachers(images_2c, images[1][:40], n_outputs=10, n_members=1, steps=0)
    with pytest.raises(ValueError, match=r"SmallCNN.*\(2, 2, 8, 8\)"):
        HydraDistilledClassifier(teachers_2c, body=SmallCNN, **TINY_C).fit(images_2c)


def test_body_returning_wrong_batch_size(iris, forest):
    X, _ = iris
    with pytest.raises(ValueError, match="PooledRowsBody.*one row per input row"):
        HydraDistilledClassifier(forest, body=PooledRowsBody, **TINY_C).fit(X)


def test_body_class_that_is_not_a_module(iris, forest):
    X, _ = iris
    with pytest.raises(TypeError, match="torch.nn.Module.*NotAModule"):
        HydraDistilledClassifier(forest, body=NotAModule, **TINY_C).fit(X)


def test_body_params_without_body_class(iris, forest):
    X, _ = iris
    with pytest.raises(ValueError, match="body_params"):
        HydraDistilledClassifier(forest, body_params={"width": 3}, **TINY_C).fit(X)
    with pytest.raises(ValueError, match="instance"):
        HydraDistilledClassifier(forest, body=MLPBody(), body_params={"width": 3}, **TINY_C).fit(X)


def test_body_params_unknown_constructor_argument(iris, forest):
    X, _ = iris
    est = HydraDistilledClassifier(forest, body=MLPBody, **TINY_C).set_params(body__depth=2)
    with pytest.raises(TypeError, match="MLPBody.*depth"):
        est.fit(X)


# ---------------------------------------------------------------------------
# reproducibility, persistence, pandas
# ---------------------------------------------------------------------------


def test_same_random_state_same_predictions(images, cnn_teachers):
    X, _ = images
    X = X[:100]

    def fit(seed):
        return HydraDistilledClassifier(
            cnn_teachers, body=SmallCNN, **dict(TINY_C, random_state=seed)
        ).fit(X)

    first, second, other = fit(0), fit(0), fit(1)
    np.testing.assert_array_equal(first.predict_members(X), second.predict_members(X))
    assert not np.array_equal(first.predict_members(X), other.predict_members(X))


def test_pickle_round_trip_with_cnn_body(images, cnn_model):
    X, _ = images
    restored = pickle.loads(pickle.dumps(cnn_model))
    assert isinstance(restored.net_.module_.body, SmallCNN)
    assert restored.input_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(restored.predict_proba(X), cnn_model.predict_proba(X))
    served = pickle.loads(pickle.dumps(cnn_model.without_teacher()))
    np.testing.assert_array_equal(served.predict_members(X), cnn_model.predict_members(X))


def test_dataframe_with_custom_body():
    frame, y = load_iris(return_X_y=True, as_frame=True)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, y)
    model = HydraDistilledClassifier(forest, body=MLPBody, body_params={"width": 4}, **TINY_C).fit(
        frame
    )
    np.testing.assert_array_equal(model.feature_names_in_, frame.columns)
    assert model.input_shape_ == (4,)
    assert _heads_width(model) == 4
    assert model.predict(frame).shape == (len(frame),)
    unc = model.predict_uncertainty(frame.iloc[10:20])
    assert isinstance(unc, pd.DataFrame)
    assert list(unc.index) == list(frame.index[10:20])
