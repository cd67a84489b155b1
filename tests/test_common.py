"""scikit-learn's own estimator checks on both estimators with ensemble=None."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor

# Small students keep the ~100 fits of the checks fast; ensemble stays None.
SMALL = dict(
    body_layer_sizes=(32,),
    phase1_epochs=10,
    max_epochs=15,
    n_iter_no_change=5,
    batch_size=32,
    random_state=0,
)

ESTIMATORS = [HydraDistilledClassifier(**SMALL), HydraDistilledRegressor(**SMALL)]

_WEIGHTS_REASON = (
    "A weight of 2 and a duplicated row give the same loss in expectation, but not the "
    "same mini-batches, validation split and augmentation draws, so a stochastically "
    "trained network cannot give identical predictions."
)
EXPECTED_FAILED = {
    name: {"check_sample_weight_equivalence_on_dense_data": _WEIGHTS_REASON}
    for name in ("HydraDistilledClassifier", "HydraDistilledRegressor")
}


def expected_failed_checks(estimator):
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
