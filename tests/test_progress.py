"""Progress bars of long fits (verbose=1), and none in a silent fit."""

import pickle
import re

import numpy as np
from conftest import TINY
from sklearn.ensemble import BaggingClassifier
from sklearn.linear_model import LogisticRegression

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor
from skhydra._progress import EpochProgress, progress_sink, row_progress


def _bar_counts(err, desc):
    """Every ``done/total`` a bar labelled ``desc`` printed."""
    return [tuple(map(int, m)) for m in re.findall(rf"{desc}:.*?(\d+)/(\d+)", err)]


def test_verbose_one_shows_labelling_and_epoch_bars(iris, forest, capfd):
    X = iris[0]
    model = HydraDistilledClassifier(forest, verbose=1, **TINY).fit(X)
    out, err = capfd.readouterr()
    labels = _bar_counts(err, "Teacher labels")
    assert labels, err
    done, total = labels[-1]
    # Every transfer row (real and synthetic) is labelled once, and the bar ends full.
    assert done == total and total > len(X)
    assert _bar_counts(err, "Teacher disagreement")  # a forest teacher scores candidates
    phase1, phase2 = _bar_counts(err, "Phase 1"), _bar_counts(err, "Phase 2")
    assert phase1[-1] == (TINY["phase1_epochs"], TINY["phase1_epochs"])
    n2 = TINY["max_epochs"] - TINY["phase1_epochs"]
    assert phase2[-1][1] == n2 and phase2[-1][0] == len(model.net_.history) - TINY["phase1_epochs"]
    assert "train_loss=" in err and "valid_loss=" in err
    # skorch's epoch table still prints, above the bars.
    assert "Phase 1" in out and "train_loss" in out


def test_epoch_bar_ends_where_early_stopping_ends(diabetes, forest_r, capfd):
    X, y = diabetes
    model = HydraDistilledRegressor(
        forest_r,
        verbose=1,
        n_iter_no_change=1,
        lr=0.5,  # a step this large stops improving at once
        **{**TINY, "max_epochs": 40, "phase1_epochs": 20},
    ).fit(X, y)
    err = capfd.readouterr().err
    epochs_run = len(model.net_.history)
    assert epochs_run < 40
    done1, total1 = _bar_counts(err, "Phase 1")[-1]
    done2, total2 = _bar_counts(err, "Phase 2")[-1]
    assert (total1, total2) == (20, 20)
    assert done1 + done2 == epochs_run


def test_silent_fit_prints_nothing(iris, capfd):
    X, y = iris
    bagged = BaggingClassifier(LogisticRegression(), n_estimators=4, random_state=0).fit(X, y)
    model = HydraDistilledClassifier(bagged, **TINY).fit(X)
    assert capfd.readouterr() == ("", "")
    assert "epoch_progress" not in dict(model.net_.callbacks_)


def test_fitted_net_with_bars_pickles(iris, forest, capfd):
    model = HydraDistilledClassifier(forest, verbose=1, **TINY).fit(iris[0])
    capfd.readouterr()
    restored = pickle.loads(pickle.dumps(model))
    callback = dict(restored.net_.callbacks_)["epoch_progress"]
    assert isinstance(callback, EpochProgress) and not hasattr(callback, "bar_")
    np.testing.assert_array_equal(restored.predict_proba(iris[0]), model.predict_proba(iris[0]))


def test_row_progress_counts_rows_and_keeps_chunks(capfd):
    chunks = [(0, 5, "a"), (5, 12, "b"), (12, 13, "c")]
    assert list(row_progress(iter(chunks), 13, "Rows", verbose=1)) == chunks
    assert _bar_counts(capfd.readouterr().err, "Rows")[-1] == (13, 13)
    assert list(row_progress(iter(chunks), 13, "Rows", verbose=0)) == chunks
    assert capfd.readouterr().err == ""


def test_progress_sink_prints_like_print(capfd):
    progress_sink("a", 1, end="!\n")
    progress_sink("b")
    assert capfd.readouterr().out == "a 1!\nb\n"
