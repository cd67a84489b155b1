"""Model cards: the sections, and numbers equal to the metrics computed directly."""

import sys

import pytest
from conftest import TINY
from sklearn.exceptions import NotFittedError
from sklearn.metrics import root_mean_squared_error

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor, predict_uncertainty
from skhydra.ensembles import predict_members
from skhydra.metrics import (
    agreement,
    brier_score,
    crps_gaussian_mixture,
    expected_calibration_error,
    gaussian_mixture_nll,
    interval_coverage,
    kl_to_teacher,
    negative_log_likelihood,
    ood_auroc,
    uncertainty_spearman,
)

pytest.importorskip("skops")
from skhydra.card import PLOT_FILES, model_card  # noqa: E402


def fmt(value):
    """A number as the card prints it."""
    return f"{value:.4g}"


def section(text, heading):
    """The lines of a rendered card under ``heading`` (e.g. "## Calibration"), up to the next."""
    lines = text.splitlines()
    start = lines.index(heading)
    level = heading.split()[0]
    body = []
    for line in lines[start + 1 :]:
        if line.startswith("#") and len(line.split()[0]) <= len(level):
            break
        body.append(line)
    return body


def row(text, heading, name):
    """The cells after the first of the table row ``name`` in a card's section."""
    for line in section(text, heading):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == name:
            return cells[1:]
    raise AssertionError(f"no row {name!r} under {heading!r}")


@pytest.fixture(scope="module")
def ood(iris):
    return iris[0] + 5.0


@pytest.fixture(scope="module")
def card_c(hydra, iris, ood, tmp_path_factory):
    """The full classifier card: y, OOD rows, plots."""
    folder = tmp_path_factory.mktemp("card") / "iris"
    card = model_card(hydra, *iris, X_ood=ood, plot_dir=folder, title="Iris student")
    return card, folder


@pytest.fixture(scope="module")
def text_c(card_c):
    return card_c[0].render()


@pytest.fixture(scope="module")
def text_r(hydra_r, diabetes):
    X, y = diabetes
    return model_card(hydra_r, X, y, X_ood=X * 5.0).render()


def test_sections_in_order(text_c):
    headings = [line for line in text_c.splitlines() if line.startswith("#")]
    assert headings == [
        "# Iris student",
        "## Teacher",
        "## Student",
        "### Architecture",
        "### Training",
        "### Hyperparameters",
        "## Fidelity to the teacher",
        "## Out-of-distribution detection",
        "## Calibration",
        "## Plots",
        "### Epistemic uncertainty, student against teacher",
        "### Reliability diagram",
        "### Out-of-distribution rows",
    ]


def test_teacher_and_architecture(text_c, hydra, forest):
    assert row(text_c, "## Teacher", "Ensemble") == ["RandomForestClassifier"]
    assert row(text_c, "## Teacher", "Members") == [str(len(forest.estimators_))]
    assert row(text_c, "## Teacher", "Classes") == ["0, 1, 2"]
    module = hydra.net_.module_
    n_parameters = sum(p.numel() for p in module.parameters())
    assert row(text_c, "### Architecture", "Parameters") == [f"{n_parameters:,}"]
    assert row(text_c, "### Architecture", "Body") == ["MLP, hidden widths (16,)"]
    assert row(text_c, "### Architecture", "Heads") == [f"{hydra.n_heads_}, one linear layer each"]
    assert row(text_c, "### Architecture", "Outputs per head") == ["3"]
    assert row(text_c, "### Training", "Epochs run (both phases)") == [str(len(hydra.net_.history))]
    assert row(text_c, "### Training", "Temperature") == [fmt(hydra.temperature)]
    factor = row(text_c, "### Training", "Factor on the heads' logits (match_aleatoric)")
    assert factor == [fmt(hydra.head_scale_)]
    spread = row(text_c, "### Training", "Factor on the heads' spread (match_epistemic)")
    assert spread == [fmt(hydra.head_spread_)]
    assert row(text_c, "### Training", "Phase 2: every head against its members") == [
        f"{TINY['max_epochs'] - TINY['phase1_epochs']} epochs at most"
    ]


def test_classifier_fidelity_matches_metrics(text_c, hydra, forest, iris):
    X = iris[0]
    teacher_p = predict_members(forest, X).mean(axis=1)
    student_p = hydra.predict_proba(X)
    teacher_u = predict_uncertainty(forest, X)["epistemic"].to_numpy()
    student_u = predict_uncertainty(hydra, X)["epistemic"].to_numpy()
    heading = "## Fidelity to the teacher"
    assert row(text_c, heading, "Agreement")[0] == fmt(agreement(teacher_p, student_p))
    assert row(text_c, heading, "KL divergence to the teacher")[0] == fmt(
        kl_to_teacher(teacher_p, student_p)
    )
    assert row(text_c, heading, "Spearman of epistemic uncertainty")[0] == fmt(
        uncertainty_spearman(teacher_u, student_u)
    )
    ratio = student_u.mean() / teacher_u.mean()
    assert row(text_c, heading, "Mean epistemic, student / teacher")[0] == fmt(ratio)


def test_classifier_calibration_matches_metrics(text_c, hydra, forest, iris):
    X, y = iris
    heading = "## Calibration"
    for model, column in ((hydra, 0), (forest, 1)):
        p = model.predict_proba(X)
        assert row(text_c, heading, "Accuracy")[column] == fmt(model.score(X, y))
        nll = row(text_c, heading, "Negative log-likelihood (nats)")[column]
        assert nll == fmt(negative_log_likelihood(y, p))
        assert row(text_c, heading, "Brier score")[column] == fmt(brier_score(y, p))
        ece = expected_calibration_error(y, p, n_bins=15)
        assert row(text_c, heading, "ECE (15 bins)")[column] == fmt(ece)


