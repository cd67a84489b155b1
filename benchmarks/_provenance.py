"""Provenance of a benchmark run, written at the top of its results file."""

import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import sklearn
import torch

import skhydra

HERE = Path(__file__).resolve().parent


def _git_state():
    """(short commit, whether skhydra/ or benchmarks/ has uncommitted changes)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "skhydra", "benchmarks"],
            capture_output=True,
            text=True,
            cwd=HERE,
        ).stdout.strip()
    except OSError:
        return "unknown", False
    return commit or "unknown", bool(dirty)


#: The code a run executes is the code it imported: the state when the run started.
COMMIT, DIRTY = _git_state()


def provenance(script, argv, seeds, start):
    """Markdown lines: command, commit, date, versions, machine, seeds and wall time."""
    commit, dirty = COMMIT, DIRTY
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return "\n".join(
        [
            f"- command: `python {script} {' '.join(argv)}`".rstrip(),
            f"- commit: {commit}{' (with uncommitted changes)' if dirty else ''}",
            f"- date (end of the run): {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- versions: skhydra {skhydra.__version__}, scikit-learn {sklearn.__version__}, "
            f"torch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}",
            f"- machine: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
            f"- seeds: {seeds}",
            f"- wall time: {time.perf_counter() - start:.0f} s",
        ]
    )
