"""Provenance of a benchmark run, written at the top of its results file."""

import os
import platform
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np
import sklearn
import torch

import skhydra

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: The first line of every provenance block: tests and ``run_all.py`` look for it.
MARKER = "- command: "


def _git_state():
    """(short commit, whether skhydra/ or benchmarks/ has uncommitted changes)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        # Pathspecs are relative to the working directory: run from the repository root.
        # Results and logs are what runs write, not code: a run (or run_all, which
        # writes each script's log first) does not make the next run's code "changed".
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--",
                "skhydra",
                "benchmarks",
                ":(exclude)benchmarks/results",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout.strip()
    except OSError:
        return "unknown", False
    return commit or "unknown", bool(dirty)


#: The code a run executes is the code it imported: the state when the run started.
COMMIT, DIRTY = _git_state()


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return cpu


def provenance(script, argv, seeds, start, extra=()):
    """Markdown lines: command, commit, date, versions, machine, seeds and wall time.

    ``extra`` lines (already formatted, without the leading ``- ``) follow.
    """
    commit, dirty = COMMIT, DIRTY
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    lines = [
        f"{MARKER}`{shlex.join(['python', script, *argv])}`",
        f"- commit: {commit}{' (with uncommitted changes)' if dirty else ''}",
        f"- date (end of the run): {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- versions: skhydra {skhydra.__version__}, scikit-learn {sklearn.__version__}, "
        f"torch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores, {gpu}, "
        f"torch threads {torch.get_num_threads()}",
        f"- seeds: {seeds}",
        f"- wall time: {time.perf_counter() - start:.0f} s",
    ]
    return "\n".join(lines + [f"- {line}" for line in extra])


def header(title, script, argv, seeds, start, extra=()):
    """The start of a results file: a title, then the provenance lines."""
    return f"# {title}\n\n{provenance(script, argv, seeds, start, extra)}\n"


def write_report(path, text):
    """Write ``text`` to ``path`` (its folder created), ending with one newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")
    print(f"wrote {path}", flush=True)


def table(header, rows):
    """A markdown table: a header row, then ``rows`` (cells printed with ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
