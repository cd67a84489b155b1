"""What kind of ensemble is this? Predicates that resolution and the estimators ask.

Whether it is fitted, takes missing values, is made of trees, shares one
preprocessing across a list of Pipelines, or is a single model that cannot be
distilled (boosting, stacking).
"""

import joblib
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

from ._members import _is_torch_module, unwrap_frozen
from ._precomputed import MemberPredictions

__all__ = [
    "SHARED_PREPROCESSING_FIX",
    "accepts_nan",
    "is_fitted",
    "is_tree_model",
    "refuse_if_unsupported",
    "shared_preprocessing",
]


def _name(obj):
    return type(obj).__name__


#: How to give a list of Pipelines one preprocessing, in the error that asks for it.
SHARED_PREPROCESSING_FIX = (
    "fit the preprocessing once and freeze it in every member, e.g. "
    "pre = ColumnTransformer(...).fit(X); members = [make_pipeline(FrozenEstimator(pre), "
    "HistGradientBoostingClassifier(random_state=s)).fit(X, y) for s in range(5)]"
)

_REFUSED = {
    "GradientBoostingClassifier": "boosting",
    "GradientBoostingRegressor": "boosting",
    "HistGradientBoostingClassifier": "boosting",
    "HistGradientBoostingRegressor": "boosting",
    "AdaBoostClassifier": "boosting",
    "AdaBoostRegressor": "boosting",
    "StackingClassifier": "stacking",
    "StackingRegressor": "stacking",
    "XGBClassifier": "boosting",
    "XGBRegressor": "boosting",
    "LGBMClassifier": "boosting",
    "LGBMRegressor": "boosting",
    "CatBoostClassifier": "boosting",
    "CatBoostRegressor": "boosting",
}

_WHY = {
    "boosting": (
        "it is a boosting ensemble, whose members are fitted in sequence, each "
        "correcting the sum of the previous ones, so no single member is a model of "
        "the data and their disagreement is not uncertainty"
    ),
    "stacking": (
        "it is a stacking ensemble, whose final estimator combines the base models' "
        "outputs, so they are inputs to one model rather than interchangeable members"
    ),
}


def is_fitted(model):
    """Whether an ensemble (or list of members) is fitted; a mixed list is an error.

    Precomputed :class:`MemberPredictions` are a fitted ensemble's output, so
    they count as fitted (used as they are, shared by clones).
    """
    if _is_torch_module(model) or isinstance(model, (FrozenEstimator, MemberPredictions)):
        return True
    if isinstance(model, (list, tuple)):
        if len(model) == 0:
            raise ValueError("The ensemble list is empty; pass at least one member.")
        states = [is_fitted(m) for m in model]
        if any(states) and not all(states):
            raise ValueError(
                "The ensemble list mixes fitted and unfitted members; pass all fitted "
                "(they are used as they are) or all unfitted (they are fitted in fit)."
            )
        return states[0]
    try:
        check_is_fitted(model)
    except NotFittedError:
        return False
    except TypeError:  # not an estimator: resolution says what it is
        return True
    return True


def accepts_nan(model):
    """Whether an ensemble (or a list of members) takes NaN in its input, by its tags.

    A Pipeline takes NaN when its first step does (its steps then handle it).
    :class:`MemberPredictions` take it when their ``allow_nan`` says so.
    Torch modules and objects without scikit-learn tags do not.

    Examples
    --------
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skhydra.ensembles._kinds import accepts_nan
    >>> accepts_nan(RandomForestClassifier()), accepts_nan([LogisticRegression()])
    (True, False)
    """
    if isinstance(model, FrozenEstimator):
        return accepts_nan(model.estimator)
    if isinstance(model, MemberPredictions):
        return model.allow_nan
    if isinstance(model, (list, tuple)):
        return len(model) > 0 and all(accepts_nan(m) for m in model)
    if isinstance(model, Pipeline):
        return accepts_nan(model.steps[0][1])
    if _is_torch_module(model):
        return False
    try:
        return bool(get_tags(model).input_tags.allow_nan)
    except (AttributeError, TypeError):
        return False


def shared_preprocessing(models):
    """The preprocessing every member of a list of Pipelines shares, or None.

    Members share it when their steps before the last are equal: the same
    parameters, fitted on the same rows (compared by :func:`joblib.hash` of
    the fitted steps). A seed ensemble of Pipelines built on the same data
    shares its preprocessing; the student then learns from its numeric output.

    Parameters
    ----------
    models : object
        An ensemble; only a list or tuple of (possibly frozen) Pipelines with at
        least two steps can share preprocessing.

    Returns
    -------
    Pipeline or None
        The first member's preprocessing steps, or None when the members are
        not all Pipelines or their preprocessing differs.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhydra.ensembles._kinds import shared_preprocessing
    >>> X, y = load_iris(return_X_y=True)
    >>> members = [make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(X, y)
    ...            for c in (0.1, 1.0)]
    >>> shared_preprocessing(members)
    Pipeline(steps=[('standardscaler', StandardScaler())])
    """
    if not isinstance(models, (list, tuple)) or len(models) == 0:
        return None
    pipelines = [unwrap_frozen(m) for m in models]
    if not all(isinstance(p, Pipeline) and len(p) > 1 for p in pipelines):
        return None
    fronts = [p[:-1] for p in pipelines]
    if len({joblib.hash(front) for front in fronts}) > 1:
        return None
    return fronts[0]


#: Tree models outside sklearn.tree and sklearn.ensemble, by class name.
_TREE_MODELS = ("LGBM", "XGB", "CatBoost")


def is_tree_model(model):
    """Whether ``model`` (unwrapped from Pipelines and FrozenEstimator) is tree-based.

    Trees, forests and bagged trees, and boosted tree ensembles (scikit-learn's,
    LightGBM, XGBoost, CatBoost): models whose prediction is piecewise constant.

    Examples
    --------
    >>> from sklearn.ensemble import RandomForestRegressor
    >>> from sklearn.linear_model import Ridge
    >>> from skhydra.ensembles._kinds import is_tree_model
    >>> is_tree_model(RandomForestRegressor()), is_tree_model(Ridge())
    (True, False)
    """
    model = unwrap_frozen(model)
    if isinstance(model, Pipeline):
        return is_tree_model(model[-1])
    module = type(model).__module__ or ""
    if module.startswith("sklearn.tree"):
        return True
    if module.startswith("sklearn.ensemble"):
        if _name(model).startswith(("Voting", "Stacking")):
            return False
        base = getattr(model, "estimator", None)
        # Forests and gradient boosting grow trees; bagging and AdaBoost default to trees.
        return base is None or is_tree_model(base)
    return _name(model).startswith(_TREE_MODELS)


def refuse_if_unsupported(model):
    """Raise a TypeError that says why a single boosting or stacking model is refused."""
    reason = _REFUSED.get(_name(model))
    if reason is not None:
        raise TypeError(
            f"{_name(model)} cannot be distilled by Hydra: {_WHY[reason]}. Pass an "
            "ensemble of interchangeable members instead: a random forest, extra "
            "trees, bagging, voting, or a list of independently fitted models (for "
            "example the same model fitted with several random seeds)."
        )
