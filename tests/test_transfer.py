"""skhydra._transfer: synthetic rows (noise and mixup, on tables and images), the transfer
set, the rows held out for early stopping, and the student's input scaling."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY
from scipy import stats
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from skhydra import HydraDistilledClassifier
from skhydra._transfer import (
    augment,
    build_transfer_set,
    input_scaling,
    most_disagreed,
    synthetic_rows,
    validation_rows,
)
from skhydra.ensembles import resolve_teacher
from skhydra.uncertainty import classification_uncertainty


@pytest.fixture(scope="module")
def digit_images():
    """200 digits as float32 images of shape (1, 8, 8); their borders are blank."""
    X, _ = load_digits(return_X_y=True)
    return (X[:200] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)


def _nearest(rows, X):
    """Index of the row of X nearest to each of ``rows`` (flattened)."""
    rows, X = rows.reshape(len(rows), -1), X.reshape(len(X), -1)
    distances = ((rows[:, None, :] - X[None, :, :]) ** 2).sum(axis=-1)
    return distances.argmin(axis=1)


# -- synthetic_rows --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["noise", "mixup"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape, factor, n_new",
    [((4, 2), 1.5, 6), ((4, 2), 0.4, 2), ((10, 3, 2, 2), 1.0, 10), ((4, 2), 0.0, 0)],
)
def test_synthetic_rows_shape_and_dtype(kind, dtype, shape, factor, n_new):
    X = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    rows = synthetic_rows(X, kind, factor, 0.5, np.random.default_rng(1))
    assert rows.shape == (n_new, *shape[1:]) and rows.dtype == dtype


def test_no_augmentation_gives_no_rows():
    X = np.ones((5, 3, 2), np.float32)
    rows = synthetic_rows(X, None, 2.0, 0.5, np.random.default_rng(0))
    assert rows.shape == (0, 3, 2) and rows.dtype == np.float32


@pytest.mark.parametrize("kind", ["noise", "mixup"])
def test_synthetic_rows_are_reproducible(kind):
    X = np.random.default_rng(0).standard_normal((20, 3))
    first, second, other = (
        synthetic_rows(X, kind, 1.0, 0.5, np.random.default_rng(seed)) for seed in (0, 0, 1)
    )
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


def test_noise_rows_on_a_table():
    # Rows far apart (column 0) so that each synthetic row's source is its nearest
    # row; features of very different spreads, to see the noise follow each one.
    rng = np.random.default_rng(0)
    X = np.stack([np.arange(50) * 10.0, rng.permutation(50) * 0.01], axis=1)
    rows = synthetic_rows(X, "noise", 40.0, 0.002, np.random.default_rng(1))
    assert rows.shape == (2000, 2)
    source = _nearest(rows[:, :1], X[:, :1])
    # Every real row is a source, about equally often.
    counts = np.bincount(source, minlength=50)
    assert counts.min() > 0 and stats.chisquare(counts).pvalue > 1e-3
    # Gaussian noise of 0.002 standard deviations of each feature, centred.
    z = (rows - X[source]) / (0.002 * X.std(axis=0))
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=0.1)
    assert np.all(np.abs(z.mean(axis=0)) < 4 / np.sqrt(2000))
    assert abs(np.corrcoef(z.T)[0, 1]) < 0.1  # independent per feature
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-3


def test_noise_rows_on_images(digit_images):
    X = digit_images
    rows = synthetic_rows(X, "noise", 5.0, 0.05, np.random.default_rng(0))
    assert rows.shape == (1000, 1, 8, 8)
    residual = rows - X[_nearest(rows, X)]
    pixel_std = X.std(axis=0, dtype=np.float64)
    blank = pixel_std == 0
    assert blank.any() and (~blank).sum() > 40
    # Pixels blank in every image stay blank; the others get noise of their own spread.
    assert np.all(residual[:, blank] == 0)
    z = residual[:, ~blank] / (0.05 * pixel_std[~blank])
    assert z.std() == pytest.approx(1.0, rel=0.05)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=0.15)
    assert abs(z.mean()) < 0.02


@pytest.mark.parametrize("shape", [(18, 18), (18, 2, 3, 3)], ids=["table", "images"])
def test_mixup_rows_are_convex_combinations_of_two_rows(shape):
    # Row k is one-hot at position k: a synthetic row l * x_i + (1 - l) * x_j shows
    # i, j and l. On images l must be one number per image, not one per pixel.
    X = np.eye(18, dtype=np.float32).reshape(shape)
    rows = synthetic_rows(X, "mixup", 100.0, 0.5, np.random.default_rng(0))
    assert rows.shape == (1800, *shape[1:])
    flat = rows.reshape(1800, 18).astype(np.float64)
    assert flat.min() >= 0 and flat.max() <= 1
    np.testing.assert_allclose(flat.sum(axis=1), 1.0, atol=1e-6)
    nonzero = (flat > 0).sum(axis=1)
    assert set(nonzero) <= {1, 2}
    # i == j in about 1 row of 18 (100 expected).
    assert 60 < np.sum(nonzero == 1) < 140
    pairs = flat[nonzero == 2]
    # Each row takes part as often: 2 x 1800 / 18 = 200 times in expectation.
    assert stats.chisquare((flat > 0).sum(axis=0)).pvalue > 1e-3
    # l ~ Uniform(0, 1): the larger weight of a pair is uniform on (0.5, 1).
    larger = pairs.max(axis=1)
    assert stats.kstest(larger, "uniform", args=(0.5, 0.5)).pvalue > 1e-3


# -- build_transfer_set ----------------------------------------------------------------


def _real_rows():
    X = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    synthetic = np.array([[0.5, 0.5], [1.5, 1.5]], np.float32)
    return X, X.astype(np.float32), synthetic


def test_build_transfer_set():
    X_teacher, X_student, synthetic = _real_rows()
    transfer = build_transfer_set(
        X_teacher, X_student, np.array([1, 2, 3, 4]), np.array([1.0, 2.0, 3.0, 6.0]), synthetic
    )
    assert len(transfer) == 6 and transfer.n_real == 4
    assert transfer.X.dtype == np.float32
    np.testing.assert_array_equal(transfer.X, np.concatenate([X_student, synthetic]))
    assert transfer.teacher_parts[0] is X_teacher and transfer.teacher_parts[1] is synthetic
    # Synthetic rows weigh the mean sample weight; their y is unknown.
    assert transfer.weight.dtype == np.float32
    np.testing.assert_array_equal(transfer.weight, [1, 2, 3, 6, 3, 3])
    assert transfer.y.dtype == np.float64
    np.testing.assert_array_equal(transfer.y, [1, 2, 3, 4, np.nan, np.nan])


def test_build_transfer_set_without_y_weights_or_synthetic_rows():
    X_teacher, X_student, synthetic = _real_rows()
    transfer = build_transfer_set(X_teacher, X_student, None, None, synthetic)
    assert transfer.y is None
    np.testing.assert_array_equal(transfer.weight, np.ones(6))
    plain = build_transfer_set(X_teacher, X_student, np.arange(4), None, synthetic[:0])
    assert len(plain) == plain.n_real == 4 and plain.X is X_student
    assert len(plain.teacher_parts[1]) == 0
    np.testing.assert_array_equal(plain.y, np.arange(4.0))
    np.testing.assert_array_equal(plain.weight, np.ones(4))


def test_build_transfer_set_keeps_dataframe_columns_for_the_teacher():
    X_teacher, X_student, synthetic = _real_rows()
    frame = pd.DataFrame(X_teacher, columns=["width", "height"], index=[10, 11, 12, 13])
    transfer = build_transfer_set(frame, X_student, None, None, synthetic)
    real, synthetic_part = transfer.teacher_parts
    assert real is frame
    assert isinstance(synthetic_part, pd.DataFrame)
    assert list(synthetic_part.columns) == ["width", "height"]
    np.testing.assert_array_equal(synthetic_part.to_numpy(), synthetic)
    np.testing.assert_array_equal(transfer.X[4:], synthetic)


# -- validation_rows -------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_rows, fraction, n_valid",
    [
        (100, 0.1, 10),
        (300, 0.1, 30),
        (29, 0.1, 2),
        (25, 0.07, None),
        (20, 0.9, 18),
        (10, 0.9, None),
    ],
)
def test_validation_rows(n_rows, fraction, n_valid):
    index = validation_rows(n_rows, fraction, np.random.default_rng(0))
    if n_valid is None:  # fewer than two rows to validate or to train on
        assert index is None
        return
    assert index.dtype == bool and index.shape == (n_rows,)
    assert index.sum() == n_valid
    again = validation_rows(n_rows, fraction, np.random.default_rng(0))
    np.testing.assert_array_equal(index, again)
    other = validation_rows(n_rows, fraction, np.random.default_rng(1))
    assert other.sum() == n_valid and not np.array_equal(index, other)


# -- input_scaling ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "feature"])
def test_feature_scaling_on_a_table_by_hand(mode):
    X = np.array([[0.0, 5.0, 1.0], [2.0, 5.0, 3.0], [4.0, 5.0, 8.0]])
    loc, scale = input_scaling(X, mode)
    assert loc.dtype == scale.dtype == np.float32 and loc.shape == scale.shape == (3,)
    np.testing.assert_allclose(loc, [2.0, 5.0, 4.0], rtol=1e-6)
    # A constant column keeps its values: scale 1.
    np.testing.assert_allclose(scale, [np.sqrt(8 / 3), 1.0, np.sqrt(26 / 3)], rtol=1e-6)


def test_scaling_modes_on_images_by_hand():
    # Two images of two channels of 1 x 2 pixels: channel 0 holds 0, 2, 4, 6; channel 1 is 7.
    X = np.array([[[[0.0, 2.0]], [[7.0, 7.0]]], [[[4.0, 6.0]], [[7.0, 7.0]]]], np.float32)
    for mode in ("auto", "channel"):
        loc, scale = input_scaling(X, mode)
        assert loc.shape == scale.shape == (2, 1, 1)
        np.testing.assert_allclose(loc.ravel(), [3.0, 7.0])
        np.testing.assert_allclose(scale.ravel(), [np.sqrt(5.0), 1.0], rtol=1e-6)
    loc, scale = input_scaling(X, "feature")
    assert loc.shape == scale.shape == (2, 1, 2)
    np.testing.assert_allclose(loc, [[[2.0, 4.0]], [[7.0, 7.0]]])
    np.testing.assert_allclose(scale, [[[2.0, 2.0]], [[1.0, 1.0]]])
    loc, scale = input_scaling(X, "global")
    assert loc.shape == scale.shape == (1, 1, 1)
    assert loc.item() == pytest.approx(5.0)  # (12 + 28) / 8
    assert scale.item() == pytest.approx(np.sqrt((25 + 9 + 1 + 1 + 4 * 4) / 8), rel=1e-6)
    loc, scale = input_scaling(X, None)
    assert loc.shape == scale.shape == () and loc == 0 and scale == 1


def test_channel_scaling_of_sequences():
    # (n_samples, channels, length): one location and scale per channel, shape (C, 1).
    X = np.random.default_rng(0).standard_normal((30, 4, 6)) * [[1.0], [2.0], [3.0], [4.0]]
    loc, scale = input_scaling(X, "auto")
    assert loc.shape == scale.shape == (4, 1)
    np.testing.assert_allclose(loc.ravel(), X.mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(scale.ravel(), X.std(axis=(0, 2)), rtol=1e-5)


def test_student_scales_the_real_rows_per_feature(iris, hydra):
    # hydra was fitted with synthetic rows: the scaling is of the real rows only.
    X, _ = iris
    scaler = hydra.net_.module_.scaler
    assert tuple(scaler.loc.shape) == (4,)
    np.testing.assert_allclose(scaler.loc.numpy(), X.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(scaler.scale.numpy(), X.std(axis=0), rtol=1e-5)


@pytest.fixture(scope="module")
def sequences_and_images(digit_images):
    """Digits as 8 channels of length 8, and as two channels (x and 3 x + 1)."""
    X = digit_images
    return {
        "sequences": X.reshape(-1, 8, 8),
        "images": np.concatenate([X, 3.0 * X + 1.0], axis=1).astype(np.float32),
    }


@pytest.mark.parametrize(
    "kind, mode, shape",
    [
        ("sequences", "auto", (8, 1)),
        ("images", "auto", (2, 1, 1)),
        ("images", "channel", (2, 1, 1)),
        ("images", "feature", (2, 8, 8)),
        ("images", "global", (1, 1, 1)),
        ("images", None, ()),
    ],
)
def test_student_module_holds_the_input_scaling(sequences_and_images, kind, mode, shape):
    X = sequences_and_images[kind]
    torch.manual_seed(0)
    width = int(np.prod(X.shape[1:]))
    teachers = [nn.Sequential(nn.Flatten(), nn.Linear(width, 3)) for _ in range(2)]
    params = {**TINY, "phase1_epochs": 0, "max_epochs": 0}  # no training needed
    model = HydraDistilledClassifier(teachers, body=nn.Flatten, input_scaling=mode, **params)
    scaler = model.fit(X).net_.module_.scaler
    loc, scale = input_scaling(X, mode)
    assert tuple(scaler.loc.shape) == tuple(scaler.scale.shape) == shape
    np.testing.assert_array_equal(scaler.loc.numpy(), loc)
    np.testing.assert_array_equal(scaler.scale.numpy(), scale)
    if kind == "images" and mode in ("auto", "channel"):
        # The second channel is 3 x + 1: three times the spread of the first.
        assert scale[1, 0, 0] == pytest.approx(3 * scale[0, 0, 0], rel=1e-5)
    if mode == "feature":
        assert np.any(X.std(axis=0) == 0) and np.all(scale[X.std(axis=0) == 0] == 1)


def test_invalid_input_scaling(iris, forest):
    with pytest.raises(InvalidParameterError, match="input_scaling"):
        HydraDistilledClassifier(forest, input_scaling="pixel", **TINY).fit(iris[0])


def test_munge_rows_take_neighbour_values_feature_by_feature():
    rng = np.random.default_rng(0)
    # Two far-apart pairs of rows: each row's nearest neighbour is its pair.
    X = np.array([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0], [101.0, 101.0]])
    rows = synthetic_rows(X, "munge", 50.0, 0.5, rng)
    assert rows.shape == (200, 2)
    near_low = (rows < 50).all(axis=1)
    # Never mixed across pairs, and within 4 pair-distances of the pair.
    assert ((rows[near_low] > -4) & (rows[near_low] < 5)).all()
    assert ((rows[~near_low] > 96) & (rows[~near_low] < 105)).all()
    # Both halves appear; a feature keeps the row's own value about half the time.
    assert 50 < near_low.sum() < 150
    kept = np.isin(rows, X).mean()
    assert 0.35 < kept < 0.65


def test_most_disagreed_keeps_the_top_and_a_random_rest():
    rng = np.random.default_rng(0)
    candidates = np.arange(100.0)[:, None]
    kept = most_disagreed(candidates, disagreement=np.arange(100.0), n_keep=20, rng=rng)
    assert kept.shape == (20, 1)
    np.testing.assert_array_equal(np.sort(kept[:15, 0]), np.arange(85.0, 100.0))
    assert (kept[15:, 0] < 85).all() and len(np.unique(kept)) == 20


def test_auto_augmentation_follows_the_teacher(iris, forest):
    X, y = iris
    rng = np.random.default_rng(0)
    smooth = resolve_teacher([LogisticRegression(C=c, max_iter=500).fit(X, y) for c in (0.1, 1.0)])
    rows = augment(smooth, X, X, "auto", 1.0, 0.5, rng)
    assert rows.shape == X.shape  # augmentation_factor rows per row, of noise
    trees = resolve_teacher(forest)
    rows = augment(trees, X, X, "auto", 1.0, 0.5, rng)
    assert rows.shape == (4 * len(X), X.shape[1])  # a small table: 4 rows per row
    # The second half: where the trees disagree far more than on the data.
    chosen = classification_uncertainty(trees.predict_members(rows[2 * len(X) :]))[2]
    data = classification_uncertainty(trees.predict_members(X))[2]
    assert chosen.mean() > 3 * data.mean()
    # One row cannot be munged: noise instead.
    assert augment(trees, X[:1], X[:1], "auto", 1.0, 0.5, rng).shape == (1, X.shape[1])
