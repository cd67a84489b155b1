"""Tests of skhydra.to_onnx: the exported graph computes what the estimators predict."""

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits, make_regression
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from torch import nn

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor, onnx_inputs, to_onnx
from skhydra._onnx_graph import _entropy_parts
from skhydra.uncertainty import entropy_decomposition

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")

TINY = dict(body_layer_sizes=(16,), phase1_epochs=5, max_epochs=15, random_state=0)
ATOL = 1e-5


def _run(model, X):
    session = ort.InferenceSession(model.SerializeToString())
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, onnx_inputs(session, X)), strict=True))


def _check_classifier(student, model, X):
    out = _run(model, X)
    parts = student.predict_uncertainty(X)
    np.testing.assert_array_equal(out["label"], student.predict(X))
    np.testing.assert_allclose(out["probabilities"], student.predict_proba(X), rtol=0, atol=ATOL)
    for name in ("total", "aleatoric", "epistemic"):
        np.testing.assert_allclose(out[name], parts[name], rtol=0, atol=ATOL, err_msg=name)
    return out


def _check_regressor(student, model, X):
    out = _run(model, X)
    mean, std = student.predict(X, return_std=True)
    parts = student.predict_uncertainty(X)
    np.testing.assert_allclose(out["mean"], mean, rtol=0, atol=ATOL)
    np.testing.assert_allclose(out["std"], std, rtol=0, atol=ATOL)
    for name in ("total", "aleatoric", "epistemic"):
        np.testing.assert_allclose(out[name], parts[name], rtol=0, atol=ATOL, err_msg=name)
    return out


# -- data and students -----------------------------------------------------------


@pytest.fixture(scope="module")
def iris_split(iris):
    X, y = iris
    return X[::2], y[::2], X[1::2], y[1::2]


@pytest.fixture(scope="module")
def classifier(iris_split):
    X, y, _, _ = iris_split
    forest = RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y)
    return HydraDistilledClassifier(forest, **TINY).fit(X)


@pytest.fixture(scope="module")
def regression_data():
    # Targets of unit scale: float32 keeps them to about 1e-7.
    X, y = make_regression(n_samples=300, n_features=6, noise=10.0, random_state=0)
    return X[:200], y[:200] / y.std(), X[200:]


@pytest.fixture(scope="module")
def regressor(regression_data):
    X, y, _ = regression_data
    forest = RandomForestRegressor(n_estimators=6, max_depth=5, random_state=0).fit(X, y)
    return HydraDistilledRegressor(forest, **TINY).fit(X, y)


def _mixed_frame(n, rng):
    city = rng.choice(["Oslo", "Rome", "Lima"], n)
    rooms = rng.integers(1, 6, n)
    area = rng.normal(70, 20, n) + 10 * rooms
    # skl2onnx makes "area (m2)" an identifier; onnx_inputs maps it back.
    frame = pd.DataFrame({"city": city, "rooms": rooms, "area (m2)": area})
    y = (area / 10 + (city == "Rome") * 3 + rng.normal(0, 1, n) > 11).astype(int)
    return frame, y


@pytest.fixture(scope="module")
def pipeline_student():
    rng = np.random.default_rng(0)
    X, y = _mixed_frame(300, rng)
    front = ColumnTransformer(
        [("city", OneHotEncoder(), ["city"]), ("numbers", StandardScaler(), ["rooms", "area (m2)"])]
    )
    teacher = make_pipeline(front, RandomForestClassifier(n_estimators=6, random_state=0))
    teacher.fit(X[:200], y[:200])
    return HydraDistilledClassifier(teacher, **TINY).fit(X[:200]), X[200:]


# -- the outputs match Python ------------------------------------------------------


def test_classifier_outputs_match_python(classifier, iris_split):
    model = to_onnx(classifier, iris_split[0][:5])
    assert [o.name for o in model.graph.output] == [
        "label",
        "probabilities",
        "total",
        "aleatoric",
        "epistemic",
    ]
    out = _check_classifier(classifier, model, iris_split[2])
    assert out["label"].dtype == np.int64
    np.testing.assert_allclose(out["total"], out["aleatoric"] + out["epistemic"], atol=1e-6)


def test_string_labels_and_hidden_head_layers(iris_split):
    X, y, X_test, _ = iris_split
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, names)
    # Heads with a hidden layer: the graph's last head layer takes per-head features.
    student = HydraDistilledClassifier(forest, head_layer_sizes=(8,), **TINY).fit(X)
    out = _check_classifier(student, to_onnx(student, X[:3]), X_test)
    assert set(out["label"]) <= set(names)


def test_regressor_outputs_match_python(regressor, regression_data):
    X, _, X_test = regression_data
    model = to_onnx(regressor, X[:4])
    assert [o.name for o in model.graph.output] == [
        "mean",
        "std",
        "total",
        "aleatoric",
        "epistemic",
    ]
    out = _check_regressor(regressor, model, X_test)
    assert (out["aleatoric"] > 0).all() and (out["epistemic"] >= 0).all()


def test_regressor_unknown_aleatoric_is_nan(regression_data):
    X, y, X_test = regression_data
    forest = RandomForestRegressor(n_estimators=4, max_depth=4, random_state=0).fit(X, y)
    with pytest.warns(UserWarning, match="aleatoric"):
        student = HydraDistilledRegressor(forest, **TINY).fit(X)
    with pytest.warns(UserWarning, match="NaN"):
        model = to_onnx(student, X[:2])
    out = _run(model, X_test)
    with pytest.warns(UserWarning):
        mean, std = student.predict(X_test, return_std=True)
    np.testing.assert_allclose(out["mean"], mean, rtol=0, atol=ATOL)
    assert np.isnan(out["std"]).all() and np.isnan(out["total"]).all()
    assert np.isnan(out["aleatoric"]).all()
    with pytest.warns(UserWarning):
        epistemic = student.predict_uncertainty(X_test)["epistemic"]
    np.testing.assert_allclose(out["epistemic"], epistemic, rtol=0, atol=ATOL)


