"""Every metric against a hand-computed or reference value."""

import math

import numpy as np
import pytest
from scipy import integrate, stats
from sklearn.metrics import log_loss, roc_auc_score

from skhydra.metrics import (
    agreement,
    brier_score,
    crps_gaussian_mixture,
    expected_calibration_error,
    gaussian_mixture_nll,
    interval_coverage,
    kl_to_teacher,
    mixture_interval,
    negative_log_likelihood,
    ood_auroc,
    reliability_bins,
    uncertainty_mse,
    uncertainty_spearman,
)


@pytest.fixture(scope="module")
def proba():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=50)
    y = rng.integers(0, 4, size=50)
    return y, p


# ---------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------


def test_nll_by_hand():
    nll = negative_log_likelihood([0, 1], [[0.5, 0.5], [0.2, 0.8]])
    assert nll == pytest.approx((math.log(2) - math.log(0.8)) / 2, rel=1e-12)


def test_nll_equals_sklearn_log_loss(proba):
    y, p = proba
    assert negative_log_likelihood(y, p) == pytest.approx(log_loss(y, p), rel=1e-12)


def test_nll_with_string_classes_and_an_absent_class():
    classes = np.array(["ant", "bee", "cat"])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    y = np.array(["ant", "bee"])  # "cat" never occurs
    nll = negative_log_likelihood(y, p, classes=classes)
    assert nll == pytest.approx(-(math.log(0.7) + math.log(0.6)) / 2, rel=1e-12)
    assert nll == pytest.approx(log_loss(y, p, labels=classes), rel=1e-12)


def test_brier_by_hand():
    assert brier_score([0, 1], [[1.0, 0.0], [0.5, 0.5]]) == pytest.approx(0.25)
    # (0.3^2 + 0.2^2 + 0.1^2) and ((0.1)^2 + (0.6 - 1)^2 + 0.3^2), averaged
    p = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]
    expected = ((0.09 + 0.04 + 0.01) + (0.01 + 0.16 + 0.09)) / 2
    assert brier_score(["a", "b"], p, classes=["a", "b", "c"]) == pytest.approx(expected)


def test_brier_against_a_reference(proba):
    y, p = proba
    onehot = np.eye(4)[y]
    assert brier_score(y, p) == pytest.approx(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def test_unknown_label_is_refused():
    with pytest.raises(ValueError, match="not in classes"):
        brier_score(["a", "z"], [[0.5, 0.5], [0.5, 0.5]], classes=["a", "b"])
    with pytest.raises(ValueError, match="not in classes"):
        expected_calibration_error([0, 5], [[0.5, 0.5], [0.5, 0.5]])


def test_probabilities_must_be_2d():
    with pytest.raises(ValueError, match="2-D"):
        brier_score([0], [0.5, 0.5])
    with pytest.raises(ValueError, match="2-D"):
        agreement([[[0.5, 0.5]]], [[0.5, 0.5]])


def test_ece_by_hand():
    p = [[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.65, 0.35]]
    y = [0, 1, 1, 1]
    # 5 bins: rows 1-2 in [0.8, 1.0): accuracy 0.5, confidence 0.875
    #         rows 3-4 in [0.6, 0.8): accuracy 0.5, confidence 0.675
    expected = 0.5 * abs(0.5 - 0.875) + 0.5 * abs(0.5 - 0.675)
    assert expected_calibration_error(y, p, n_bins=5) == pytest.approx(expected, abs=1e-12)
    # with 15 bins every row has a bin of its own (13, 12, 10, 9)
    expected_15 = 0.25 * (0.1 + 0.85 + 0.3 + 0.65)
    assert expected_calibration_error(y, p) == pytest.approx(expected_15, abs=1e-12)


def test_ece_against_a_reference(proba):
    y, p = proba
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence >= lo) & (confidence < hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    assert expected_calibration_error(y, p) == pytest.approx(ece, abs=1e-12)


def test_ece_is_zero_for_confident_correct_predictions():
    # confidence 1.0 sits on the upper edge and must land in the last bin
    assert expected_calibration_error([0, 1], [[1.0, 0.0], [0.0, 1.0]]) == 0.0
    assert expected_calibration_error([1, 0], [[1.0, 0.0], [0.0, 1.0]]) == pytest.approx(1.0)


def test_reliability_bins_by_hand():
    p = [[0.9, 0.1], [0.7, 0.3], [0.6, 0.4], [1.0, 0.0]]
    y = [0, 0, 1, 0]
    # 5 bins: 0.7 and 0.6 in [0.6, 0.8) (one right, one wrong); 0.9 and 1.0 in [0.8, 1.0]
    confidence, accuracy, counts = reliability_bins(y, p, n_bins=5)
    assert counts.tolist() == [0, 0, 0, 2, 2]
    np.testing.assert_allclose(confidence[3:], [0.65, 0.95])
    np.testing.assert_allclose(accuracy[3:], [0.5, 1.0])
    assert np.isnan(confidence[:3]).all() and np.isnan(accuracy[:3]).all()
    # the bins of the calibration error
    expected = 0.5 * abs(0.5 - 0.65) + 0.5 * abs(1.0 - 0.95)
    assert expected_calibration_error(y, p, n_bins=5) == pytest.approx(expected, abs=1e-12)


def test_agreement_by_hand():
    assert agreement([[0.9, 0.1], [0.4, 0.6]], [[0.6, 0.4], [0.7, 0.3]]) == 0.5
    t = np.eye(3)[[0, 1, 2, 2]]
    assert agreement(t, t[[0, 1, 2, 0]]) == 0.75


def test_kl_to_teacher_against_scipy(proba):
    _, p = proba
    q = np.roll(p, 1, axis=1)
    expected = np.mean(stats.entropy(p, q, axis=1))
    assert kl_to_teacher(p, q) == pytest.approx(expected, rel=1e-10)
    assert kl_to_teacher(p, p) == pytest.approx(0.0, abs=1e-12)
    assert kl_to_teacher(p, q) > 0


def test_kl_to_teacher_handles_zeros():
    # teacher zeros contribute nothing; a student zero where the teacher is not is capped
    assert kl_to_teacher([[1.0, 0.0]], [[0.5, 0.5]]) == pytest.approx(math.log(2))
    value = kl_to_teacher([[0.5, 0.5]], [[1.0, 0.0]])
    assert np.isfinite(value)
    assert value == pytest.approx(0.5 * math.log(0.5 / 1e-12) + 0.5 * math.log(0.5))


def test_uncertainty_spearman_against_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=30), rng.normal(size=30)
    expected = stats.spearmanr(a, b).statistic
    assert uncertainty_spearman(a, b) == pytest.approx(expected, rel=1e-12)
    assert uncertainty_spearman([1, 2, 3, 4], [10, 5, 2, 0]) == pytest.approx(-1.0)
    assert uncertainty_spearman([1, 2, 3, 4], np.exp([1, 2, 3, 4])) == pytest.approx(1.0)


