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


def provenance(script, argv, seeds, start):
    """Markdown lines: command, commit, date, versions, machine, seeds and wall time."""
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
        commit, dirty = "unknown", ""
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
            f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- versions: skhydra {skhydra.__version__}, scikit-learn {sklearn.__version__}, "
            f"torch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}",
            f"- machine: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
            f"- seeds: {seeds}",
            f"- wall time: {time.perf_counter() - start:.0f} s",
        ]
    )
