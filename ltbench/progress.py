"""Progress messages: what a running job reports, as a line for people and as numbers for tools.

A progress callback (``Callable[[str | dict], None]``) receives either a plain string (the
evaluation's phases, e.g. ``"eval pgd20 batch 3/8"``) or a dict with a ``text`` line and numbers:

* ``kind="batch"`` (training, every few batches): ``epoch`` (1-based), ``epochs``, ``batch``,
  ``batches``, ``loss`` and ``acc`` (running mean loss and accuracy on the training adversarial
  examples over the epoch so far), ``images_per_s``, ``eta_s`` (this job's remaining training
  time), ``done`` (fraction of the job's training done);
* ``kind="epoch"`` (once per epoch, after its checkpoint): the epoch's ``loss``, ``acc``, ``lr``,
  ``time_s``, ``images_per_s``, ``done`` and ``eta_s``.

The training loop builds these from its device accumulators only when it reports (so the
step itself never waits for the device); see :meth:`ltbench.engine.train.Trainer.report_batch`.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Optional, Union

Message = Union[str, dict]


def text(msg: Message) -> str:
    """The human line of a progress message."""
    return msg.get("text", "") if isinstance(msg, dict) else str(msg)


def fmt_duration(seconds: Optional[float]) -> str:
    """``42s``, ``3m05s``, ``2h07m``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def batch_message(epoch: int, epochs: int, batch: int, batches: int, loss: float, acc: float,
                  images_per_s: float, eta_s: Optional[float], done: float) -> dict:
    """A training progress message (see the module docstring); ``epoch`` and ``batch`` 1-based."""
    line = (f"epoch {epoch}/{epochs} batch {batch}/{batches} loss {loss:.4f} AE acc {100 * acc:.1f}% "
            f"{images_per_s:,.0f} img/s ETA {fmt_duration(eta_s)}")
    return {"kind": "batch", "text": line, "epoch": epoch, "epochs": epochs, "batch": batch, "batches": batches,
            "loss": loss, "acc": acc, "images_per_s": images_per_s, "eta_s": eta_s, "done": done}


def epoch_message(record: dict, epochs: int, done: float, eta_s: Optional[float]) -> dict:
    """The end-of-epoch message from a ``metrics.jsonl`` record (``epoch`` 0-based there)."""
    e = int(record["epoch"]) + 1
    line = (f"epoch {e}/{epochs} done: loss {record['loss']:.4f} AE acc {100 * record['train_adv_acc']:.1f}% "
            f"lr {record['lr']:g} time {record['time_s']:.1f}s ({record['images_per_s']:,.0f} img/s)"
            + (f" ETA {fmt_duration(eta_s)}" if e < epochs else ""))
    return {"kind": "epoch", "text": line, "epoch": e, "epochs": epochs, "loss": record["loss"],
            "acc": record["train_adv_acc"], "lr": record["lr"], "time_s": record["time_s"],
            "images_per_s": record["images_per_s"], "done": done, "eta_s": eta_s}


def phase(msg: Message) -> str:
    """What a message is about, without its counters: ``epoch 2/5``, ``eval pgd20``."""
    if isinstance(msg, dict):
        return f"epoch {msg.get('epoch')}/{msg.get('epochs')}"
    return str(msg).split(" batch ")[0]


class LinePrinter:
    """Prints progress to a stream: on a terminal one line rewritten in place; elsewhere (a log
    file, CI) plain lines, no control characters: the first message of each phase, then at most
    one every ``period_s`` seconds."""

    def __init__(self, stream=None, period_s: float = 30.0):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.period_s = period_s
        self.last_phase: Optional[str] = None
        self.last_print = -math.inf
        self.dirty = False

    def __call__(self, msg: Message) -> None:
        line = text(msg)
        if self.tty:
            self.stream.write(f"\r{line}\033[K")
            self.dirty = True
        else:
            now = time.monotonic()
            if phase(msg) == self.last_phase and now - self.last_print < self.period_s:
                return
            self.last_phase, self.last_print = phase(msg), now
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the rewritten line (terminal only)."""
        if self.tty and self.dirty:
            self.stream.write("\n")
            self.stream.flush()
            self.dirty = False