def test_uncertainty_mse_by_hand():
    assert uncertainty_mse([0.0, 1.0], [1.0, 1.0]) == 0.5
    assert uncertainty_mse([1.0, 2.0, 3.0], [1.0, 0.0, 6.0]) == pytest.approx((0 + 4 + 9) / 3)


def test_ood_auroc_against_roc_auc_score():
    rng = np.random.default_rng(2)
    score_in, score_out = rng.normal(size=40), rng.normal(0.7, size=25)
    expected = roc_auc_score(np.r_[np.zeros(40), np.ones(25)], np.r_[score_in, score_out])
    assert ood_auroc(score_in, score_out) == pytest.approx(expected, rel=1e-12)
    assert ood_auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert ood_auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert ood_auroc([1.0, 1.0], [1.0, 1.0]) == 0.5


# ---------------------------------------------------------------------------
# regression: Gaussian mixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(3)
    means = rng.normal(size=(6, 3))
    variances = rng.uniform(0.2, 2.0, size=(6, 3))
    y = rng.normal(size=6)
    return y, means, variances


def _mixture_pdf(x, mu, var, w):
    return np.sum(w * stats.norm.pdf(x, mu, np.sqrt(var)))


def _mixture_cdf(x, mu, var, w):
    return np.sum(w * stats.norm.cdf(x, mu, np.sqrt(var)))


def test_gaussian_nll_one_component_is_norm_logpdf():
    y = np.array([0.0, 1.5, -2.0])
    mu = np.array([[0.0], [1.0], [0.5]])
    var = np.array([[1.0], [0.25], [4.0]])
    expected = -np.mean(stats.norm.logpdf(y, mu[:, 0], np.sqrt(var[:, 0])))
    assert gaussian_mixture_nll(y, mu, var) == pytest.approx(expected, rel=1e-12)


def test_gaussian_nll_far_in_the_tail_is_finite():
    # naive log(sum(pdf)) underflows to -inf here; the log-sum-exp form must not
    value = gaussian_mixture_nll([100.0], [[0.0, 1.0]], [[1.0, 1.0]])
    expected = -stats.norm.logpdf(100.0, 1.0, 1.0) - math.log(
        0.5 * (1 + math.exp(-0.5 * (100**2 - 99**2)))
    )
    assert value == pytest.approx(expected, rel=1e-10)


