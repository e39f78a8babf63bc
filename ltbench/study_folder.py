"""The study-folder contract: file names, the job-name format, job states, run outcomes, and the
readers and writers of a job's ``config.json``, ``result.json`` and ``metrics.jsonl``.

Every other module names a study's files through this one (DESIGN.md "The study folder")::

    STUDY/                              a study
      study.json  .study.lock           the grid and every job's configuration; its lock
      METHOD__DATASET__rRATIO__sSEED/   a job folder (job_name / parse_job_name)
        config.json                     the job's configuration (JobConfig.to_dict)
        lt_indices.json                 the long-tailed split (indices and class counts)
        metrics.jsonl                   one JSON object per finished epoch, epoch 0 first
        checkpoint.pt  best.pt  eval_weights.pt
        result.json                     written last, atomically: the job is done
        failed.json  error.txt          the failure record and its traceback
        running.json  progress.txt  progress.json  log.txt  .lock  slurm.json
        aa_state.json                   AutoAttack's finished chunks (state_file_name)
      report.html  summary.csv …        what `ltbench report STUDY` writes beside the jobs

A job's state (:class:`JobState`) is read from these files; a run of a job ends with an
:class:`Outcome`. Both are ``str`` enums: they compare equal to, and serialise as, their strings.

Versions: ``config.json``, ``result.json`` and every ``metrics.jsonl`` record carry ``"format"``
(:data:`FORMATS`); a file or record without the field (written before the field existed) is format
1, the same layout. A format newer than this ltbench reads is a one-line :class:`LtbenchError`
("upgrade ltbench"), never read as damaged and never rewritten. Otherwise readers treat every file as
untrusted: a damaged one reads as None (or raises :class:`ValueError` saying why, for
:func:`load_result`), never as valid. :class:`ConfigRecord`, :class:`EpochRecord` and
:class:`ResultRecord` type the records.
"""
from __future__ import annotations

import enum
import errno
import fcntl
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional, TypedDict

from ltbench.errors import LtbenchError
from ltbench.io import append_jsonl, read_json_object, read_jsonl_records, write_json, write_text

# --- file names ---------------------------------------------------------------------------------
STUDY = "study.json"
STUDY_LOCK = ".study.lock"

CONFIG = "config.json"
SPLIT = "lt_indices.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
EVAL_WEIGHTS = "eval_weights.pt"  # the weights evaluated when the method supplies its own (CFA's FAWA)
RESULT = "result.json"
FAILED = "failed.json"
ERROR = "error.txt"
RUNNING = "running.json"
PROGRESS = "progress.txt"
PROGRESS_JSON = "progress.json"
LOG = "log.txt"
LOCK = ".lock"
SUBMITTED = "slurm.json"  # the Slurm task id the job was last submitted as

REPORT_PAGE = "report.html"  # what `ltbench report STUDY` writes into the study folder

ERROR_FILES = (FAILED, ERROR)


def state_file_name(attack: str) -> str:
    """Where an AutoAttack run keeps its progress in the job folder: ``aa`` → ``aa_state.json``."""
    return attack.replace("@", "_at_").replace("/", "_") + "_state.json"


# Files whose presence makes a folder a job folder, whatever its name.
JOB_FILES = (RESULT, CONFIG, METRICS, SPLIT) + ERROR_FILES

# The layout version of each versioned file (of each record, for metrics.jsonl); a file or record
# without a "format" field is format 1. Raise a number when its layout changes incompatibly.
CONFIG_FORMAT = 1
METRICS_FORMAT = 1
RESULT_FORMAT = 1
FORMATS = {CONFIG: CONFIG_FORMAT, METRICS: METRICS_FORMAT, RESULT: RESULT_FORMAT}


class ConfigRecord(TypedDict, total=False):
    """``config.json``: :meth:`ltbench.config.JobConfig.to_dict` (every field of the job) and its format."""

    format: int
    method: str
    label: Optional[str]
    dataset: str
    ratio: float
    seed: int
    model: str
    epochs: int


class EpochRecord(TypedDict, total=False):
    """One ``metrics.jsonl`` line: a finished epoch's training measurements."""

    format: int
    epoch: int                 # 0-based
    loss: float                # mean training loss
    train_adv_acc: float       # accuracy on the epoch's training AEs
    lr: float
    time_s: float
    images_per_s: float
    adv_pred_hist: list        # labels predicted on the training AEs, per class
    select_acc: float          # the best-epoch criterion, from ``select_from`` on


