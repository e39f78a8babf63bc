"""Optional TensorBoard logging of the training curves: ``ltbench run --tensorboard``.

Each job writes TensorBoard event files to ``<study>/tensorboard/<job>/`` from the progress
messages it already sends (:mod:`ltbench.progress`), so the training loop does nothing extra:

* ``running/loss``, ``running/adv_acc``, ``running/images_per_s`` — the running values of the
  epoch so far, each time the job reports (about once a second), by global batch number;
* ``epoch/loss``, ``epoch/adv_acc``, ``epoch/lr``, ``epoch/time_s``, ``epoch/images_per_s`` —
  once per epoch, by epoch (1-based).

Watch a running study with ``tensorboard --logdir <study>/tensorboard``. The ``tensorboard``
package is an optional extra (``pip install 'ltbench[tensorboard]'``). The runner passes the
folder to its workers (local processes and Slurm tasks alike) in the environment variable
:data:`ENV`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from ltbench.errors import LtbenchError

ENV = "LTBENCH_TENSORBOARD"
FOLDER = "tensorboard"


def check_available() -> None:
    """Raise a one-line error unless TensorBoard's writer can be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise LtbenchError("--tensorboard needs the tensorboard package: pip install 'ltbench[tensorboard]' "
                           "(or pip install tensorboard)") from None


def enable(study_root: Path) -> Path:
    """Turn logging on for the jobs this process starts; returns the log folder."""
    check_available()
    folder = (Path(study_root) / FOLDER).resolve()
    os.environ[ENV] = str(folder)
    return folder


class TensorBoardLogger:
    """Writes one job's progress messages as TensorBoard scalars, then forwards them."""

    def __init__(self, logdir: Path, forward: Optional[Callable] = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(logdir))
        self.forward = forward

    def __call__(self, msg) -> None:
        if isinstance(msg, dict):
            kind = msg.get("kind")
            if kind == "batch":
                step = (msg["epoch"] - 1) * msg["batches"] + msg["batch"]
                for tag, key in (("running/loss", "loss"), ("running/adv_acc", "acc"),
                                 ("running/images_per_s", "images_per_s")):
                    self.writer.add_scalar(tag, msg[key], step)
            elif kind == "epoch":
                for tag, key in (("epoch/loss", "loss"), ("epoch/adv_acc", "acc"), ("epoch/lr", "lr"),
                                 ("epoch/time_s", "time_s"), ("epoch/images_per_s", "images_per_s")):
                    self.writer.add_scalar(tag, msg[key], msg["epoch"])
                self.writer.flush()
        if self.forward is not None:
            self.forward(msg)

    def close(self) -> None:
        self.writer.close()


def logger_for(job_name: str, forward: Optional[Callable] = None) -> Optional[TensorBoardLogger]:
    """A logger for ``job_name`` when the runner turned TensorBoard on (:data:`ENV`), else None."""
    folder = os.environ.get(ENV)
    return TensorBoardLogger(Path(folder) / job_name, forward) if folder else None
