"""Fit a small student in every process of a distributed launch, and record what each did.

Not a test module: ``tests/test_distributed.py`` launches it on two CPU processes with::

    torchrun --nproc_per_node 2 tests/distributed/ddp_fit.py OUT_DIR

and with ``accelerate launch --multi_gpu --num_processes 2 --num_machines 1
--mixed_precision no --dynamo_backend no ...`` (``accelerate launch --cpu`` starts a
single process unless given an MPI hostfile; ``--multi_gpu`` starts torchrun's
processes, which ``Accelerator(cpu=True)`` joins over gloo). After ``OUT_DIR``,
``--unseeded`` fits with ``random_state=None`` and ``--without-cpu-flag`` with
``Accelerator()`` instead of ``Accelerator(cpu=True)``.

Each process writes to ``OUT_DIR``: ``rank<r>.json`` (the input rows of every
training and validation batch, as row numbers of ``X``; where each phase ended;
the history; the fit's duration), ``weights<r>.pt`` (the student's ``state_dict``)
and ``proba<r>.npy`` (its ``predict_proba`` on ``X``). Rank 0 also saves the
student with :func:`skhydra.dump` to ``student.skhydra``, and ``X.npy``.
"""

import json
import os
import sys
import time
from pathlib import Path

#: Rows of X; with ``VALIDATION_FRACTION`` and ``BATCH_SIZE``, 320 training rows make
#: 10 batches, 5 per process: no batch is padded, so the shards are exactly disjoint.
N_ROWS = 400
VALIDATION_FRACTION = 0.2
BATCH_SIZE = 32
PARAMS = dict(
    body_layer_sizes=(16,),
    phase1_epochs=15,
    max_epochs=40,
    batch_size=BATCH_SIZE,
    lr=0.03,
    augmentation=None,
    early_stopping=True,
    validation_fraction=VALIDATION_FRACTION,
    n_iter_no_change=2,
    verbose=1,
)

#: Batches seen by the recorder in this process: the callback is copied for each
#: phase, so it appends here rather than to itself.
BATCHES = []
PHASE_ENDS = []


def data():
    """Rows that are all distinct (so that an input row names its row number), and labels."""
    import numpy as np
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=N_ROWS, n_features=8, n_informative=5, n_classes=3, random_state=0
    )
    return X.astype(np.float32), y


def recorder(X):
    """A skorch callback appending each batch's row numbers of ``X`` to ``BATCHES``."""
    from skorch.callbacks import Callback

    row_of = {row.tobytes(): i for i, row in enumerate(X)}

    class RowRecorder(Callback):
        def on_batch_begin(self, net, batch=None, training=None, **kwargs):
            inputs = batch[0].detach().cpu().numpy()
            rows = [row_of[row.tobytes()] for row in inputs]
            BATCHES.append({"epoch": len(net.history), "training": training, "rows": rows})

        def on_train_end(self, net, **kwargs):
            PHASE_ENDS.append(len(net.history))

    return RowRecorder()


def main(out, random_state=0, cpu=True):
    import numpy as np
    import torch
    from accelerate import Accelerator
    from sklearn.ensemble import RandomForestClassifier

    import skhydra

    torch.set_num_threads(1)
    out = Path(out)
    accelerator = Accelerator(cpu=cpu)
    # The launcher's rank: an Accelerator() that does not join the others calls itself 0.
    rank = int(os.environ.get("RANK", accelerator.process_index))
    X, y = data()
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    hydra = skhydra.HydraDistilledClassifier(
        forest,
        accelerator=accelerator,
        callbacks=[recorder(X)],
        random_state=random_state,
        **PARAMS,
    )
    start = time.perf_counter()
    hydra.fit(X)
    seconds = time.perf_counter() - start
    torch.save(hydra.net_.module_.state_dict(), out / f"weights{rank}.pt")
    np.save(out / f"proba{rank}.npy", hydra.predict_proba(X))
    history = [
        {k: v for k, v in row.items() if k != "dur" and not k.startswith("batches")}
        for row in hydra.net_.history
    ]
    record = {
        "rank": rank,
        "world_size": accelerator.num_processes,
        "batches": BATCHES,
        "phase_ends": PHASE_ENDS,
        "history": history,
        "fit_seconds": seconds,
        "device": str(hydra.device_),
        "net_device": str(next(hydra.net_.module_.parameters()).device),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    if rank == 0:
        np.save(out / "X.npy", X)
        skhydra.dump(hydra, out / "student.skhydra")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    options = sys.argv[2:]
    # --unseeded: random_state=None, which the processes must refuse together.
    # --without-cpu-flag: Accelerator() rather than Accelerator(cpu=True).
    main(
        sys.argv[1],
        random_state=None if "--unseeded" in options else 0,
        cpu="--without-cpu-flag" not in options,
    )
