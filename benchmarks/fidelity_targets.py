"""The tabular fidelity suite's results against the targets of issue 12, met or not.

Reads the JSON that ``tabular_fidelity.py`` writes beside its report (by
default ``tabular_fidelity.json`` in the folder of ``--output``) and writes,
per table and teacher, the mean over its splits of each figure the issue sets
a target for, with whether the target is met:

- every teacher (target 2): Spearman ``rho >= 0.95`` on the held-out and
  out-of-distribution rows together, ``rho_ood >= 0.85`` on the latter
  alone, and the student's mean epistemic uncertainty over the teacher's
  (``ratio``) between 0.9 and 1.1;
- regressors (target 3): the student's RMSE at most 2% above the teacher's
  (``rmse_ratio <= 1.02``) and the coverage of the 95% interval within 0.02
  of the teacher's (``|cov_s - cov_t| <= 0.02``), with the same ``rho`` and
  ``ratio`` targets;
- fit time (target 4): 15 s for a 1,000-row table and 60 s for a 10,000-row
  table; a table of ``n`` rows gets the straight line through those two
  points (15 s below 1,000 rows). The suite fits with one torch thread.

Where the suite measured them, ``rho_ref`` and ``rho_ood_ref`` follow
``rho`` and ``rho_ood`` as context, with no target: the same correlations for
a second teacher of the same kind fitted with another seed, how reproducible
the teacher's own ranking is. A line under each table counts the teachers whose
reference meets the ``rho`` target, and the students within 0.05 of their
reference.

With ``--before`` (another run's JSON, e.g. ``tabular_fidelity_previous.json``),
each figure is shown as ``before → after``. No figure is typed here: each is
read from the JSON, and the provenance of the run that wrote it is copied
from the report beside it.

    python benchmarks/fidelity_targets.py \\
        --before benchmarks/results/tabular_fidelity_previous.json \\
        --output benchmarks/results/fidelity_targets.md
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _provenance import header, table, write_report  # noqa: E402

#: figure -> (test, the target in words); the tests take the mean over splits.
CHECKS = {
    "rho": (lambda v: v >= 0.95, ">= 0.95"),
    "rho_ood": (lambda v: v >= 0.85, ">= 0.85"),
    "ratio": (lambda v: 0.9 <= v <= 1.1, "0.9 to 1.1"),
    "rmse_ratio": (lambda v: v <= 1.02, "<= 1.02"),
    "cov_gap": (lambda v: abs(v) <= 0.02, "|gap| <= 0.02"),
}
#: figure -> its context column (no target), shown when the results have it.
CONTEXT = {"rho": "rho_ref", "rho_ood": "rho_ood_ref"}
FIGURES = {
    "classifier": ["rho", "rho_ood", "ratio", "fit_s"],
    "regressor": ["rho", "rho_ood", "ratio", "rmse_ratio", "cov_gap", "fit_s"],
}


def fit_budget(rows):
    """Seconds allowed to fit on ``rows`` rows: 15 at 1,000, 60 at 10,000, linear between."""
    return 15.0 + 45.0 * max(rows - 1000, 0) / 9000


def means(entry):
    """Mean over the splits of each figure of one table and teacher, with the coverage gap."""
    runs = entry["runs"]
    keys = dict.fromkeys(key for r in runs for key in r if key != "head_matching")
    out = {key: float(np.mean([r[key] for r in runs if key in r])) for key in keys}
    if "cov_s" in out:
        out["cov_gap"] = out["cov_s"] - out["cov_t"]
    return out


def verdict(key, value, rows):
    """Whether ``value`` of figure ``key`` meets its target."""
    if key == "fit_s":
        return value <= fit_budget(rows)
    return CHECKS[key][0](value)


def table_markdown(task, entries, before):
    figures = FIGURES[task]
    context = {
        key: CONTEXT[key]
        for key in figures
        if key in CONTEXT and any(CONTEXT[key] in run for e in entries for run in e["runs"])
    }
    rows = []
    met = {key: 0 for key in figures}
    for entry in entries:
        now = means(entry)
        old = before.get((entry["table"], entry["teacher"]))
        cells = []
        for key in figures:
            ok = verdict(key, now[key], now["rows"])
            met[key] += ok
            fmt = "{:.1f}" if key == "fit_s" else "{:.3f}"
            value = fmt.format(now[key])
            if old is not None and key in old:
                value = fmt.format(old[key]) + " → " + value
            cells.append(f"{value} {'✓' if ok else '✗'}")
            if key in context:
                cells.append(f"{now[context[key]]:.3f}" if context[key] in now else "–")
        rows.append([entry["table"], entry["teacher"], f"{now['rows']:.0f}", *cells])
    targets = [
        "fit_s: 15 s at 1,000 rows, 60 s at 10,000"
        if key == "fit_s"
        else f"{key}: {CHECKS[key][1]}"
        for key in figures
    ]
    summary = "; ".join(f"{key} {met[key]} of {len(entries)}" for key in figures)
    columns = [c for key in figures for c in ([key, context[key]] if key in context else [key])]
    grid = table(["table", "teacher", "rows", *columns], rows)
    text = grid + f"\nTargets: {'; '.join(targets)}.\n\nMet: {summary}.\n"
    if "rho" in context:
        text += "\n" + reference_summary([means(e) for e in entries]) + "\n"
    return text


def reference_summary(rows, near=0.05):
    """How often the reference teacher meets the rho target, and the student comes near it."""
    measured = [r for r in rows if "rho_ref" in r]
    reached = sum(CHECKS["rho"][0](r["rho_ref"]) for r in measured)
    close = sum(r["rho"] >= r["rho_ref"] - near for r in measured)
    return (
        f"Reference teacher: rho_ref {CHECKS['rho'][1]} in {reached} of {len(measured)}; "
        f"the student's rho at most {near} below rho_ref (or above it) in {close} of "
        f"{len(measured)}."
    )


def source_provenance(results):
    """Who wrote ``results``: the command, commit, date and machine lines of the report beside it."""
    report = Path(results).with_suffix(".md")
    if not report.exists():
        return f"{Path(results).name} (no report beside it)"
    fields = {}
    for line in report.read_text().splitlines():
        for key in ("command", "commit", "date (end of the run)", "machine"):
            if line.startswith(f"- {key}: ") and key not in fields:
                fields[key] = line.split(": ", 1)[1]
    return f"{Path(results).name}, from {report.name}: " + "; ".join(
        f"{key} {value}" for key, value in fields.items()
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", default=None, help="the suite's JSON (default: beside --output)"
    )
    parser.add_argument("--before", default=None, help="an earlier run's JSON to compare with")
    parser.add_argument("--quick", action="store_true", help="the same: it only reads files")
    parser.add_argument("--smoke", action="store_true", help="the same: it only reads files")
    parser.add_argument("--output", default=None, help="markdown report (default: results/)")
    args = parser.parse_args(argv)
    output = Path(args.output) if args.output else HERE / "results" / "fidelity_targets.md"
    results = Path(args.results) if args.results else output.parent / "tabular_fidelity.json"
    if not results.exists():
        raise SystemExit(f"{results} not found: run benchmarks/tabular_fidelity.py first")
    start = time.perf_counter()
    entries = json.loads(results.read_text())
    before = {}
    if args.before:
        earlier = json.loads(Path(args.before).read_text())
        before = {(e["table"], e["teacher"]): means(e) for e in earlier}
    extra = [f"results: {source_provenance(results)}"]
    if args.before:
        extra.append(f"before: {source_provenance(args.before)}")
    lines = [
        header(
            "Tabular fidelity against the targets of issue 12",
            "benchmarks/fidelity_targets.py",
            sys.argv[1:] if argv is None else argv,
            "those of the results",
            start,
            extra=extra,
        ),
        "Means over the splits; ✓ met, ✗ not met"
        + (" (the target is checked on the second figure)." if before else "."),
        "",
    ]
    for task in ("classifier", "regressor"):
        rows = [e for e in entries if e["task"] == task]
        if rows:
            lines += [f"## {task}s", "", table_markdown(task, rows, before)]
    report = "\n".join(lines)
    print(report)
    write_report(output, report)


if __name__ == "__main__":
    main()
