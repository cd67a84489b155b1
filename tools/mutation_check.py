"""Mutation check: break the method on purpose and see the tests fail.

Each mutant is a small edit of the package that breaks one idea of Hydra
(identical heads, no temperature, the KL reversed...). For each, the package
and its tests are copied to a temporary folder, the edit is applied there,
and the behavioural tests run against the copy; the mutant is *killed* when a
test fails. The unmutated copy must pass the same tests first, so a kill
means the edit was caught, not that the tests were already failing.

    python tools/mutation_check.py              # every mutant, first failing test
    python tools/mutation_check.py --all        # every failing test of every mutant
    python tools/mutation_check.py --only kl_reversed,phase1_skipped
    python tools/mutation_check.py --list

Prints one line per mutant (killed or SURVIVED, with the first failing test)
and ``killed K of N``; exits 1 when a mutant survives or no longer applies.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The behavioural tests every mutant runs against (files, or file::test ids).
TESTS = [
    "tests/test_losses.py",
    "tests/test_uncertainty.py",
    "tests/test_targets.py",
    "tests/test_transfer.py",
    "tests/test_classifier.py::test_phase_one_alone_copies_a_student_of_the_mean_into_every_head",
    "tests/test_classifier.py::test_student_epistemic_tracks_the_teacher_off_the_training_rows",
    "tests/test_classifier.py::test_head_m_learns_member_m",
    "tests/test_classifier.py::test_fewer_heads_learn_the_mixture_of_their_members",
    "tests/test_classifier.py::test_temperature_changes_what_the_heads_learn",
    "tests/test_classifier.py::test_augmentation_rows_are_labelled_at_their_own_rows",
    "tests/test_classifier.py::test_forest_student_ranks_rows_like_the_forest",
    "tests/test_classifier.py::test_low_rank_heads_keep_the_forests_ranking",
    "tests/test_regressor.py::test_student_epistemic_tracks_the_teacher_off_the_training_rows",
    "tests/test_regressor.py::test_head_m_learns_member_m",
    "tests/test_regressor.py::test_fewer_heads_learn_the_moments_of_their_members",
    "tests/test_regressor.py::test_forest_heads_matched_by_rank_keep_the_spread",
    "tests/test_tree_fidelity.py",
    "tests/test_head_scale.py",
    "tests/test_training.py::test_early_stopping_runs_out_of_patience_for_losses_of_either_sign",
]


@dataclass(frozen=True)
class Mutant:
    """One way of breaking the method: edits ``(file, old, new)`` applied together."""

    name: str
    what: str
    edits: tuple


MUTANTS = [
    Mutant(
        "heads_on_ensemble_mean",
        "every phase-2 head is trained on the ensemble mean",
        (
            (
                "skhydra/_classifier.py",
                "self._tempered(heads.head_targets(probabilities)),",
                "self._tempered(np.repeat(heads.mean_target(probabilities), "
                "len(heads.head_weights), axis=1)),",
            ),
            (
                "skhydra/_regressor.py",
                "for m, v in (phase1, phase2)",
                "for m, v in (phase1, tuple(np.repeat(a, len(heads.head_weights), axis=1) "
                "for a in phase1))",
            ),
        ),
    ),
    Mutant(
        "temperature_ignored",
        "the temperature is ignored (T = 1 for targets and student)",
        (
            (
                "skhydra/losses.py",
                "scores = scores / temperature\n",
                "scores = scores / 1.0\n",
            ),
        ),
    ),
    Mutant(
        "kl_reversed",
        "the per-head KL divergence is KL(student || teacher)",
        (
            (
                "skhydra/losses.py",
                "per_row = (neg_entropy + cross) * self.temperature**2",
                "per_row = (log_q.exp() * (log_q - torch.log(target.clamp_min(1e-12))))"
                ".sum(dim=-1).mean(dim=1) * self.temperature**2",
            ),
        ),
    ),
    Mutant(
        "phase1_skipped",
        "phase 1 (the Hinton head) is skipped",
        (
            (
                "skhydra/_training.py",
                "net = phase(1, module, phase1_epochs, targets[0], None)",
                "net = phase(1, module, 0, targets[0], None)",
            ),
        ),
    ),
    Mutant(
        "student_epistemic_zero",
        "the classifier student's epistemic uncertainty is returned as zero",
        (
            (
                "skhydra/_classifier.py",
                "epistemic = np.maximum(total - aleatoric, 0.0)",
                "epistemic = np.zeros_like(total)",
            ),
        ),
    ),
    Mutant(
        "regression_epistemic_zero",
        "the regression epistemic variance is returned as zero",
        (
            (
                "skhydra/uncertainty.py",
                "epistemic = ((mu - mean[:, None]) ** 2) @ w",
                "epistemic = 0.0 * mean",
            ),
        ),
    ),
    Mutant(
        "regression_epistemic_wrong_axis",
        "the regression epistemic variance is taken across rows, not members",
        (
            (
                "skhydra/uncertainty.py",
                "epistemic = ((mu - mean[:, None]) ** 2) @ w",
                "epistemic = ((mu - mu.mean(axis=0)) ** 2) @ w",
            ),
        ),
    ),
    Mutant(
        "members_shifted_heads",
        "with one head per member, head m learns member m - 1",
        (
            (
                "skhydra/_targets.py",
                "            return members\n",
                "            return np.roll(members, 1, axis=1)\n",
            ),
        ),
    ),
    Mutant(
        "members_wrong_groups",
        "with fewer heads, members go to heads in contiguous blocks, not m % n_heads",
        (
            (
                "skhydra/_targets.py",
                "member_heads = np.arange(n_members) % n_heads",
                "member_heads = np.arange(n_members) * n_heads // n_members",
            ),
        ),
    ),
    Mutant(
        "rank_matching_ignored",
        "tree members are never ranked: each head imitates one tree",
        (("skhydra/_targets.py", "        if not self.rank:\n", "        if True:\n"),),
    ),
    Mutant(
        "augmentation_wrong_rows",
        "synthetic rows are labelled with the teacher's predictions of other synthetic rows",
        (
            (
                "skhydra/_transfer.py",
                "    synthetic_for_teacher = like(synthetic, X_teacher)\n",
                "    synthetic_for_teacher = like(synthetic[::-1], X_teacher)\n",
            ),
        ),
    ),
    Mutant(
        "out_of_bag_in_bag_members",
        "the out-of-bag view of a training row takes the members that saw it",
        (
            (
                "skhydra/_base.py",
                "chunk = _out_of_bag_chunk(chunk, in_bag.mask(start, stop))",
                "chunk = _out_of_bag_chunk(chunk, ~in_bag.mask(start, stop))",
            ),
        ),
    ),
    Mutant(
        "encoding_linear",
        "the piecewise-linear encoding is not clipped: each bin is a linear copy of x",
        (
            (
                "skhydra/nn.py",
                "        z = (offset / self.width).clamp(0.0, 1.0)\n",
                "        z = offset / self.width\n",
            ),
        ),
    ),
    Mutant(
        "encoding_end_slope",
        "outside the edges the encoding extrapolates at the slope of the end bin",
        (
            (
                "skhydra/nn.py",
                "        above = self.last * (offset - self.width).clamp(min=0.0)\n",
                "        above = self.last * (offset - self.width).clamp(min=0.0) / self.width\n",
            ),
        ),
    ),
    Mutant(
        "head_scale_not_applied",
        "the factor on the heads' logits is chosen but never folded into the heads",
        (("skhydra/_base.py", "        module.heads.scale_outputs(scale)\n", ""),),
    ),
    Mutant(
        "head_spread_not_applied",
        "the factor on the heads' spread is chosen but never folded into the heads",
        (
            (
                "skhydra/_base.py",
                "            module.heads.spread_outputs(spread, heads.head_weights)\n",
                "            pass\n",
            ),
        ),
    ),
    Mutant(
        "head_scale_tempered_targets",
        "the heads' target entropy is read from the tempered targets (T = 1 instead of T)",
        (
            (
                "skhydra/_classifier.py",
                "tempered.clamp_min(1e-300).log(), 1.0 / self.temperature)",
                "tempered.clamp_min(1e-300).log(), 1.0)",
            ),
        ),
    ),
    Mutant(
        "early_stopping_signed_margin",
        "early stopping's margin takes the sign of the loss (skorch's), so a worse negative "
        "loss counts as an improvement",
        (
            (
                "skhydra/_training.py",
                "            change = self.threshold * abs(score)\n",
                "            change = self.threshold * score\n",
            ),
        ),
    ),
]


def _copy_tree(dest):
    for name in ("skhydra", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)


def _apply(dest, mutant):
    for path, old, new in mutant.edits:
        file = dest / path
        text = file.read_text()
        if text.count(old) != 1:
            raise LookupError(
                f"mutant {mutant.name}: expected one occurrence of {old!r} in {path}, "
                f"found {text.count(old)}; update the mutant to the current code."
            )
        file.write_text(text.replace(old, new))


def _run_tests(dest, tests, every=False):
    """Run ``tests`` in ``dest`` (the copy is imported first).

    Returns whether they passed, and the failing tests (the first one only
    unless ``every``), or the end of pytest's output when none is named.
    """
    stop = [] if every else ["-x"]
    command = [sys.executable, "-m", "pytest", *stop, "-q", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=dest, capture_output=True, text=True)
    failed = [
        line.split(" - ")[0]
        for line in done.stdout.splitlines()
        if line.startswith(("FAILED", "ERROR"))
    ]
    return done.returncode == 0, (failed or [done.stdout[-300:]])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated mutant names")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--all", action="store_true", help="report every failing test, not only the first"
    )
    args = parser.parse_args(argv)
    mutants = MUTANTS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {m.name for m in MUTANTS}
        if unknown:
            parser.error(f"unknown mutants {sorted(unknown)}")
        mutants = [m for m in MUTANTS if m.name in wanted]
    if args.list:
        for m in mutants:
            print(f"{m.name}: {m.what}")
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skhydra-mutants-") as tmp:
        baseline = Path(tmp) / "baseline"
        _copy_tree(baseline)
        passed, failure = _run_tests(baseline, TESTS)
        if not passed:
            print(f"The unmutated package fails the tests; fix that first:\n{failure[0]}")
            return 1
        killed = 0
        for mutant in mutants:
            dest = Path(tmp) / mutant.name
            _copy_tree(dest)
            try:
                _apply(dest, mutant)
            except LookupError as exc:
                print(f"STALE     {mutant.name}: {exc}")
                continue
            passed, failures = _run_tests(dest, TESTS, every=args.all)
            killed += not passed
            verdict = "SURVIVED" if passed else "killed  "
            print(f"{verdict}  {mutant.name} ({mutant.what})", flush=True)
            for failure in [] if passed else failures:
                print(f"          by {failure}", flush=True)
            shutil.rmtree(dest)
    print(f"killed {killed} of {len(mutants)} ({time.perf_counter() - start:.0f} s)")
    return 0 if killed == len(mutants) else 1


if __name__ == "__main__":
    sys.exit(main())
