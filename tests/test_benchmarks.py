"""The benchmark scripts still run: each one's ``--smoke`` case, and run_all's listing.

Each script runs in this process through its ``main()`` (imported from
``benchmarks/``, with ``sys.argv`` set as on the command line), so torch and
skhydra are imported once; the report must start with a title and the
provenance block, and hold a markdown table.
"""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

#: Script -> extra arguments of its smoke test.
SMOKE = {
    "conformal_coverage.py": [],
    "cost.py": [],
    "digits_cnn.py": [],
    "digits_ood.py": [],
    "gpu_check.py": [],
    "onnx_serving.py": [],
    "scale.py": [],
    "scale_out.py": [],
    "tabular_fidelity.py": [],
    "transfer_ablations.py": [],
    "tree_ablations.py": [],
    "uci_regression.py": [],
}

PROVENANCE = [
    "- command: `python benchmarks/",
    "- commit: ",
    "- date (end of the run): ",
    "- versions: skhydra ",
    "- machine: ",
    "- seeds: ",
    "- wall time: ",
]


def load(script):
    """The benchmark script as a module (``benchmarks/`` importable for its helpers)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    name = "benchmark_" + script.removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def keep_threads():
    """The scripts set torch's threads: give the rest of the suite its setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def check_report(path, script):
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# "), lines[0]
    block = lines[2 : 2 + len(PROVENANCE)]
    for line, start in zip(block, PROVENANCE, strict=True):
        assert line.startswith(start), (line, start)
    assert f"benchmarks/{script} --smoke" in block[0]
    assert "\n|---" in text, "no markdown table in the report"
    # docs/benchmarks.md includes reports two levels down: one title, then "##" sections.
    headings = [line.split(" ")[0] for line in lines if line.startswith("#")]
    assert headings[0] == "#" and set(headings[1:]) <= {"##"}, headings
    return text


def run_main(module, script, args, monkeypatch):
    """``python benchmarks/<script> <args>``, in this process."""
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / script), *args])
    return module.main()


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_smoke_run_writes_a_report_with_provenance(script, tmp_path, keep_threads, monkeypatch):
    path = BENCHMARKS / script
    if not path.exists() or "--smoke" not in path.read_text():
        pytest.skip(f"benchmarks/{script} is not there yet, or has no --smoke case yet")
    module = load(script)
    output = tmp_path / "report.md"
    status = run_main(
        module, script, ["--smoke", *SMOKE[script], "--output", str(output)], monkeypatch
    )
    assert status in (None, 0)
    check_report(output, script)


def test_findings_call_a_difference_only_beyond_the_standard_error():
    stats = load("_stats.py")
    # means 1.0 and 1.1, standard errors 0.1 each: combined 0.141 > 0.1, within
    assert stats.compare([0.9, 1.1], [1.0, 1.2], lower_is_better=True)[0] == "within"
    verdict, diff, se = stats.compare([1.0, 1.0], [2.0, 2.0], lower_is_better=True)
    assert (verdict, diff, se) == ("better", -1.0, 0.0)
    assert stats.compare([1.0, 1.0], [2.0, 2.0], lower_is_better=False)[0] == "worse"
    assert stats.compare([1.0], [2.0], lower_is_better=True)[0] == "untested"
    assert stats.cell([None, float("nan")]) == "–"


def test_kd_choice_is_the_lowest_validation_score():
    kd = load("_kd.py")
    grid = kd.grid(True, {"a": (1, 2)}, (1.0, 4.0))
    assert grid == {
        "T=1, a epochs": {"n_heads": 1, "phase1_epochs": 1, "max_epochs": 2, "temperature": 1.0},
        "T=4, a epochs": {"n_heads": 1, "phase1_epochs": 1, "max_epochs": 2, "temperature": 4.0},
    }
    best, scores = kd.select(grid, lambda p: abs(p["temperature"] - 3.0))
    assert best == "T=4, a epochs" and scores == {"T=1, a epochs": 2.0, "T=4, a epochs": 1.0}
    assert "temperature" not in kd.grid(False, {"a": (1, 2)})["a epochs"]