def test_gaussian_mixture_nll_against_pdf(mixture):
    y, mu, var = mixture
    weights = np.array([1.0, 2.0, 5.0])
    for w in (None, weights):
        wn = np.full(3, 1 / 3) if w is None else w / w.sum()
        expected = -np.mean([math.log(_mixture_pdf(y[i], mu[i], var[i], wn)) for i in range(6)])
        assert gaussian_mixture_nll(y, mu, var, w) == pytest.approx(expected, rel=1e-10)


def test_crps_one_component_is_the_gaussian_closed_form():
    y = np.array([0.3, -1.2, 2.5])
    mu = np.array([0.0, 1.0, -0.5])
    sigma = np.array([1.0, 0.5, 2.0])
    z = (y - mu) / sigma
    closed = sigma * (
        z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi)
    )
    value = crps_gaussian_mixture(y, mu[:, None], (sigma**2)[:, None])
    assert value == pytest.approx(closed.mean(), rel=1e-10)
    assert crps_gaussian_mixture([0.0], [[0.0]], [[1.0]]) == pytest.approx(
        (math.sqrt(2) - 1) / math.sqrt(math.pi), rel=1e-12
    )


def test_crps_mixture_against_numerical_integration(mixture):
    y, mu, var = mixture
    w = np.array([0.2, 0.3, 0.5])
    expected = []
    for i in range(3):

        def integrand(x, i=i):
            return (_mixture_cdf(x, mu[i], var[i], w) - (x >= y[i])) ** 2

        left, _ = integrate.quad(integrand, -30, y[i], epsabs=1e-12)
        right, _ = integrate.quad(integrand, y[i], 30, epsabs=1e-12)
        expected.append(left + right)
    value = crps_gaussian_mixture(y[:3], mu[:3], var[:3], weights=w * 7)
    assert value == pytest.approx(np.mean(expected), rel=1e-6)


def test_crps_zero_weight_drops_a_component(mixture):
    y, mu, var = mixture
    with_zero = crps_gaussian_mixture(y, mu, var, weights=[1.0, 0.0, 1.0])
    without = crps_gaussian_mixture(y, mu[:, [0, 2]], var[:, [0, 2]])
    assert with_zero == pytest.approx(without, rel=1e-12)


def test_mixture_interval_one_component_is_norm_ppf():
    mu = np.array([[0.0], [3.0]])
    var = np.array([[1.0], [4.0]])
    lower, upper = mixture_interval(mu, var)
    np.testing.assert_allclose(lower, stats.norm.ppf(0.025, mu[:, 0], [1.0, 2.0]), atol=1e-8)
    np.testing.assert_allclose(upper, stats.norm.ppf(0.975, mu[:, 0], [1.0, 2.0]), atol=1e-8)
    lower, upper = mixture_interval(mu, var, level=0.5)
    np.testing.assert_allclose(upper, stats.norm.ppf(0.75, mu[:, 0], [1.0, 2.0]), atol=1e-8)


def test_mixture_interval_hits_the_mixture_quantiles(mixture):
    _, mu, var = mixture
    w = np.array([3.0, 1.0, 1.0])
    lower, upper = mixture_interval(mu, var, weights=w, level=0.9)
    for i in range(len(mu)):
        assert _mixture_cdf(lower[i], mu[i], var[i], w / 5) == pytest.approx(0.05, abs=1e-8)
        assert _mixture_cdf(upper[i], mu[i], var[i], w / 5) == pytest.approx(0.95, abs=1e-8)
    assert (lower < upper).all()


def test_interval_coverage_by_hand():
    assert interval_coverage([0.0, 5.0], [[0.0], [0.0]], [[1.0], [1.0]]) == 0.5
    # 1.9 is inside the 95% interval of N(0, 1), 2.0 is outside
    y = [1.9, 2.0, -1.9, -2.0]
    assert interval_coverage(y, np.zeros((4, 1)), np.ones((4, 1))) == 0.5
    assert interval_coverage(y, np.zeros((4, 1)), np.ones((4, 1)), level=0.99) == 1.0


@pytest.mark.parametrize(
    "variances",
    [
        [[1.0, 0.0]],
        [[1.0, -1.0]],
        [[1.0, np.nan]],
        [[1.0, np.inf]],
    ],
    ids=["zero", "negative", "nan", "inf"],
)
def test_nonpositive_or_nonfinite_variances_are_refused(variances):
    for metric in (gaussian_mixture_nll, crps_gaussian_mixture, interval_coverage):
        with pytest.raises(ValueError, match="positive"):
            metric([0.0], [[0.0, 1.0]], variances)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        gaussian_mixture_nll([0.0], [[0.0, 1.0]], [[1.0]])
    with pytest.raises(ValueError, match="differ in shape"):
        mixture_interval([[0.0, 1.0]], [[1.0, 1.0, 1.0]])
