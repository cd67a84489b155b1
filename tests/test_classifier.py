"""Behaviour of HydraDistilledClassifier: teachers, the two phases, decomposition, errors."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import rel_entr
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_digits, load_wine
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

from skhydra import HydraDistilledClassifier, predict_uncertainty
from skhydra._classifier import ClassTargets
from skhydra._targets import assign_heads
from skhydra.ensembles import predict_members

# A small budget for speed; the default temperature (4) needs more epochs than this budget
# to sharpen, so these tests distil at T=1 (the digits test below uses the defaults).
FAST = dict(
    body_layer_sizes=(32,), phase1_epochs=10, max_epochs=30, temperature=1.0, random_state=0
)
# Enough training for six heads to learn their members (fidelity tests), at the default T.
FIDELITY = dict(body_layer_sizes=(32,), phase1_epochs=20, max_epochs=80, lr=3e-3, random_state=0)


@pytest.fixture(scope="module")
def student(iris, forest):
    return HydraDistilledClassifier(forest, **FAST).fit(iris[0])


@pytest.fixture(scope="module")
def disagreeing():
    """Members that disagree: logistic regressions on row and feature subsets of wine.

    Returns the training rows, rows off the training set (held-out rows and
    noisy copies of them) and the fitted bagging ensemble. The members'
    disagreement is smooth, so a small student can learn it: fidelity tests
    on them fail when the method is broken, not when the student is small.
    """
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.33, random_state=0)
    X_eval = np.vstack([X_test, X_test + np.random.default_rng(1).normal(size=X_test.shape)])
    bag = BaggingClassifier(
        LogisticRegression(C=0.05),
        n_estimators=6,
        max_samples=0.5,
        max_features=0.4,
        random_state=0,
    ).fit(X_train, y_train)
    return X_train, X_eval, bag


@pytest.fixture(scope="module")
def faithful(disagreeing):
    X_train, _, bag = disagreeing
    return HydraDistilledClassifier(bag, **FIDELITY).fit(X_train)


def _kl(p, q):
    """Mean KL(p || q) over rows, for probabilities on the last axis."""
    return np.mean(rel_entr(p, np.clip(q, 1e-12, 1)).sum(axis=-1), axis=0)


def _member_head_kl(members, heads):
    """kl[m, h] = mean KL(member m || head h): (n, M, C) and (n, H, C) -> (M, H)."""
    return _kl(members[:, :, None], heads[:, None, :])


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


def test_bagging_with_feature_subsets(disagreeing):
    X, _, bag = disagreeing
    model = HydraDistilledClassifier(bag, **FAST).fit(X)
    assert np.mean(model.predict(X) == bag.predict(X)) > 0.9
    assert model.n_heads_ == 6


def test_torch_module_teacher(iris):
    X, y = iris
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


# -- the two phases, and fidelity to the members ----------------------------------


def test_phase_one_alone_copies_a_student_of_the_mean_into_every_head(disagreeing):
    X_train, X_eval, bag = disagreeing
    params = {**FIDELITY, "max_epochs": FIDELITY["phase1_epochs"]}
    model = HydraDistilledClassifier(bag, **params).fit(X_train)
    heads = model.predict_members(X_eval)
    # After phase 1 only, every head is a copy of the Hinton head...
    np.testing.assert_allclose(heads, heads[:, :1].repeat(6, axis=1), atol=1e-6)
    assert model.predict_uncertainty(X_eval)["epistemic"].max() < 1e-5
    # ... which learned the ensemble's mean.
    mean = predict_members(bag, X_eval).mean(axis=1)
    assert np.mean(model.predict(X_eval) == mean.argmax(axis=1)) > 0.9
    assert _kl(mean, model.predict_proba(X_eval)) < 0.05


def test_student_epistemic_tracks_the_teacher_off_the_training_rows(disagreeing, faithful):
    _, X_eval, bag = disagreeing
    teacher = predict_uncertainty(bag, X_eval)["epistemic"]
    mine = faithful.predict_uncertainty(X_eval)["epistemic"]
    assert spearmanr(teacher, mine).statistic > 0.9
    assert 0.7 < mine.mean() / teacher.mean() < 1.4
    mean = predict_members(bag, X_eval).mean(axis=1)
    assert np.mean(faithful.predict(X_eval) == mean.argmax(axis=1)) > 0.95


def test_head_m_learns_member_m(disagreeing, faithful):
    _, X_eval, bag = disagreeing
    kl = _member_head_kl(predict_members(bag, X_eval), faithful.predict_members(X_eval))
    np.testing.assert_array_equal(kl.argmin(axis=1), np.arange(6))
    # Each head is much closer to its own member than the members are to each other.
    assert np.diag(kl).max() < 0.25 * np.median(kl[~np.eye(6, dtype=bool)])


def test_fewer_heads_learn_the_mixture_of_their_members(disagreeing):
    X_train, X_eval, bag = disagreeing
    model = HydraDistilledClassifier(bag, n_heads=3, **FIDELITY).fit(X_train)
    assert model.n_heads_ == 3 and model.n_members_ == 6
    np.testing.assert_array_equal(model.member_heads_, [0, 1, 2, 0, 1, 2])
    np.testing.assert_allclose(model.head_weights_, [1 / 3] * 3)
    members = predict_members(bag, X_eval)
    mixtures = (members[:, :3] + members[:, 3:]) / 2  # head h: members h and h + 3
    kl = _member_head_kl(mixtures, model.predict_members(X_eval))
    np.testing.assert_array_equal(kl.argmin(axis=1), np.arange(3))
    with pytest.raises(ValueError, match="exceeds the ensemble's 6 members"):
        HydraDistilledClassifier(bag, n_heads=7, **FAST).fit(X_train)


def test_augmentation_rows_are_labelled_at_their_own_rows(disagreeing, faithful):
    # The student's synthetic rows are noisy copies of the data, labelled by the
    # teacher at those very rows: on fresh rows of that kind the two agree.
    X_train, _, bag = disagreeing
    rng = np.random.default_rng(2)
    rows = X_train[rng.integers(len(X_train), size=300)]
    noisy = rows + 0.5 * rng.normal(size=rows.shape)
    mean = predict_members(bag, noisy).mean(axis=1)
    assert _kl(mean, faithful.predict_proba(noisy)) < 0.01
    assert np.mean(faithful.predict(noisy) == mean.argmax(axis=1)) > 0.95


def test_temperature_changes_what_the_heads_learn(disagreeing, faithful):
    X_train, X_eval, bag = disagreeing
    cold = HydraDistilledClassifier(bag, **{**FIDELITY, "temperature": 1.0}).fit(X_train)
    assert faithful.temperature == 4.0
    # Same seed, same data: only T differs, and it changes the fitted heads.
    assert np.abs(cold.predict_members(X_eval) - faithful.predict_members(X_eval)).max() > 0.02
    mean = predict_members(bag, X_eval).mean(axis=1)
    for model in (cold, faithful):
        assert np.mean(model.predict(X_eval) == mean.argmax(axis=1)) > 0.9


# -- predictions and the decomposition -------------------------------------------


def test_decomposition_invariants(iris, student):
    X, _ = iris
    proba = student.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(student.predict_members(X).mean(axis=1), proba, atol=1e-6)
    u = student.predict_uncertainty(X)
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


def test_dataframe_index_and_module_function(iris, forest, student):
    X, _ = iris
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)], index=np.arange(len(X)) + 1000)
    model = HydraDistilledClassifier(
        RandomForestClassifier(n_estimators=4, random_state=0).fit(frame, iris[1]), **FAST
    ).fit(frame)
    u = predict_uncertainty(model, frame)
    assert list(u.index) == list(frame.index)
    pipe = make_pipeline(StandardScaler(), clone(student)).fit(X)
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


@pytest.mark.slow
def test_digits_forest_accuracy_within_three_points():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0)
    forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(X_tr, y_tr)
    model = HydraDistilledClassifier(forest, random_state=0).fit(X_tr)
    assert model.score(X_te, y_te) >= forest.score(X_te, y_te) - 0.03


# -- errors ----------------------------------------------------------------------


def test_bad_input_errors(iris, student, forest):
    X, y = iris
    X_inf = X.copy()
    X_inf[0, 0] = np.inf  # forests take NaN (see test_base), not infinity
    with pytest.raises(ValueError, match="infinity"):
        HydraDistilledClassifier(forest, **FAST).fit(X_inf)
    with pytest.raises(ValueError, match="infinity"):
        student.predict(X_inf)
    with pytest.raises(ValueError, match="features"):
        student.predict(X[:, :3])
    with pytest.raises(NotFittedError):
        HydraDistilledClassifier(forest).predict(X)
    with pytest.raises(ValueError, match="empty|0 sample"):
        HydraDistilledClassifier(forest, **FAST).fit(X[:0])
    with pytest.raises(ValueError, match="only one class"):
        HydraDistilledClassifier(**FAST).fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="requires y"):
        HydraDistilledClassifier(**FAST).fit(X)
    with pytest.raises(ValueError, match="body_layer_sizes.*tuple of positive ints"):
        HydraDistilledClassifier(forest, body_layer_sizes=(0,)).fit(X)
    with pytest.raises(ValueError, match="temperature"):
        HydraDistilledClassifier(forest, temperature=0).fit(X)
    with pytest.raises(ValueError, match=r"skorch_params cannot set \['lr'\]"):
        HydraDistilledClassifier(forest, skorch_params={"lr": 0.1}).fit(X)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_an_error(iris, forest):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        HydraDistilledClassifier(forest, device="cuda", **FAST).fit(iris[0])


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
        max_epochs=4,
        random_state=0,
    ).fit(X)
    members = model.predict_members(X)
    weights = model.head_weights_
    np.testing.assert_allclose(
        model.predict_proba(X),
        np.einsum("nhc,h->nc", members.astype(np.float64), weights),
        atol=1e-6,
    )
    expected = classification_uncertainty(members, weights)
    frame = model.predict_uncertainty(X)
    for column, values in zip(["total", "aleatoric", "epistemic"], expected, strict=True):
        np.testing.assert_allclose(frame[column], values, atol=2e-6)


# -- the target encoding ------------------------------------------------------------


def test_class_targets_are_the_tempered_member_mixtures():
    members = np.array([[[0.7, 0.3], [0.1, 0.9], [0.5, 0.5]]])  # 1 row, 3 members
    heads = assign_heads(3, 2)  # head 0: members 0 and 2; head 1: member 1
    phase1, phase2 = ClassTargets(np.array(["a", "b"]), temperature=2.0).encode(
        members, heads, None
    )

    def tempered(p):  # softmax(log p / 2), by hand
        q = np.sqrt(p)
        return q / q.sum()

    np.testing.assert_allclose(
        phase1["target"][0, 0], tempered(np.array([1.3, 1.7]) / 3), atol=1e-6
    )
    np.testing.assert_allclose(phase2["target"][0, 0], tempered(np.array([0.6, 0.4])), atol=1e-6)
    np.testing.assert_allclose(phase2["target"][0, 1], tempered(np.array([0.1, 0.9])), atol=1e-6)
    assert phase1["target"].shape == (1, 1, 2) and phase2["target"].dtype == np.float32
    # The targets' own term of the KL divergence, once per row: mean over heads of sum t log t.
    t = phase2["target"][0]
    np.testing.assert_allclose(phase2["neg_entropy"], [(t * np.log(t)).sum(-1).mean()], rtol=1e-5)
    assert phase1["neg_entropy"].shape == (1,)


def test_torch_members_are_tempered_on_their_logits():
    # A logit gap of 30: softmax(z / 4) = [0.99945, 0.00055]. Clipping the member's
    # probabilities before tempering would give [0.917, 0.083]-like targets instead.
    logits = torch.tensor([[30.0, 0.0], [0.0, 12.0]])
    probabilities = torch.softmax(logits, dim=-1).numpy()[:, None, :]
    _, phase2 = ClassTargets(np.array([0, 1]), temperature=4.0).encode(
        probabilities, assign_heads(1, 1), None
    )
    expected = torch.softmax(logits / 4.0, dim=-1).numpy()
    np.testing.assert_allclose(phase2["target"][:, 0], expected, rtol=1e-4)
    # A class a member rules out (probability 0, a tree's vote) gets log(1e-8).
    vote = np.array([[[1.0, 0.0]]])
    _, phase2 = ClassTargets(np.array([0, 1]), temperature=4.0).encode(
        vote, assign_heads(1, 1), None
    )
    np.testing.assert_allclose(phase2["target"][0, 0, 1], 1 / (1 + 1e8**0.25), rtol=1e-4)


# -- tree teachers ---------------------------------------------------------------------


def test_head_rank_auto_projects_many_heads_and_keeps_few_at_full_width(iris):
    X, y = iris
    budget = dict(body_layer_sizes=(128,), phase1_epochs=1, max_epochs=2, random_state=0)
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
    many = HydraDistilledClassifier(forest, **budget).fit(X)
    assert many.head_rank_ == 32
    n_params = sum(p.numel() for p in many.net_.module_.heads.parameters())
    assert n_params == 128 * 32 + 100 * (32 * 3 + 3)
    few = [LogisticRegression(C=c).fit(X, y) for c in (0.1, 1.0, 10.0)]
    assert HydraDistilledClassifier(few, **budget).fit(X).head_rank_ is None
    full = HydraDistilledClassifier(forest, head_rank=None, **budget).fit(X)
    assert full.head_rank_ is None
    assert sum(p.numel() for p in full.net_.module_.heads.parameters()) == 100 * (128 * 3 + 3)


def test_low_rank_heads_keep_the_forests_ranking(digits_forest):
    # The same check as below, with the heads reading 8 shared features.
    X_train, X_eval, forest = digits_forest
    teacher = predict_uncertainty(forest, X_eval)["epistemic"]
    params = dict(body_layer_sizes=(64,), phase1_epochs=20, max_epochs=80, lr=3e-3, random_state=0)
    student = HydraDistilledClassifier(forest, head_rank=8, **params).fit(X_train)
    assert student.head_rank_ == 8
    mine = student.predict_uncertainty(X_eval)["epistemic"]
    # 0.810 and 0.983 measured; 0.838 and 0.739 without the spread's factor (match_epistemic).
    assert spearmanr(teacher, mine).statistic > 0.8
    assert mine.mean() / teacher.mean() > 0.85


def test_forest_student_ranks_rows_like_the_forest(digits_forest):
    # Digits 0-7 (500 training rows), test rows and digits 8-9 the forest never saw.
    X_train, X_eval, forest = digits_forest
    teacher = predict_uncertainty(forest, X_eval)["epistemic"]
    params = dict(body_layer_sizes=(64,), phase1_epochs=20, max_epochs=80, lr=3e-3, random_state=0)
    student = HydraDistilledClassifier(forest, **params).fit(X_train)
    assert student.head_matching_ == "rank"
    mine = student.predict_uncertainty(X_eval)["epistemic"]
    # 0.831 and 0.980 measured; 0.846 and 0.726 without the spread's factor (match_epistemic).
    assert spearmanr(teacher, mine).statistic > 0.82
    assert mine.mean() / teacher.mean() > 0.85
    # skhydra 0.1's defaults (head m imitates tree m, noise rows, no factors) fail both.
    old = HydraDistilledClassifier(
        forest,
        head_matching="member",
        augmentation="noise",
        match_aleatoric=False,
        match_epistemic=False,
        **params,
    )
    theirs = old.fit(X_train).predict_uncertainty(X_eval)["epistemic"]
    assert spearmanr(teacher, theirs).statistic < 0.82
    assert theirs.mean() / teacher.mean() < 0.3


@pytest.fixture(scope="module")
def digits_forest():
    X, y = load_digits(return_X_y=True)
    inside = y < 8
    X_train, X_test, y_train, _ = train_test_split(
        X[inside], y[inside], train_size=500, test_size=300, random_state=0
    )
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(X_train, y_train)
    return X_train, np.vstack([X_test, X[~inside][:300]]), forest
