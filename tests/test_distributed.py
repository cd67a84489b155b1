"""Training on several processes: two CPU processes launched by torchrun and by accelerate.

The launched script, ``tests/distributed/ddp_fit.py``, fits the same small student
in every process with ``accelerator=Accelerator(cpu=True)`` (DistributedDataParallel
over gloo on the loopback) and records each process's batches, history, weights and
predictions; the tests here compare the two processes' records. One test, without
launching anything, shows what Accelerate does with an epoch that does not split
evenly.
"""

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import skhydra
from skhydra._data import TransferDataset, batch_loader

accelerate = pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "distributed" / "ddp_fit.py"
LAUNCH_TIMEOUT = 240


def _load_script():
    spec = importlib.util.spec_from_file_location("ddp_fit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ddp_fit = _load_script()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(launcher, port):
    if launcher == "torchrun":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
        ]
    # accelerate launch --cpu starts a single process unless given an MPI hostfile;
    # --multi_gpu starts torchrun's processes, which the script's Accelerator(cpu=True)
    # joins over gloo.
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        "--main_process_ip=127.0.0.1",
        f"--main_process_port={port}",
    ]


def _launch(launcher, out, *script_args):
    """Run ddp_fit.py on two local CPU processes; the finished process."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        # The script imports skhydra from this tree, whatever the working directory.
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        # No accelerate config file of the user's: the flags say everything.
        HF_HOME=str(out / "hf_home"),
    )
    command = _command(launcher, _free_port()) + [str(SCRIPT), str(out), *script_args]
    return subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT
    )


@pytest.fixture(scope="module", params=["torchrun", "accelerate"])
def launched(request, tmp_path_factory):
    """The records of both processes of one launch of ddp_fit.py."""
    out = tmp_path_factory.mktemp(f"ddp_{request.param}")
    result = _launch(request.param, out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    records = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    return {
        "out": out,
        "stdout": result.stdout,
        "records": records,
        "weights": [torch.load(out / f"weights{rank}.pt") for rank in (0, 1)],
        "proba": [np.load(out / f"proba{rank}.npy") for rank in (0, 1)],
    }


def _epoch_rows(record, training):
    """{epoch: list of the row numbers of its batches} of one process."""
    rows = {}
    for batch in record["batches"]:
        if batch["training"] == training:
            rows.setdefault(batch["epoch"], []).extend(batch["rows"])
    return rows


@pytest.mark.scaleout
def test_two_processes_trained(launched):
    records = launched["records"]
    assert [r["rank"] for r in records] == [0, 1]
    assert all(r["world_size"] == 2 for r in records)
    assert all(r["net_device"] == "cpu" for r in records)


@pytest.mark.scaleout
def test_each_process_trains_on_its_own_shard_of_every_epoch(launched):
    r0, r1 = launched["records"]
    valid0, valid1 = _epoch_rows(r0, training=False), _epoch_rows(r1, training=False)
    train0, train1 = _epoch_rows(r0, training=True), _epoch_rows(r1, training=True)
    # Both processes validate on all the validation rows.
    valid = set(valid0[1])
    n_valid = int(ddp_fit.VALIDATION_FRACTION * ddp_fit.N_ROWS)
    assert len(valid) == len(valid0[1]) == n_valid
    assert all(sorted(rows) == sorted(valid) for rows in [*valid0.values(), *valid1.values()])
    training = set(range(ddp_fit.N_ROWS)) - valid
    # No batch is padded with these sizes (see ddp_fit.N_ROWS), so the shards are exact.
    assert len(training) % (2 * ddp_fit.BATCH_SIZE) == 0
    assert train0.keys() == train1.keys() == valid0.keys()
    for epoch in train0:
        rows0, rows1 = train0[epoch], train1[epoch]
        assert len(rows0) == len(set(rows0)) == len(training) // 2
        assert len(rows1) == len(set(rows1)) == len(training) // 2
        assert set(rows0).isdisjoint(rows1)
        assert set(rows0) | set(rows1) == training
    # A new shuffle every epoch, the same on both processes.
    assert len({frozenset(rows) for rows in train0.values()}) == len(train0)


@pytest.mark.scaleout
def test_gradients_are_synchronised(launched):
    weights0, weights1 = launched["weights"]
    assert weights0.keys() == weights1.keys()
    assert all(torch.equal(weights0[k], weights1[k]) for k in weights0)
    # ... although each process's training loss is over its own shard.
    r0, r1 = launched["records"]
    assert [h["train_loss"] for h in r0["history"]] != [h["train_loss"] for h in r1["history"]]


@pytest.mark.scaleout
def test_early_stopping_decides_the_same_epochs(launched):
    r0, r1 = launched["records"]
    ends = r0["phase_ends"]
    assert r1["phase_ends"] == ends
    # Early stopping ended both phases before their last epoch.
    assert ends[0] < ddp_fit.PARAMS["phase1_epochs"]
    assert ends[1] < ends[0] + ddp_fit.PARAMS["max_epochs"] - ddp_fit.PARAMS["phase1_epochs"]
    for key in ("epoch", "valid_loss", "valid_loss_best"):
        assert [h[key] for h in r0["history"]] == [h[key] for h in r1["history"]]
    assert len(r0["history"]) == ends[1]
    # The best epoch was restored on both: their predictions agree exactly.
    np.testing.assert_array_equal(*launched["proba"])


@pytest.mark.scaleout
def test_only_the_main_process_prints(launched):
    out = launched["stdout"]
    assert out.count("Phase 1: body and one head") == 1
    assert out.count("Phase 2: body and") == 1
    assert out.count("Stopping since valid_loss has not improved") == 2


@pytest.mark.scaleout
def test_saved_student_predicts_in_one_process(launched):
    X = np.load(launched["out"] / "X.npy")
    student = skhydra.load(launched["out"] / "student.skhydra")
    proba = student.predict_proba(X)
    assert proba.shape == (ddp_fit.N_ROWS, 3)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba, launched["proba"][0], rtol=1e-6, atol=1e-7)


def test_uneven_epoch_is_padded_with_its_first_rows():
    """What Accelerate does when an epoch's batches do not split evenly.

    10 rows in batches of 3 make 4 batches, the last of 1 row. With
    ``even_batches=True`` (Accelerate's default) each of 2 processes gets 2
    full batches: the last batch is completed with the epoch's first rows, so 2
    rows are trained on twice in that epoch; every row is still trained on.
    """
    from accelerate.data_loader import prepare_data_loader
    from accelerate.state import AcceleratorState

    n_rows, batch_size = 10, 3
    dataset = TransferDataset(np.arange(n_rows, dtype=np.float32)[:, None], {"t": np.zeros(n_rows)})
    shards = []
    try:
        for rank in (0, 1):
            # The generator seeded alike on both, as the estimators do from random_state.
            loader = batch_loader(
                dataset, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
            )
            sharded = prepare_data_loader(
                loader, num_processes=2, process_index=rank, rng_types=None, put_on_device=False
            )
            shards.append([X[:, 0].int().tolist() for X, _ in sharded])
    finally:
        # prepare_data_loader sets the process-wide state: leave none behind.
        AcceleratorState._reset_state(reset_partial_state=True)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(0)).tolist()
    assert all(len(batch) == batch_size for shard in shards for batch in shard)
    assert [len(shard) for shard in shards] == [2, 2]
    seen = [row for shard in shards for batch in shard for row in batch]
    padding = 2 * math.ceil(math.ceil(n_rows / batch_size) / 2) * batch_size - n_rows
    assert len(seen) == n_rows + padding == 12
    assert set(seen) == set(range(n_rows))
    twice = sorted(row for row in set(seen) if seen.count(row) == 2)
    assert twice == sorted(order[:padding])


@pytest.mark.scaleout
def test_unseeded_processes_refuse_to_train(tmp_path):
    # Each process would draw its own validation split and synthetic rows, stop
    # early at its own epoch and leave the other waiting: they refuse together.
    result = _launch("torchrun", tmp_path, "--unseeded")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "do not fit the same transfer set" in output
    assert "set random_state to an int" in output
    assert not list(tmp_path.glob("rank*.json"))


@pytest.mark.scaleout
@pytest.mark.skipif(torch.cuda.is_available(), reason="Accelerator() uses the GPUs")
def test_accelerator_that_does_not_join_the_launch_warns(tmp_path):
    # Without GPUs, Accelerator() without cpu=True runs each process on its own.
    result = _launch("torchrun", tmp_path, "--without-cpu-flag")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert result.stderr.count("pass Accelerator(cpu=True)") == 2
    records = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in records] == [1, 1]