def test_run_all_lists_every_results_file(capsys):
    run_all = load("run_all.py")
    assert run_all.main(["--quick", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == len(run_all.JOBS)
    for job, line in zip(run_all.JOBS, listed, strict=True):
        assert line.startswith(f"python benchmarks/{job.script} --quick")
        assert f"--output benchmarks/results/quick/{job.name}.md" in line
    assert "only where CUDA is present" in listed[-1]
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run_all.main(["--only", "digits_ood,nope", "--list"])


def test_run_all_records_status_and_wall_time(tmp_path, monkeypatch):
    run_all = load("run_all.py")
    # A stand-in repository: one script that writes its report, one that fails.
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "good.py").write_text(
        "import sys; open(sys.argv[sys.argv.index('--output') + 1], 'w').write('# ok')"
    )
    (tmp_path / "benchmarks" / "bad.py").write_text("raise SystemExit(3)")
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    monkeypatch.setattr(run_all, "HERE", tmp_path / "benchmarks")
    monkeypatch.setattr(run_all, "cuda_available", lambda: False)
    monkeypatch.setattr(
        run_all,
        "JOBS",
        [
            run_all.Job("good", "good.py"),
            run_all.Job("bad", "bad.py"),
            run_all.Job("gpu", "good.py", needs_cuda=True),
        ],
    )
    out = tmp_path / "out"
    assert run_all.main(["--smoke", "--output-dir", str(out)]) == 1
    assert (out / "good.md").read_text() == "# ok"
    summary = (out / "run_all.md").read_text()
    assert summary.startswith(
        "# All benchmarks (smoke)\n\n- command: `python benchmarks/run_all.py"
    )
    assert "2 of 3 ran or were skipped without error; failed: bad." in summary
    rows = [
        line
        for line in summary.splitlines()
        if line.startswith("| good") or line.startswith("| bad") or line.startswith("| gpu")
    ]
    assert rows[0].startswith("| good | `python benchmarks/good.py --smoke --output ")
    assert "| ok |" in rows[0]
    assert "| failed (exit status 3; see logs/bad.log) |" in rows[1]
    assert "| skipped (no CUDA GPU) | – |" in rows[2]
    # A run of some of them keeps the record of the last complete run.
    assert run_all.main(["--smoke", "--only", "good", "--output-dir", str(out)]) == 0
    assert (out / "run_all.md").read_text() == summary
    assert "1 of 1 ran" in (out / "logs" / "run_all_good.md").read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_check_smallest_real_checks_pass(tmp_path, keep_threads, monkeypatch):
    module = load("gpu_check.py")
    output = tmp_path / "gpu_check.md"
    assert run_main(module, "gpu_check.py", ["--quick", "--output", str(output)], monkeypatch) == 0
    text = output.read_text()
    assert "**FAIL**" not in text and "CPU STAND-IN" not in text


def test_fidelity_targets_reads_the_suite_and_checks_each_target(tmp_path, monkeypatch):
    targets = load("fidelity_targets.py")
    assert [targets.fit_budget(n) for n in (500, 1000, 5500, 10000)] == [15, 15, 37.5, 60]
    run = {"rho": 0.96, "rho_ood": 0.80, "ratio": 1.2, "fit_s": 20.0, "rows": 1000}
    regression = {**run, "rmse_ratio": 1.01, "cov_t": 0.95, "cov_s": 0.90, "fit_s": 10.0}
    # The reference teacher's correlations are context columns of the tasks that have them,
    # averaged over the splits that measured them.
    referenced = {**run, "rho_ref": 0.9, "rho_ood_ref": 0.7}
    entries = [
        {"table": "t", "teacher": "forest", "task": "classifier", "runs": [run, referenced]},
        {"table": "u", "teacher": "bagged_trees", "task": "regressor", "runs": [regression]},
    ]
    (tmp_path / "tabular_fidelity.json").write_text(__import__("json").dumps(entries))
    output = tmp_path / "fidelity_targets.md"
    run_main(targets, "fidelity_targets.py", ["--smoke", "--output", str(output)], monkeypatch)
    text = check_report(output, "fidelity_targets.py")
    assert "| t | forest | 1000 | 0.960 ✓ | 0.900 | 0.800 ✗ | 0.700 | 1.200 ✗ | 20.0 ✗ |" in text
    assert "| u | bagged_trees | 1000 | 0.960 ✓ | 0.800 ✗ | 1.200 ✗ | 1.010 ✓ | -0.050 ✗ |" in text
    assert "Met: rho 1 of 1; rho_ood 0 of 1; ratio 0 of 1; fit_s 0 of 1." in text
    # rho 0.96 against rho_ref 0.9: the reference misses the target, the student is above it.
    assert (
        "Reference teacher: rho_ref >= 0.95 in 0 of 1; the student's rho at most 0.05 below "
        "rho_ref (or above it) in 1 of 1." in text
    )
    assert text.count("Reference teacher:") == 1  # the regressors measured no reference
    with pytest.raises(SystemExit, match="not found"):
        run_main(
            targets, "fidelity_targets.py", ["--output", str(tmp_path / "x" / "r.md")], monkeypatch
        )
