"""Shared fixtures: small data sets and ensembles, built once per test session.

Fitted objects are shared across modules: tests must not modify them (the
ensembles are never refit or mutated by skhydra, which tests check).
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.preprocessing import StandardScaler

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor

# The students in the tests are tiny: one thread avoids the oversubscription that makes
# two threads many times slower when another process shares the cores.
torch.set_num_threads(1)

IRIS_NAMES = np.array(["setosa", "versicolor", "virginica"])

#: A student small enough to fit in a fraction of a second.
TINY = dict(body_layer_sizes=(16,), phase1_epochs=3, max_epochs=6, batch_size=64, random_state=0)


@pytest.fixture(scope="session")
def iris():
    """Iris as float64 features and integer labels 0..2."""
    return load_iris(return_X_y=True)


@pytest.fixture(scope="session")
def iris_names(iris):
    """Iris labels as strings."""
    return IRIS_NAMES[iris[1]]


@pytest.fixture(scope="session")
def diabetes():
    """The first 300 rows of diabetes, standardised features, targets in their units."""
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X)[:300], y[:300]


@pytest.fixture(scope="session")
def forest(iris):
    """A fitted 8-tree random forest on iris."""
    return RandomForestClassifier(n_estimators=8, random_state=0).fit(*iris)


@pytest.fixture(scope="session")
def forest_r(diabetes):
    """A fitted 6-tree random forest regressor on diabetes."""
    return RandomForestRegressor(n_estimators=6, min_samples_leaf=3, random_state=0).fit(*diabetes)


@pytest.fixture(scope="session")
def hydra(iris, forest):
    """A tiny student of ``forest``."""
    return HydraDistilledClassifier(forest, **TINY).fit(iris[0])


@pytest.fixture(scope="session")
def hydra_r(diabetes, forest_r):
    """A tiny student of ``forest_r``, fitted with y (so it learns the aleatoric part)."""
    return HydraDistilledRegressor(forest_r, **TINY).fit(*diabetes)