class SmallCNN(nn.Module):
    """Conv 3x3 + ReLU + 2x2 max pooling: (N, 1, 8, 8) -> (N, 3, 3, 3)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))


def test_custom_cnn_body():
    X, y = load_digits(return_X_y=True)
    X = (X[:240] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    teachers = []
    for seed in range(3):
        torch.manual_seed(seed)
        teachers.append(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    student = HydraDistilledClassifier(teachers, body=SmallCNN, **TINY).fit(X[:160], y[:160])
    model = to_onnx(student, X[:2])
    shape = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert shape == ["n_samples", 1, 8, 8]
    _check_classifier(student, model, X[160:])


def test_missing_values_are_filled_in_the_graph(iris_split):
    X, y, X_test, _ = iris_split
    rng = np.random.default_rng(0)
    X, X_test = X.copy(), X_test.copy()
    X[rng.random(X.shape) < 0.1] = np.nan
    X_test[rng.random(X_test.shape) < 0.2] = np.nan
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    student = HydraDistilledClassifier(forest, **TINY).fit(X)
    assert np.isnan(X_test).any()
    out = _check_classifier(student, to_onnx(student, X[:3]), X_test)
    assert np.isfinite(out["probabilities"]).all()


def test_pipeline_teacher_on_a_dataframe(pipeline_student):
    student, X_test = pipeline_student
    model = to_onnx(student, X_test.head(3))
    names = [i.name for i in model.graph.input]
    assert names[:2] == ["city", "rooms"] and len(names) == 3
    feeds = onnx_inputs(model, X_test)
    assert list(feeds) == names
    assert feeds["city"].dtype == object and feeds["rooms"].dtype == np.int64
    assert feeds[names[2]].dtype == np.float32 and feeds[names[2]].shape == (len(X_test), 1)
    _check_classifier(student, model, X_test)


def test_without_teacher_and_dynamic_batch(classifier, iris_split):
    X_test = iris_split[2]
    model = to_onnx(classifier.without_teacher(), X_test[:1])
    for rows in (X_test[:1], X_test[:37]):
        out = _run(model, rows)
        assert out["probabilities"].shape == (len(rows), 3)
    _check_classifier(classifier, model, X_test)


def test_bfloat16_student_exports_in_float32(classifier, iris_split):
    X_test = iris_split[2]
    bf16 = copy.copy(classifier).set_params(precision="bfloat16")
    out = _run(to_onnx(bf16, X_test[:2]), X_test)
    # The float32 network the bfloat16 student was trained with, not its autocast.
    np.testing.assert_allclose(
        out["probabilities"], classifier.predict_proba(X_test), rtol=0, atol=ATOL
    )


def test_target_opset(classifier, iris_split):
    model = to_onnx(classifier, iris_split[0][:2], target_opset=15)
    assert {o.domain: o.version for o in model.opset_import}[""] == 15
    _check_classifier(classifier, model, iris_split[2][:10])
    with pytest.raises(ValueError, match="target_opset=21 is not supported"):
        to_onnx(classifier, iris_split[0][:2], target_opset=21)


def test_entropy_parts_mirror_entropy_decomposition():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, 5)  # (rows, classes, heads)
    logits[0, 0] = -200.0  # a class whose probability underflows to exactly 0
    for heads in (1, 5):
        log_p = torch.log_softmax(logits[..., :heads], dim=1)
        weights = torch.rand(heads)
        weights /= weights.sum()
        expected = entropy_decomposition(log_p.exp(), weights, log_p=log_p)
        z = logits[..., :heads] - logits[..., :heads].amax(dim=1, keepdim=True)
        e = z.exp()
        s = e.sum(dim=1, keepdim=True)
        got = _entropy_parts((e / s) @ weights, z, e, s, weights, heads)
        for e, g in zip(expected, got, strict=True):
            torch.testing.assert_close(g, e)


# -- errors --------------------------------------------------------------------------


def test_unsupported_step_is_named(iris_split):
    X, y, _, _ = iris_split
    teacher = make_pipeline(
        FunctionTransformer(np.log1p), RandomForestClassifier(n_estimators=3, random_state=0)
    ).fit(X, y)
    student = HydraDistilledClassifier(teacher, **TINY).fit(X)
    with pytest.raises(ValueError, match=r"step 'functiontransformer' \(FunctionTransformer\)"):
        to_onnx(student, X[:2])


def test_not_fitted_and_wrong_type(forest, iris):
    with pytest.raises(NotFittedError):
        to_onnx(HydraDistilledClassifier(forest), iris[0][:2])
    with pytest.raises(TypeError, match="got RandomForestClassifier"):
        to_onnx(forest, iris[0][:2])


def test_onnx_inputs_needs_the_columns(pipeline_student):
    student, X_test = pipeline_student
    model = to_onnx(student, X_test.head(2))
    with pytest.raises(ValueError, match=r"missing: \['city'\]"):
        onnx_inputs(model, X_test.drop(columns="city"))
    with pytest.raises(TypeError, match="ModelProto"):
        onnx_inputs("model.onnx", X_test)


def test_export_warns_nothing_and_leaves_the_student_unchanged(classifier, iris_split):
    X_test = iris_split[2]
    before = classifier.predict_proba(X_test)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_onnx(classifier, X_test[:2])
    np.testing.assert_array_equal(classifier.predict_proba(X_test), before)