def test_ood_auroc_matches_metrics(text_c, hydra, forest, iris, ood):
    heading = "## Out-of-distribution detection"
    cells = row(text_c, heading, "AUROC of epistemic uncertainty")
    for model, cell in zip((hydra, forest), cells, strict=True):
        scores = [predict_uncertainty(model, rows)["epistemic"] for rows in (iris[0], ood)]
        assert cell == fmt(ood_auroc(*scores))


def test_no_ood_section_without_ood_rows(hydra, iris):
    text = model_card(hydra, iris[0]).render()
    assert "Out-of-distribution" not in text
    assert "AUROC" not in text
    assert section(text, "## Calibration") == [
        "",
        "Not measured: no true targets were given (`y=None`).",
    ]
    assert "## Plots" not in text


def test_regressor_numbers_match_metrics(text_r, hydra_r, forest_r, diabetes):
    X, y = diabetes
    heading = "## Fidelity to the teacher"
    rmse = root_mean_squared_error(forest_r.predict(X), hydra_r.predict(X))
    assert row(text_r, heading, "RMSE to the teacher's mean")[0] == fmt(rmse)
    with pytest.warns(UserWarning, match="predict no variance"):
        teacher_u = predict_uncertainty(forest_r, X)["epistemic"]
    student_u = hydra_r.predict_uncertainty(X)["epistemic"]
    spearman = row(text_r, heading, "Spearman of epistemic uncertainty")[0]
    assert spearman == fmt(uncertainty_spearman(teacher_u, student_u))
    assert "KL" not in "\n".join(section(text_r, heading))

    mixture = (*hydra_r.predict_members(X), hydra_r.head_weights_)
    heading = "## Calibration"
    assert row(text_r, heading, "RMSE")[0] == fmt(root_mean_squared_error(y, hydra_r.predict(X)))
    assert row(text_r, heading, "Gaussian mixture NLL")[0] == fmt(gaussian_mixture_nll(y, *mixture))
    assert row(text_r, heading, "CRPS")[0] == fmt(crps_gaussian_mixture(y, *mixture))
    coverage = row(text_r, heading, "Coverage of the 95% interval")
    assert coverage == [fmt(interval_coverage(y, *mixture)), "n/a (no variance)"]


def test_regressor_sections(text_r):
    assert "# HydraDistilledRegressor distilled from RandomForestRegressor" in text_r
    assert row(text_r, "## Teacher", "Members predict a variance") == ["no"]
    assert row(text_r, "### Architecture", "Outputs per head") == ["2"]
    assert "Temperature" not in text_r
    assert "match_aleatoric" not in text_r


def test_plots_written_and_linked(card_c, text_c):
    card, folder = card_c
    for name in PLOT_FILES.values():
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text_c  # linked by name: the card goes into the same folder
    card.save(folder / "README.md")
    assert (folder / "README.md").read_text(encoding="utf-8") == text_c


def test_regressor_plots_and_interval_level(hydra_r, diabetes, tmp_path):
    X, y = diabetes
    text = model_card(hydra_r, X, y, plot_dir=tmp_path, level=0.9).render()
    assert sorted(p.name for p in tmp_path.iterdir()) == [PLOT_FILES["comparison"]]
    assert "Reliability" not in text
    mixture = (*hydra_r.predict_members(X), hydra_r.head_weights_)
    coverage = row(text, "## Calibration", "Coverage of the 90% interval")[0]
    assert coverage == fmt(interval_coverage(y, *mixture, level=0.9))


def test_without_teacher(hydra, iris, ood, text_c, tmp_path):
    text = model_card(hydra.without_teacher(), *iris, X_ood=ood, plot_dir=tmp_path).render()
    assert section(text, "## Fidelity to the teacher")[1].startswith(
        "Not measured: this student holds no teacher"
    )
    assert "Agreement" not in text
    assert row(text, "## Teacher", "Ensemble") == ["n/a (no teacher)"]
    assert row(text, "## Calibration", "Brier score") == [
        row(text_c, "## Calibration", "Brier score")[0],
        "n/a (no teacher)",
    ]
    auroc = row(text, "## Out-of-distribution detection", "AUROC of epistemic uncertainty")
    assert auroc[1] == "n/a (no teacher)"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [PLOT_FILES["reliability"], PLOT_FILES["ood"]]
    )


def test_constant_epistemic_is_not_a_correlation(forest, iris):
    one_head = HydraDistilledClassifier(forest, n_heads=1, **TINY).fit(iris[0])
    text = model_card(one_head, iris[0]).render()
    cells = row(text, "## Fidelity to the teacher", "Spearman of epistemic uncertainty")
    assert cells[0] == "n/a (constant)"


def test_slash_in_title(hydra, iris):
    text = model_card(hydra, iris[0], title="iris/v1").render()
    assert "# iris/v1" in text.splitlines()
    assert "## Teacher" in text.splitlines()


def test_errors(hydra, forest, iris):
    X, y = iris
    with pytest.raises(NotFittedError):
        model_card(HydraDistilledRegressor(), X)
    with pytest.raises(TypeError, match="needs a fitted HydraDistilledClassifier"):
        model_card(forest, X)
    with pytest.raises(ValueError, match="X has 3 features"):
        model_card(hydra, X[:, :3])
    with pytest.raises(ValueError, match="X has 3 features"):
        model_card(hydra, X, X_ood=X[:, :3])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model_card(hydra, X, y[:-1])
    with pytest.raises(ValueError, match="level == 1.5"):
        model_card(hydra, X, level=1.5)


def test_missing_skops_names_the_extra(hydra, iris, monkeypatch):
    monkeypatch.setitem(sys.modules, "skops.card", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install \"skhydra\[skops\]\""):
        model_card(hydra, iris[0])
