"""Regenerate every results file and figure that ``docs/benchmarks.md`` shows, in one command.

Runs each benchmark script in turn, in its own process, with ``--output
<folder>/<name>.md`` (figures land beside it), and records each script's
command, exit status and wall time in ``<folder>/run_all.md`` (with the
provenance of the whole run); a run of some of them (``--only``) records them
in ``<folder>/logs/run_all_<names>.md`` instead, so ``run_all.md`` keeps the
last run of them all. A script that fails does not stop the others;
the exit status is 1 if any failed.

* full (default): the published results, in ``benchmarks/results/``: hours on
  the project's 2-core machine;
* ``--quick``: every script's small deterministic case, in
  ``benchmarks/results/quick/`` (never over the published files), within
  10 minutes on the 2-core machine;
* ``--smoke``: every script's smallest case (seconds each), in a temporary
  folder unless ``--output-dir``: a check that the scripts run.

The GPU check runs only where CUDA is present; elsewhere it is listed as
skipped.

    python benchmarks/run_all.py                      # everything, full
    python benchmarks/run_all.py --quick              # within 10 minutes
    python benchmarks/run_all.py --only uci_regression,cost
    python benchmarks/run_all.py --quick --list       # the commands, nothing run
"""

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: skhydra 0.1's defaults, the "before" rows of the tabular suite.
V01 = json.dumps(
    {
        "head_matching": "member",
        "augmentation": "noise",
        "head_rank": None,
        "feature_encoding": None,
        "out_of_bag": False,
        "match_aleatoric": False,
        "match_epistemic": False,
    }
)


@dataclass(frozen=True)
class Job:
    """One results file: the script that writes it and its arguments per mode."""

    name: str
    script: str
    full: list = field(default_factory=list)
    quick: list = field(default_factory=lambda: ["--quick"])
    smoke: list = field(default_factory=lambda: ["--smoke"])
    needs_cuda: bool = False

    def argv(self, mode, output):
        """The command line of this job in ``mode`` writing to ``output``, run from the root.

        Paths inside the repository are relative, so the provenance line that a
        results file records is the same on every clone.
        """
        args = {"full": self.full, "quick": self.quick, "smoke": self.smoke}[mode]
        script = (HERE / self.script).relative_to(ROOT)
        return [sys.executable, str(script), *args, "--output", str(relative(output))]


