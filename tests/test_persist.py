"""What skhydra/_persist.py owns: dump and load of .skhydra files, which load without
unpickling, predict bit-identically, and refuse code nobody trusted."""

import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY
from sklearn.base import clone
from sklearn.compose import make_column_transformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from torch import nn

import skhydra
from skhydra import HydraDistilledClassifier, HydraDistilledRegressor
from skhydra._persist import FORMAT_VERSION

DATA = Path(__file__).parent / "data"


# ---------------------------------------------------------------------------
# code a file may name (module level, so it can be imported by its path)
# ---------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Conv 3x3 + ReLU + 2x2 max pooling on (N, 1, 8, 8) images."""

    def __init__(self, channels=2):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))


def shifted_log(X):
    """A custom function of a FunctionTransformer: skops does not trust it by default."""
    return np.log1p(np.abs(X))


# ---------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------


def _round_trip(model, how, tmp_path, **load_params):
    if how == "path":
        path = tmp_path / "student.skhydra"
        skhydra.dump(model, path)
        return skhydra.load(path, **load_params)
    buffer = io.BytesIO()
    skhydra.dump(model, buffer)
    return skhydra.load(io.BytesIO(buffer.getvalue()), **load_params)


def _assert_same_classifier(loaded, model, X):
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_members(X), model.predict_members(X))
    pd.testing.assert_frame_equal(loaded.predict_uncertainty(X), model.predict_uncertainty(X))
    assert loaded.classes_.dtype == model.classes_.dtype


