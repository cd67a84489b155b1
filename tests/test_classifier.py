"""Behaviour of HydraDistilledClassifier: teachers, the two phases, decomposition, errors."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.ensemble import (
    BaggingClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from skorch.callbacks import Callback

from skhydra import HydraDistilledClassifier, predict_uncertainty
from skhydra.ensembles import predict_members

# A small budget for speed; the default temperature (4) needs more epochs than this budget
# to sharpen, so these tests distil at T=1 (the digits test below uses the defaults).
FAST = dict(
    body_layer_sizes=(32,), phase1_epochs=10, max_epochs=20, temperature=1.0, random_state=0
)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def forest(iris):
    X, y = iris
    return RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def hydra(iris, forest):
    return HydraDistilledClassifier(forest, **FAST).fit(iris[0])


@pytest.fixture(scope="module")
def bagging():
    """Members that disagree: logistic regressions on feature and row subsets."""
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    bag = BaggingClassifier(
        LogisticRegression(C=0.05),
        n_estimators=6,
        max_samples=0.5,
        max_features=0.4,
        random_state=0,
    ).fit(X, y)
    return X, y, bag


def _member_kl(teacher_members, student_members):
    t = np.clip(teacher_members, 1e-12, 1)
    s = np.clip(student_members, 1e-12, 1)
    return float(np.mean(np.sum(t * (np.log(t) - np.log(s)), axis=-1)))


# -- teachers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda X, y: RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y),
        lambda X, y: ExtraTreesClassifier(n_estimators=5, random_state=0).fit(X, y),
        lambda X, y: VotingClassifier(
            [
                ("lr", make_pipeline(StandardScaler(), LogisticRegression())),
                ("rf", RandomForestClassifier(n_estimators=5, random_state=0)),
            ],
            voting="soft",
            weights=[2, 1],
        ).fit(X, y),
        lambda X, y: [
            make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(X, y)
            for c in (0.01, 1.0, 100.0)
        ],
        lambda X, y: FrozenEstimator(
            RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
        ),
        lambda X, y: make_pipeline(
            StandardScaler(), RandomForestClassifier(n_estimators=4, random_state=0)
        ).fit(X, y),
    ],
    ids=["forest", "extra_trees", "voting_weights", "list", "frozen", "pipeline"],
)
def test_fitted_teacher_kinds(iris, make):
    X, y = iris
    ensemble = make(X, y)
    n_members = predict_members(ensemble, X[:2]).shape[1]
    model = HydraDistilledClassifier(ensemble, **FAST).fit(X)
    assert model.n_members_ == n_members == model.n_heads_
    assert model.predict_members(X).shape == (len(X), n_members, 3)
    assert model.score(X, y) > 0.85
    teacher_labels = predict_members(ensemble, X).mean(axis=1).argmax(axis=1)
    assert np.mean(model.predict(X) == teacher_labels) > 0.9


def test_bagging_with_feature_subsets(bagging):
    X, y, bag = bagging
    model = HydraDistilledClassifier(bag, **FAST).fit(X)
    assert np.mean(model.predict(X) == bag.predict(X)) > 0.9
    assert model.n_heads_ == 6


def test_torch_module_teacher():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(60):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.tensor(y))
            loss.backward()
            opt.step()
        members.append(net)
    names = np.array(["setosa", "versicolor", "virginica"])
    model = HydraDistilledClassifier(members, **FAST).fit(X, names[y])
    assert list(model.classes_) == list(names)
    assert model.score(X, names[y]) > 0.85
    unlabelled = HydraDistilledClassifier(members, **FAST).fit(X)
    np.testing.assert_array_equal(unlabelled.classes_, [0, 1, 2])
    assert all(m.training for m in members)  # the teacher's mode is left untouched


def test_unfitted_teacher_is_cloned_and_fitted(iris):
    X, y = iris
    unfitted = RandomForestClassifier(n_estimators=4, random_state=0)
    model = HydraDistilledClassifier(unfitted, **FAST).fit(X, y)
    assert not hasattr(unfitted, "estimators_")
    assert model.ensemble_ is not unfitted and len(model.ensemble_.estimators_) == 4
    unfitted_list = [LogisticRegression(C=c) for c in (0.1, 1.0)]
    model = HydraDistilledClassifier(unfitted_list, **FAST).fit(X, y)
    assert model.n_members_ == 2 and not hasattr(unfitted_list[0], "coef_")


def test_default_ensemble_is_a_forest(iris):
    X, y = iris
    model = HydraDistilledClassifier(**FAST).fit(X, y)
    assert isinstance(model.ensemble_, RandomForestClassifier)
    assert model.n_members_ == 20


def test_fitted_teacher_is_not_refit_or_cloned(iris, forest):
    X, _ = iris
    trees = list(forest.estimators_)
    before = forest.predict_proba(X)
    model = HydraDistilledClassifier(forest, **FAST).fit(X)
    assert model.ensemble_ is forest
    assert all(a is b for a, b in zip(forest.estimators_, trees, strict=False))
    np.testing.assert_array_equal(forest.predict_proba(X), before)
    assert clone(model).ensemble is forest


def test_unsupported_ensembles_are_refused(iris):
    X, y = iris
    boosting = GradientBoostingClassifier(n_estimators=3).fit(X, y)
    with pytest.raises(TypeError, match="boosting"):
        HydraDistilledClassifier(boosting, **FAST).fit(X)
    stacking = StackingClassifier([("lr", LogisticRegression())])
    with pytest.raises(TypeError, match="stacking"):
        HydraDistilledClassifier(stacking, **FAST).fit(X, y)
    single = LogisticRegression().fit(X, y)
    with pytest.raises(TypeError, match="single model"):
        HydraDistilledClassifier(single, **FAST).fit(X)


# -- the two phases --------------------------------------------------------------


def test_phase_two_heads_track_their_members(bagging):
    X, _, bag = bagging
    teacher = predict_members(bag, X)
    phase1 = HydraDistilledClassifier(bag, **{**FAST, "max_epochs": 0, "augmentation": None}).fit(X)
    full = HydraDistilledClassifier(bag, **{**FAST, "max_epochs": 60, "augmentation": None}).fit(X)
    heads1, heads2 = phase1.predict_members(X), full.predict_members(X)
    # After phase 1 only, the heads are copies of the Hinton head.
    np.testing.assert_allclose(heads1, heads1[:, :1].repeat(6, axis=1), atol=1e-6)
    # After phase 2 they differ, and each is closer to its own member.
    assert np.abs(heads2 - heads2[:, :1]).max() > 0.05
    assert _member_kl(teacher, heads2) < 0.7 * _member_kl(teacher, heads1)
    rho = np.corrcoef(
        predict_uncertainty(bag, X)["epistemic"], full.predict_uncertainty(X)["epistemic"]
    )[0, 1]
    assert rho > 0.7


def test_fewer_heads_than_members(bagging):
    X, _, bag = bagging
    model = HydraDistilledClassifier(bag, n_heads=2, **FAST).fit(X)
    assert model.n_heads_ == 2 and model.n_members_ == 6
    assert model.predict_members(X[:5]).shape == (5, 2, 3)
    with pytest.raises(ValueError, match="exceeds the ensemble's 6 members"):
        HydraDistilledClassifier(bag, n_heads=7, **FAST).fit(X)


# -- predictions and the decomposition -------------------------------------------


def test_decomposition_invariants(iris, hydra):
    X, _ = iris
    proba = hydra.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(hydra.predict_members(X).mean(axis=1), proba, atol=1e-6)
    u = hydra.predict_uncertainty(X)
    np.testing.assert_allclose(u["total"], u["aleatoric"] + u["epistemic"], atol=1e-12)
    assert (u["epistemic"] >= 0).all() and (u["epistemic"] > 0).any()
    entropy = -np.sum(proba * np.log(proba), axis=1)
    np.testing.assert_allclose(u["total"], entropy, atol=1e-5)


def test_one_head_is_knowledge_distillation(iris, forest):
    X, _ = iris
    kd = HydraDistilledClassifier(forest, n_heads=1, **FAST).fit(X)
    u = kd.predict_uncertainty(X)
    assert kd.n_heads_ == 1
    np.testing.assert_array_equal(u["epistemic"], 0.0)


def test_string_labels(iris):
    X, y = iris
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, labels)
    model = HydraDistilledClassifier(forest, **FAST).fit(X, labels)
    assert model.predict(X).dtype.kind == "U"
    assert set(model.predict(X)) <= set(labels)
    assert model.score(X, labels) > 0.9
    with pytest.raises(ValueError, match="never saw"):
        HydraDistilledClassifier(forest, **FAST).fit(X, np.where(y == 0, "daisy", labels))


def test_random_state_reproducible(iris, forest):
    X, _ = iris
    a = HydraDistilledClassifier(forest, **FAST).fit(X).predict_proba(X)
    b = HydraDistilledClassifier(forest, **FAST).fit(X).predict_proba(X)
    c = HydraDistilledClassifier(forest, **{**FAST, "random_state": 1}).fit(X).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_dataframe_index_and_module_function(iris, forest, hydra):
    X, _ = iris
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)], index=np.arange(len(X)) + 1000)
    model = HydraDistilledClassifier(
        RandomForestClassifier(n_estimators=4, random_state=0).fit(frame, iris[1]), **FAST
    ).fit(frame)
    u = predict_uncertainty(model, frame)
    assert list(u.index) == list(frame.index)
    pipe = make_pipeline(StandardScaler(), clone(hydra)).fit(X)
    assert predict_uncertainty(pipe, X).shape == (len(X), 3)
    search = GridSearchCV(
        HydraDistilledClassifier(forest, **FAST), {"head_layer_sizes": [(), (8,)]}, cv=2
    ).fit(X, iris[1])
    assert search.best_estimator_.ensemble_ is forest
    assert predict_uncertainty(search, X).shape == (len(X), 3)


def test_pipeline_teacher_on_mixed_dataframe():
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "city": rng.choice(["paris", "rome", "oslo"], size=n),
            "age": rng.integers(18, 80, size=n),
        }
    )
    y = ((frame["size"] > 0) ^ (frame["city"] == "rome")).astype(int)
    teacher = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
        RandomForestClassifier(n_estimators=6, random_state=0),
    ).fit(frame, y)
    model = HydraDistilledClassifier(teacher, **FAST).fit(frame)
    assert model.n_features_in_ == 3
    assert list(model.feature_names_in_) == ["size", "city", "age"]
    assert np.mean(model.predict(frame) == teacher.predict(frame)) > 0.9
    with pytest.raises(ValueError, match="non-numeric columns \\['city'\\]"):
        HydraDistilledClassifier(teacher[-1], **FAST).fit(frame)


def test_verbose_prints_both_phases(iris, forest, capsys):
    X, _ = iris
    HydraDistilledClassifier(forest, **{**FAST, "verbose": 1, "max_epochs": 2}).fit(X)
    out = capsys.readouterr().out
    assert "Phase 1" in out and "Phase 2" in out and "valid_loss" in out


def test_user_callbacks_run(iris, forest):
    class Counter(Callback):
        def __init__(self):
            self.epochs = 0

        def on_epoch_end(self, net, **kwargs):
            self.epochs += 1

    counter = Counter()
    model = HydraDistilledClassifier(
        forest, callbacks=[counter], **{**FAST, "early_stopping": False}
    ).fit(iris[0])
    copies = [cb for _, cb in model.net_.callbacks_ if isinstance(cb, Counter)]
    # One copy of the callback runs through both phases: 10 + 20 epochs.
    assert copies and copies[0].epochs == 30
    assert counter.epochs == 0  # the parameter itself is not mutated


def test_digits_forest_accuracy_within_three_points():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0)
    forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(X_tr, y_tr)
    model = HydraDistilledClassifier(forest, random_state=0).fit(X_tr)
    assert model.score(X_te, y_te) >= forest.score(X_te, y_te) - 0.03


# -- errors ----------------------------------------------------------------------


def test_bad_input_errors(iris, hydra, forest):
    X, y = iris
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        HydraDistilledClassifier(forest, **FAST).fit(X_nan)
    with pytest.raises(ValueError, match="NaN"):
        hydra.predict(X_nan)
    with pytest.raises(ValueError, match="features"):
        hydra.predict(X[:, :3])
    with pytest.raises(NotFittedError):
        HydraDistilledClassifier(forest).predict(X)
    with pytest.raises(ValueError, match="empty|0 sample"):
        HydraDistilledClassifier(forest, **FAST).fit(X[:0])
    with pytest.raises(ValueError, match="only one class"):
        HydraDistilledClassifier(**FAST).fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="requires y"):
        HydraDistilledClassifier(**FAST).fit(X)
    with pytest.raises(ValueError, match="tuple of positive integers"):
        HydraDistilledClassifier(forest, body_layer_sizes=(0,)).fit(X)
    with pytest.raises(ValueError, match="temperature"):
        HydraDistilledClassifier(forest, temperature=0).fit(X)
    with pytest.raises(ValueError, match=r"skorch_params cannot set \['lr'\]"):
        HydraDistilledClassifier(forest, skorch_params={"lr": 0.1}).fit(X)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_an_error(iris, forest):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        HydraDistilledClassifier(forest, device="cuda", **FAST).fit(iris[0])


def test_divergence_is_a_clear_error(iris, forest):
    model = HydraDistilledClassifier(
        forest,
        lr=1e12,
        skorch_params={"optimizer": torch.optim.SGD},
        **{**FAST, "max_epochs": 3, "phase1_epochs": 3},
    )
    with pytest.raises(FloatingPointError, match="diverged"):
        model.fit(iris[0])


@pytest.mark.parametrize("n_heads", [None, 3])
def test_batched_predictions_match_the_heads(n_heads):
    # predict_proba and predict_uncertainty work batch by batch in torch; they
    # must equal the decomposition of predict_members, across batch boundaries.
    from skhydra.uncertainty import classification_uncertainty

    X, _ = load_digits(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=7, random_state=0).fit(X, _)
    model = HydraDistilledClassifier(
        forest,
        n_heads=n_heads,
        body_layer_sizes=(16,),
        phase1_epochs=2,
        max_epochs=2,
        random_state=0,
        skorch_params={"iterator_valid__batch_size": 100},
    ).fit(X)
    members = model.predict_members(X)
    weights = model._head_weights
    np.testing.assert_allclose(
        model.predict_proba(X),
        np.einsum("nhc,h->nc", members.astype(np.float64), weights),
        atol=1e-6,
    )
    expected = classification_uncertainty(members, weights)
    frame = model.predict_uncertainty(X)
    for column, values in zip(["total", "aleatoric", "epistemic"], expected, strict=True):
        np.testing.assert_allclose(frame[column], values, atol=2e-6)