class ResultRecord(TypedDict, total=False):
    """``result.json``: written last; its presence makes the job done."""

    format: int
    config: dict               # ConfigRecord
    env: dict                  # versions, device, commit
    dataset: dict              # class names, train / test counts
    metrics: dict              # attack → accuracy record (overall, per_class, head, medium, tail, worst, n, …)
    checks: dict               # gradient-masking checks
    warnings: list
    selection: Optional[dict]  # the selected epoch, when one was selected
    timing: dict               # train_s (this run), epochs_s (all epochs, across resumes), resumed_at_epoch, eval_s


class _StrEnum(str, enum.Enum):
    """An enum whose members are their strings: ``str()``, f-strings and JSON give the value, and a
    member and its string are the same dictionary key."""

    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__


class JobState(_StrEnum):
    """A job's state in a study, as ``ltbench status`` and the report show it."""

    DONE = "done"          # a result.json that reads as a result
    RUNNING = "running"    # a process holds the job's lock
    FAILED = "failed"      # failed.json / error.txt (or, for the report, an unreadable result.json)
    PENDING = "pending"    # not started, interrupted, or a damaged result.json to redo


class Outcome(_StrEnum):
    """How one attempt to run a job ended (what an executor reports per job)."""

    FINISHED = "finished"            # trained (or resumed) and evaluated now
    ALREADY_DONE = "done"            # result.json existed
    FAILED_NOW = "failed"            # raised now; failed.json written
    FAILED_BEFORE = "failed-before"  # failed.json existed and failed jobs were not retried
    BUSY = "busy"                    # another process holds the job's lock
    INTERRUPTED = "interrupted"      # stopped (Ctrl-C, a killed worker); resumes on the next run


# --- job names ----------------------------------------------------------------------------------
JOB_NAME_RE = re.compile(r"^(?P<method>.+)__(?P<dataset>[^_].*?)__r(?P<ratio>[0-9.eE+-]+)__s(?P<seed>-?\d+)$")


class JobName(NamedTuple):
    """The parts of a job folder's name (``method`` is the method's label when it has one)."""

    method: str
    dataset: str
    ratio: float  # NaN when the name's ratio is not a number
    seed: int


def job_name(method: str, dataset: str, ratio: float, seed: int) -> str:
    """The job folder name ``METHOD__DATASET__rRATIO__sSEED`` (ratio as ``%g``); the parts are
    used as given (:attr:`ltbench.config.JobConfig.job_name` passes sanitised ones)."""
    return f"{method}__{dataset}__r{float(ratio):g}__s{int(seed)}"


def parse_job_name(name: str) -> Optional[JobName]:
    """The parts of a job folder name, or None when ``name`` is not one."""
    m = JOB_NAME_RE.match(name)
    if m is None:
        return None
    try:
        ratio = float(m.group("ratio"))
    except ValueError:
        ratio = math.nan
    return JobName(m.group("method"), m.group("dataset"), ratio, int(m.group("seed")))


def is_job_dir(path: Path) -> bool:
    """A sub-folder is a job folder if it is named like one or holds a job's files."""
    path = Path(path)
    return path.is_dir() and (parse_job_name(path.name) is not None or any((path / f).exists() for f in JOB_FILES))