def _assert_same_regressor(loaded, model, X):
    for got, expected in zip(
        loaded.predict(X, return_std=True), model.predict(X, return_std=True), strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(loaded.predict_members(X), model.predict_members(X), strict=True):
        np.testing.assert_array_equal(got, expected)
    pd.testing.assert_frame_equal(loaded.predict_uncertainty(X), model.predict_uncertainty(X))


def _with_config(data, **changes):
    """A copy of the .skhydra bytes ``data`` with top-level JSON entries changed."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "skhydra.json":
                content = json.dumps({**json.loads(content), **changes}).encode()
            target.writestr(name, content)
    return out.getvalue()


@pytest.fixture(scope="module")
def ranked(iris, forest):
    """Integer classes, heads behind a shared rank-4 projection."""
    return HydraDistilledClassifier(forest, head_rank=4, **TINY).fit(iris[0])


@pytest.fixture(scope="module")
def with_nan(iris, iris_names):
    """String classes, a teacher that takes NaN, and features missing in training."""
    X = iris[0].copy()
    X[::7, 0] = np.nan
    X[::11, 2] = np.nan
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, iris_names)
    return X, HydraDistilledClassifier(forest, **TINY).fit(X)


@pytest.fixture(scope="module")
def bfloat16(diabetes, forest_r):
    return HydraDistilledRegressor(forest_r, precision="bfloat16", **TINY).fit(*diabetes)


@pytest.fixture(scope="module")
def mixed(iris):
    """A DataFrame with a string column, and a student of a Pipeline teacher."""
    X, y = iris
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"], index=np.arange(len(X)) + 100)
    frame["colour"] = np.where(X[:, 1] > 3.0, "red", "blue")
    encoder = make_column_transformer((OneHotEncoder(), ["colour"]), remainder=StandardScaler())
    teacher = make_pipeline(encoder, RandomForestClassifier(n_estimators=5, random_state=0))
    return frame, HydraDistilledClassifier(teacher.fit(frame, y), **TINY).fit(frame)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.random((120, 1, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def cnn_student(images):
    torch.manual_seed(0)
    teachers = [nn.Sequential(nn.Flatten(), nn.Linear(64, 3)) for _ in range(3)]
    return HydraDistilledClassifier(
        teachers, body=SmallCNN, body_params={"channels": 3}, **TINY
    ).fit(images)


# ---------------------------------------------------------------------------
# round trips: bit-identical predictions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["path", "bytesio"])
def test_classifier_round_trip_with_projection(how, tmp_path, iris, ranked):
    assert ranked.head_rank_ == 4
    loaded = _round_trip(ranked, how, tmp_path)
    _assert_same_classifier(loaded, ranked, iris[0])
    assert loaded.head_rank_ == 4 and loaded.net_.module_.heads.rank == 4
    np.testing.assert_array_equal(loaded.head_weights_, ranked.head_weights_)
    np.testing.assert_array_equal(loaded.member_heads_, ranked.member_heads_)
    assert loaded.input_shape_ == ranked.input_shape_ == (4,)


def test_string_classes_and_missing_values_round_trip(tmp_path, with_nan):
    X, model = with_nan
    assert model.net_.module_.fill.missing.tolist() == [0, 2]
    loaded = _round_trip(model, "path", tmp_path)
    assert loaded.teacher_.allows_nan
    _assert_same_classifier(loaded, model, X)
    assert loaded.predict(X[:3]).tolist() == model.predict(X[:3]).tolist()


@pytest.mark.parametrize("how", ["path", "bytesio"])
def test_regressor_round_trip(how, tmp_path, diabetes, hydra_r):
    loaded = _round_trip(hydra_r, how, tmp_path)
    _assert_same_regressor(loaded, hydra_r, diabetes[0])
    assert loaded.target_encoding_ == hydra_r.target_encoding_


def test_bfloat16_round_trip(tmp_path, diabetes, bfloat16):
    loaded = _round_trip(bfloat16, "bytesio", tmp_path)
    assert loaded.precision == "bfloat16" and loaded.net_.precision == "bfloat16"
    _assert_same_regressor(loaded, bfloat16, diabetes[0])


def test_pipeline_teacher_round_trip(tmp_path, mixed):
    pytest.importorskip("skops")
    frame, model = mixed
    loaded = _round_trip(model, "path", tmp_path)
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    assert loaded.n_features_in_ == 5 and loaded.input_shape_ == model.input_shape_
    _assert_same_classifier(loaded, model, frame)
    assert loaded.predict_uncertainty(frame).index.equals(frame.index)
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame[frame.columns[::-1]])


def test_loaded_student_is_like_without_teacher(tmp_path, iris, ranked):
    X, y = iris
    loaded = _round_trip(ranked, "bytesio", tmp_path)
    assert loaded.ensemble is None and loaded.ensemble_ is None
    assert loaded.teacher_.members == () and loaded.teacher_.ensemble is None
    expected = ranked.without_teacher().get_params(deep=False)
    assert loaded.get_params(deep=False) == expected
    assert isinstance(loaded.net_, skhydra._training.HydraNet) and loaded.device_ == "cpu"
    assert len(loaded.net_.history) == len(ranked.net_.history)
    assert loaded.net_.history[-1, "train_loss"] == ranked.net_.history[-1, "train_loss"]
    # Refitting without an ensemble fits the default one, as for without_teacher().
    refit = clone(loaded).fit(X, y)
    assert refit.n_members_ == 20 and refit.head_rank_ == 4


def test_loading_keeps_the_global_random_stream(tmp_path, ranked):
    buffer = io.BytesIO()
    skhydra.dump(ranked, buffer)
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    skhydra.load(io.BytesIO(buffer.getvalue()))
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# loading runs no pickle, and only trusted code
# ---------------------------------------------------------------------------


def test_loading_never_unpickles(monkeypatch, mixed):
    pytest.importorskip("skops")
    frame, model = mixed
    buffer = io.BytesIO()
    skhydra.dump(model, buffer)

    def refuse(*args, **kwargs):
        raise AssertionError("load unpickled something")

    calls = []
    torch_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs)
        return torch_load(*args, **kwargs)

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)

    class RefusingUnpickler:
        def __init__(self, *args, **kwargs):
            refuse()

    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)
    monkeypatch.setattr(pickle, "_Unpickler", RefusingUnpickler)
    monkeypatch.setattr(torch, "load", recording_load)
    loaded = skhydra.load(io.BytesIO(buffer.getvalue()))
    assert calls and all(c.get("weights_only") is True for c in calls)
    monkeypatch.undo()
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))


def test_archive_holds_json_weights_and_skops_only(mixed):
    pytest.importorskip("skops")
    buffer = io.BytesIO()
    skhydra.dump(mixed[1], buffer)
    archive = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    assert sorted(archive.namelist()) == ["preprocessor.skops", "skhydra.json", "weights.pt"]
    config = json.loads(archive.read("skhydra.json"))
    assert config["format_version"] == FORMAT_VERSION
    assert config["estimator"] == "HydraDistilledClassifier"
    assert "ensemble" not in config["params"]
    assert config["attributes"]["feature_names_in_"]["ndarray"]["values"] == [
        "sl",
        "sw",
        "pl",
        "pw",
        "colour",
    ]


def test_untrusted_preprocessing_is_refused_until_trusted(tmp_path, iris):
    pytest.importorskip("skops")
    X, y = iris
    teacher = make_pipeline(
        FunctionTransformer(shifted_log), RandomForestClassifier(n_estimators=4, random_state=0)
    ).fit(X, y)
    model = HydraDistilledClassifier(teacher, **TINY).fit(X)
    path = tmp_path / "student.skhydra"
    skhydra.dump(model, path)
    with pytest.raises(ValueError, match=r"not trusted: \['test_persist.shifted_log'\]"):
        skhydra.load(path)
    loaded = skhydra.load(path, trusted=["test_persist.shifted_log"])
    _assert_same_classifier(loaded, model, X)


def test_preprocessing_without_skops_names_the_extra(monkeypatch, mixed):
    pytest.importorskip("skops")
    buffer = io.BytesIO()
    skhydra.dump(mixed[1], buffer)
    monkeypatch.setitem(sys.modules, "skops", None)
    monkeypatch.setitem(sys.modules, "skops.io", None)
    with pytest.raises(ImportError, match=r'pip install "skhydra\[skops\]"'):
        skhydra.load(io.BytesIO(buffer.getvalue()))
    with pytest.raises(ImportError, match=r'pip install "skhydra\[skops\]"'):
        skhydra.dump(mixed[1], io.BytesIO())


def test_custom_body_is_refused_until_trusted(tmp_path, images, cnn_student):
    path = tmp_path / "cnn.skhydra"
    skhydra.dump(cnn_student, path)
    with pytest.raises(ValueError, match=r"not trusted: \['test_persist:SmallCNN'\]"):
        skhydra.load(path)
    loaded = skhydra.load(path, trusted=["test_persist:SmallCNN"])
    assert loaded.body is SmallCNN and loaded.body_params == {"channels": 3}
    assert loaded.input_shape_ == (1, 8, 8)
    _assert_same_classifier(loaded, cnn_student, images)


def test_body_instance_is_refused_at_dump(images):
    torch.manual_seed(0)
    teachers = [nn.Sequential(nn.Flatten(), nn.Linear(64, 3)) for _ in range(2)]
    model = HydraDistilledClassifier(teachers, body=SmallCNN(), **TINY).fit(images)
    with pytest.raises(TypeError, match="body is an instance of SmallCNN.*pickle"):
        skhydra.dump(model, io.BytesIO())


@pytest.mark.parametrize("trusted", ["test_persist:SmallCNN", [1]])
def test_trusted_must_be_a_list_of_strings(trusted, ranked):
    buffer = io.BytesIO()
    skhydra.dump(ranked, buffer)
    with pytest.raises(TypeError, match="trusted must be a list of str"):
        skhydra.load(io.BytesIO(buffer.getvalue()), trusted=trusted)


# ---------------------------------------------------------------------------
# errors and warnings
# ---------------------------------------------------------------------------


def test_newer_format_version_is_refused(ranked):
    buffer = io.BytesIO()
    skhydra.dump(ranked, buffer)
    newer = _with_config(buffer.getvalue(), format_version=FORMAT_VERSION + 1)
    message = f"format version {FORMAT_VERSION + 1}.*reads format versions up to {FORMAT_VERSION}"
    with pytest.raises(ValueError, match=message):
        skhydra.load(io.BytesIO(newer))


def test_parameters_this_version_lacks_are_ignored_with_a_warning(iris, ranked):
    buffer = io.BytesIO()
    skhydra.dump(ranked, buffer)
    params = json.loads(zipfile.ZipFile(buffer).read("skhydra.json"))["params"]
    future = _with_config(buffer.getvalue(), params={**params, "future_option": 3})
    with pytest.warns(UserWarning, match=r"\['future_option'\] that this version"):
        loaded = skhydra.load(io.BytesIO(future))
    np.testing.assert_array_equal(loaded.predict_proba(iris[0]), ranked.predict_proba(iris[0]))


def test_load_on_a_missing_gpu_is_refused(monkeypatch, ranked):
    buffer = io.BytesIO()
    skhydra.dump(ranked, buffer)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        skhydra.load(io.BytesIO(buffer.getvalue()), device="cuda")


def test_not_a_skhydra_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a zip archive"):
        skhydra.load(io.BytesIO(b"definitely not a zip"))
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("model.pkl", b"")
    with pytest.raises(ValueError, match="lacks skhydra.json"):
        skhydra.load(io.BytesIO(other.getvalue()))
    with pytest.raises(FileNotFoundError, match="No such file"):
        skhydra.load(tmp_path / "missing.skhydra")


def test_dump_refuses_unfitted_and_foreign_estimators(forest):
    with pytest.raises(NotFittedError):
        skhydra.dump(HydraDistilledClassifier(), io.BytesIO())
    with pytest.raises(TypeError, match="got RandomForestClassifier"):
        skhydra.dump(forest, io.BytesIO())


def test_parameters_that_are_not_json_are_dropped_with_a_warning(iris, ranked):
    model = clone(ranked).set_params(random_state=np.random.RandomState(0))
    model.__dict__.update({k: v for k, v in vars(ranked).items() if k.endswith("_")})
    buffer = io.BytesIO()
    with pytest.warns(UserWarning, match=r"\['random_state'\] are not JSON-representable"):
        skhydra.dump(model, buffer)
    loaded = skhydra.load(io.BytesIO(buffer.getvalue()))
    assert loaded.random_state is None
    np.testing.assert_array_equal(loaded.predict_proba(iris[0]), ranked.predict_proba(iris[0]))


# ---------------------------------------------------------------------------
# compatibility: a file saved by an earlier version, and pickle / joblib
# ---------------------------------------------------------------------------


def test_committed_fixture_still_loads_and_predicts():
    """tests/data/student_v1.skhydra, written by tools/make_persist_fixture.py: keep this test."""
    expected = json.loads((DATA / "student_v1_expected.json").read_text())
    loaded = skhydra.load(DATA / "student_v1.skhydra")
    X = np.asarray(expected["X"])
    assert loaded.classes_.tolist() == expected["classes"]
    assert loaded.predict(X).tolist() == expected["predict"]
    np.testing.assert_allclose(loaded.predict_proba(X), expected["predict_proba"], rtol=1e-5)
    uncertainty = loaded.predict_uncertainty(X)
    np.testing.assert_allclose(
        uncertainty["epistemic"], expected["epistemic"], rtol=1e-4, atol=1e-7
    )


@pytest.mark.parametrize("how", ["pickle", "joblib"])
def test_loaded_student_pickles(how, tmp_path, diabetes, hydra_r):
    loaded = _round_trip(hydra_r, "bytesio", tmp_path)
    if how == "pickle":
        again = pickle.loads(pickle.dumps(loaded))
    else:
        joblib.dump(loaded, tmp_path / "student.joblib")
        again = joblib.load(tmp_path / "student.joblib")
    _assert_same_regressor(again, hydra_r, diabetes[0])