def relative(path):
    """``path`` relative to the repository root when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(ROOT)
    except ValueError:
        return path


#: In the order of docs/benchmarks.md.
JOBS = [
    Job(
        "digits_ood",
        "digits_ood.py",
        full=[
            "--teacher",
            "forest,extra_trees,mlp",
            "--repeats",
            "2",
            "--variants",
            "kd,kd-tuned,hydra,hydra-unspread,hydra-unmatched,hydra-previous,hydra-full-heads,"
            "hydra-paper",
        ],
    ),
    Job("tabular_fidelity", "tabular_fidelity.py", full=["--repeats", "2"]),
    Job(
        "tabular_fidelity_v01",
        "tabular_fidelity.py",
        full=["--repeats", "2", "--student-params", V01],
        quick=["--quick", "--student-params", V01],
        smoke=["--smoke", "--student-params", V01],
    ),
    Job(
        "fidelity_targets",
        "fidelity_targets.py",
        full=["--before", "benchmarks/results/tabular_fidelity_previous.json"],
    ),
    # The run before match_aleatoric (1fd8465) against the one before n_iter_no_change="auto"
    # (f833e66, patience 30): what the patience alone changed.
    Job(
        "fidelity_patience",
        "fidelity_targets.py",
        full=[
            "--results",
            "benchmarks/results/tabular_fidelity_unmatched.json",
            "--before",
            "benchmarks/results/tabular_fidelity_patience30.json",
        ],
    ),
    # The run with match_aleatoric alone (4f3894c) against the run before it (1fd8465): what
    # the factor on the heads' logits changed.
    Job(
        "fidelity_match",
        "fidelity_targets.py",
        full=[
            "--results",
            "benchmarks/results/tabular_fidelity_unspread.json",
            "--before",
            "benchmarks/results/tabular_fidelity_unmatched.json",
        ],
    ),
    # The suite against the run before match_epistemic (4f3894c): what the heads' spread changed.
    Job(
        "fidelity_spread",
        "fidelity_targets.py",
        full=["--before", "benchmarks/results/tabular_fidelity_unspread.json"],
    ),
    Job("tree_ablations", "tree_ablations.py"),
    Job("transfer_ablations", "transfer_ablations.py"),
    Job("digits_cnn", "digits_cnn.py", full=["--tune"]),
    Job("uci_regression", "uci_regression.py"),
    Job("cost", "cost.py"),
    Job(
        "scale",
        "scale.py",
        full=["--configs", "budget,none"],
        quick=["--quick", "--configs", "budget,none"],
    ),
    Job("scale_out", "scale_out.py"),
    Job("onnx_serving", "onnx_serving.py"),
    Job("conformal_coverage", "conformal_coverage.py"),
    Job("gpu_check", "gpu_check.py", needs_cuda=True),
]


def cuda_available():
    """Whether torch sees a CUDA GPU (asked in a subprocess: this one stays light)."""
    probe = "import torch; print(torch.cuda.is_available())"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return proc.stdout.strip() == "True"


def select(only):
    """The jobs named in ``only`` (comma-separated; all when empty), in the usual order."""
    if not only:
        return list(JOBS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {job.name for job in JOBS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose among {sorted(known)}")
    return [job for job in JOBS if job.name in names]


def run(job, mode, folder, has_cuda):
    """Run one job; its row of the summary: name, command, status, wall seconds."""
    output = folder / f"{job.name}.md"
    argv = job.argv(mode, output)
    shown = shlex.join(["python", *argv[1:]])
    if job.needs_cuda and not has_cuda:
        print(f"[run_all] {job.name}: skipped, no CUDA GPU here", flush=True)
        return [job.name, shown, "skipped (no CUDA GPU)", "–"]
    if not (HERE / job.script).exists():
        print(f"[run_all] {job.name}: {job.script} not found", flush=True)
        return [job.name, shown, "failed (script not found)", "–"]
    log = folder / "logs" / f"{job.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[run_all] {job.name}: {shown}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        status = subprocess.run(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    verdict = "ok" if status == 0 else f"failed (exit status {status}; see logs/{log.name})"
    print(f"[run_all] {job.name}: {verdict} in {wall:.0f} s", flush=True)
    return [job.name, shown, verdict, f"{wall:.0f}"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="small cases, within 10 minutes")
    group.add_argument("--smoke", action="store_true", help="smallest cases, seconds each")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument(
        "--output-dir",
        default=None,
        help="folder of the results (default: benchmarks/results, its quick/ with --quick, "
        "a temporary folder with --smoke)",
    )
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    jobs = select(args.only)
    if args.output_dir:
        folder = Path(args.output_dir)
    elif mode == "smoke":
        folder = Path(tempfile.mkdtemp(prefix="skhydra-bench-smoke-"))
    else:
        folder = HERE / "results" / ("quick" if mode == "quick" else "")
    if args.list:
        for job in jobs:
            note = "  # only where CUDA is present" if job.needs_cuda else ""
            print(shlex.join(["python", *job.argv(mode, folder / f"{job.name}.md")[1:]]) + note)
        return 0

    sys.path.insert(0, str(HERE))
    from _provenance import header, write_report

    start = time.perf_counter()
    has_cuda = cuda_available()
    folder.mkdir(parents=True, exist_ok=True)
    rows = [run(job, mode, folder, has_cuda) for job in jobs]
    failed = [r[0] for r in rows if r[2].startswith("failed")]
    lines = [
        "| benchmark | command | status | wall s |",
        "|---|---|---|---|",
        *(f"| {name} | `{cmd}` | {status} | {wall} |" for name, cmd, status, wall in rows),
    ]
    report = header(
        f"All benchmarks ({mode})",
        "benchmarks/run_all.py",
        argv,
        "each script's own (see its results file)",
        start,
    )
    summary = f"{len(rows) - len(failed)} of {len(rows)} ran or were skipped without error" + (
        f"; failed: {', '.join(failed)}" if failed else ""
    )
    record = folder / "run_all.md"
    if args.only:
        record = folder / "logs" / f"run_all_{'_'.join(job.name for job in jobs)}.md"
    write_report(record, report + "\n" + summary + ".\n\n" + "\n".join(lines))
    print(summary, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