# --- the job lock ---------------------------------------------------------------------------------
class JobLock:
    """An exclusive ``flock`` on ``<job_dir>/.lock``, held while the job runs.

    ``acquire`` retries for ``patience_s`` seconds: a concurrent ``ltbench status`` probes the
    lock for a few microseconds, and must not make a runner skip a free job.
    """

    def __init__(self, job_dir: Path):
        self.path = Path(job_dir) / LOCK
        self.fd: Optional[int] = None

    def acquire(self, patience_s: float = 0.5) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + patience_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd = fd
                return True
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                return False
            time.sleep(0.05)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "JobLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(job_dir: Path) -> bool:
    """True when some process holds the job's lock (the job is running). Creates nothing."""
    path = Path(job_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# --- formats ------------------------------------------------------------------------------------
def stamped(record: dict, name: str) -> dict:
    """``record`` with the current format of the file ``name`` first."""
    return {"format": FORMATS[name], **{k: v for k, v in record.items() if k != "format"}}


def record_format(record: dict) -> int:
    """The layout version of a read record (1 when it predates the field)."""
    value = record.get("format", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def check_format(record: dict, name: str, where: Path) -> dict:
    """``record`` if this ltbench reads its format; :class:`LtbenchError` if it is newer."""
    if record_format(record) > FORMATS[name]:
        raise LtbenchError(f"{where} was written by a newer ltbench (format {record_format(record)}; this one "
                           f"reads {name} up to format {FORMATS[name]}): upgrade ltbench")
    return record


# --- config.json --------------------------------------------------------------------------------
def write_config(job_dir: Path, config: dict) -> None:
    """Write the job's ``config.json`` with its format (atomically)."""
    write_json(Path(job_dir) / CONFIG, stamped(config, CONFIG))


def read_config(job_dir: Path) -> Optional[ConfigRecord]:
    """The job's ``config.json`` as a dict (with its ``format``), or None when it is missing or damaged."""
    config = read_json_object(Path(job_dir) / CONFIG)
    return None if config is None else check_format(config, CONFIG, Path(job_dir) / CONFIG)


# --- result.json --------------------------------------------------------------------------------
def write_result(job_dir: Path, result: dict) -> dict:
    """Write ``result`` with its ``format`` as the job's ``result.json`` (atomically); returns the record written."""
    return write_result_file(Path(job_dir) / RESULT, result)


def write_result_file(path: Path, result: dict) -> dict:
    """Write ``result`` with its ``format`` to the file ``path`` (``ltbench eval --out``); returns the record written."""
    record = stamped(result, RESULT)
    write_json(path, record)
    return record


def load_result(path: Path) -> dict:
    """``result.json`` (a job folder or the file itself) as a dict; :class:`ValueError` saying why
    when it cannot be read or is not a result (a JSON object with a ``metrics`` object)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT
    try:
        result = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
        raise ValueError("no 'metrics' object")
    return check_format(result, RESULT, path)


def read_result(job_dir: Path) -> Optional[ResultRecord]:
    """The job's ``result.json`` if it reads as a result, else None."""
    result = read_json_object(Path(job_dir) / RESULT)
    if result is None or not isinstance(result.get("metrics"), dict):
        return None
    return check_format(result, RESULT, Path(job_dir) / RESULT)


def warnings_line(results, root) -> str:
    """The line at the end of ``ltbench run`` and ``ltbench status``: how many warnings (the
    gradient-masking checks', AutoAttack's flags) the finished jobs' ``results`` carry, in how many
    jobs, and the command whose page groups them by kind and says what each means."""
    counts = [len(r["warnings"]) if isinstance(r.get("warnings"), list) else 0
              for r in results if isinstance(r, dict)]
    total, jobs = sum(counts), sum(1 for c in counts if c)
    if not counts:
        return "warnings: no finished job yet"
    if not total:
        return f"warnings: none in the {len(counts)} finished job{'s' * (len(counts) != 1)}"
    return (f"warnings: {total} in {jobs} of {len(counts)} finished job{'s' * (len(counts) != 1)}; "
            f"`ltbench report {root}` groups them by kind and says what each means")


# --- metrics.jsonl ------------------------------------------------------------------------------
def append_metrics(job_dir: Path, record: dict) -> None:
    """Append one epoch's record, with its format, to ``metrics.jsonl``."""
    append_jsonl(Path(job_dir) / METRICS, stamped(record, METRICS))


def write_metrics(job_dir: Path, records: list[dict]) -> None:
    """Replace ``metrics.jsonl`` by ``records`` (each with its format; atomically): resume keeps the
    epochs its checkpoint holds."""
    write_text(Path(job_dir) / METRICS, "".join(json.dumps(stamped(r, METRICS)) + "\n" for r in records))


def read_metrics(job_dir: Path) -> list[EpochRecord]:
    """The epoch records of ``metrics.jsonl`` (objects with an integer ``epoch``); damaged lines
    (a torn last line) are skipped; [] when the file is missing."""
    path = Path(job_dir) / METRICS
    return [check_format(r, METRICS, path) for r in read_jsonl_records(path) if isinstance(r.get("epoch"), int)]


def epochs_done(job_dir: Path) -> int:
    """Epochs logged in ``metrics.jsonl`` in order from the first (0, 1, 2, …); damaged lines end the count.

    The engine writes an epoch's checkpoint before its log line, so this never counts an epoch
    whose checkpoint is missing."""
    n = 0
    for record in read_jsonl_records(Path(job_dir) / METRICS):
        if record.get("epoch") != n:
            break
        n += 1
    return n


# --- lt_indices.json ----------------------------------------------------------------------------
def read_split_counts(job_dir: Path) -> Optional[list]:
    """The class counts of the job's saved split (``lt_indices.json``), or None."""
    data = read_json_object(Path(job_dir) / SPLIT)
    counts = (data or {}).get("counts")
    return list(counts) if isinstance(counts, list) and counts else None


def read_any(path: Path) -> Any:
    """A JSON file's value (any JSON value); :class:`ValueError` when it is not JSON."""
    return json.loads(Path(path).read_text())
