"""A job's full configuration: one dataclass, validated, written to ``config.json``."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ltbench.errors import LtbenchError

MAX_SEED = 2 ** 63 - 1  # torch.manual_seed takes 64-bit seeds; seed + 1 seeds the augmentation
NAME_PART_MAX = 96  # characters of a method label or dataset name in a job folder name
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,@-]")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def safe_name_part(text: str) -> str:
    """``text`` as one safe file-name component: characters outside ``A-Z a-z 0-9 . _ + = , @ -``
    become ``-``, a leading ``.`` becomes ``-``, and text longer than :data:`NAME_PART_MAX` is cut
    and ends with 8 hex digits of its SHA-1 (distinct texts stay distinct). Names made only of safe
    characters, as every built-in method and ablation label, are unchanged."""
    safe = _UNSAFE.sub("-", str(text))
    if safe.startswith("."):
        safe = "-" + safe[1:]
    if len(safe) > NAME_PART_MAX:
        digest = hashlib.sha1(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe[:NAME_PART_MAX - 9]}-{digest}"
    return safe or "-"


# Fields a stored configuration may lack, each with the default that keeps that configuration's meaning.
LATER_FIELDS = {"modifiers": {}, "clip_start": True, "augment_params": {}, "select_from": 1, "nesterov": False,
                "val_n_per_class": None, "val_attack_steps": 5, "init_from": None, "train_per_class": None,
                "test_per_class": None}

# Fields a config.json written before they existed lacks, with the value that keeps its meaning where
# that differs from today's default (every such file ran the schedules absolute and selected on the test set).
OLD_MEANING = {"scale_schedules": False, "select_on": "test"}


@dataclass
class JobConfig:
    """Everything that determines one training run (method × dataset × ratio × seed × budget).

    ``eps``/``step`` default to the dataset's (CIFAR 8/255 & 2/255, Fashion-MNIST 0.1 & 0.01).
    The optimiser follows the REAT paper's recipe (SGD 0.1, momentum 0.9, wd 5e−4) with its
    ×0.1 decays at 75 % and 93.75 % of the epochs (epochs 60 and 75 of 80), scaled to ``epochs``.
    """

    method: str = "pgd-at"
    label: Optional[str] = None  # the method as the study names it, e.g. "reat+no-tail" for `reat --no-tail`
    dataset: str = "fmnist"
    ratio: float = 0.01
    seed: int = 0
    model: str = "small-cnn"
    model_params: dict = field(default_factory=dict)
    method_params: dict = field(default_factory=dict)
    # Modifiers wrapping the method, in order: name → overrides, e.g. {"awp": {"gamma": "0.01"}}
    # (ltbench/modifier.py). Left out of config.json when empty.
    modifiers: dict = field(default_factory=dict)
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False  # Nesterov momentum (RobustLT's trainer uses it); left out of config.json when false
    lr_milestones: tuple = (0.75, 0.9375)
    profile: str = "exp"
    # Smoke runs: the head class's training images before the long-tailed cut (the tail keeps
    # ratio · N, at least 1; None: the dataset's, e.g. 6000 for Fashion-MNIST) and the evaluation on a
    # balanced, seeded subset of N test images per class for every attack (None: the whole test
    # set). Left out of config.json when None.
    train_per_class: Optional[int] = None
    test_per_class: Optional[int] = None
    # Seed of the long-tailed split. None: the run's seed (each seed its own split, so the spread over
    # seeds includes split variance); an int: one split shared by every seed of the study, so the
    # spread is training variance alone.
    split_seed: Optional[int] = None
    augment: Optional[str] = None  # None | "randaugment" | "autoaugment"
    # Options of that policy (ltbench.data.augment.PolicyAugment): num_ops, magnitude (RandAugment,
    # 2 and 9 by default), policy (AutoAugment, "cifar10"). Left out of config.json when empty.
    augment_params: dict = field(default_factory=dict)
    eps: Optional[float] = None
    step: Optional[float] = None
    train_attack_steps: int = 10
    # The training PGD's random start clipped to the image range [0, 1] (ltbench's choice); false: only
    # to the ε-ball, as the AT-BSL authors' script does. Left out of config.json when true.
    clip_start: bool = True
    eval_attacks: tuple = ("clean", "pgd20", "cw20")  # add "aa" for AutoAttack (slow on a CPU: opt-in)
    aa_n_per_class: Optional[int] = None  # AutoAttack on a balanced subset of N per class; None = all
    select_best: Optional[str] = None  # e.g. "pgd20": evaluate the most robust epoch, not the last (REAT recipe)
    # Where that epoch is chosen: "validation", the held-out validation split (the job holds out
    # select_n_per_class images per class when it would hold out fewer, capped at 20 % of a class),
    # or "test", a fixed, balanced, seeded subset of the test set of select_n_per_class images per
    # class, as the AT-BSL and REAT scripts select (the reported test numbers are then optimistic).
    # Always written to config.json: one written before the option selected on the test set.
    select_on: str = "validation"
    select_n_per_class: int = 100  # images per class of that split or subset
    # First epoch (1-based) that select_best may choose (AT-BSL's script: 75); earlier epochs are not
    # evaluated for selection. Left out of config.json when 1.
    select_from: int = 1
    # Validation split (ltbench/data/validation.py): images per class held out of the long-tailed
    # training set and measured every epoch (per-class clean and PGD accuracy, losses), for methods
    # that learn from per-class feedback (CFA, WAT). None: the method's default (0, none, for most
    # methods: their jobs are unchanged); 0: none. Left out of config.json when None.
    val_n_per_class: Optional[int] = None
    # Iterations of that per-epoch validation PGD (CE, uniform start, step 2.5·ε/K); cheap on purpose.
    val_attack_steps: int = 5
    # A finished job's folder whose evaluated weights initialise this job's model (fine-tuning, FRL);
    # optimiser and schedule start fresh. Left out of config.json when None.
    init_from: Optional[str] = None
    # Method hyper-parameters that are numbers of epochs (CFA's start, TRADES-AWP's warm-up, FRL's
    # halving), given as their paper states them, scaled by epochs / the paper's epochs; false keeps
    # them absolute (ltbench.method.resolve_schedules). Always written to config.json: a stored
    # configuration without it was written before the scaling and ran them absolute (OLD_MEANING).
    scale_schedules: bool = True
    eval_batch_size: int = 250  # fastest on CPU; the GPU path may raise it
    device: str = "auto"
    compile: bool = False

    def validate(self) -> "JobConfig":
        """Check every value that can be checked without data or a model (one-line LtbenchError).

        Called for every job of a grid before the study folder is created; the values a registry
        entry decides (model and method parameters, attack names) are checked by
        :func:`ltbench.study.checks.check_jobs`."""
        for key in ("method", "dataset", "model", "profile", "device"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise LtbenchError(f"{key} must be a non-empty string, got {getattr(self, key)!r}")
        if not (_is_number(self.ratio) and 0 < self.ratio <= 1):
            raise LtbenchError(f"imbalance ratio must be in (0, 1], got {self.ratio}")
        if not _is_int(self.seed) or not 0 <= self.seed < MAX_SEED:
            raise LtbenchError(f"seed must be an integer in [0, 2^63 − 1), got {self.seed!r}")
        for key, what in (("epochs", "epochs"), ("batch_size", "batch size"),
                          ("train_attack_steps", "train_attack_steps"), ("eval_batch_size", "eval_batch_size"),
                          ("select_n_per_class", "select_n_per_class")):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise LtbenchError(f"{what} must be at least 1, got {value!r}")
        if self.profile not in ("exp", "step"):
            raise LtbenchError(f"long-tail profile must be 'exp' or 'step', got {self.profile!r}")
        if self.augment not in (None, "randaugment", "autoaugment"):
            raise LtbenchError(f"augment must be randaugment or autoaugment, got {self.augment!r}")
        if self.split_seed is not None and (not _is_int(self.split_seed) or not 0 <= self.split_seed < MAX_SEED):
            raise LtbenchError(f"split_seed must be a non-negative integer, got {self.split_seed!r}")
        if not (_is_number(self.lr) and self.lr > 0):
            raise LtbenchError(f"lr must be a finite number > 0, got {self.lr!r}")
        for key in ("momentum", "weight_decay"):
            if not (_is_number(getattr(self, key)) and getattr(self, key) >= 0):
                raise LtbenchError(f"{key} must be a finite number ≥ 0, got {getattr(self, key)!r}")
        if self.eps is not None and not (_is_number(self.eps) and self.eps >= 0):
            raise LtbenchError(f"eps must be a finite number ≥ 0, got {self.eps}")
        if self.step is not None and not (_is_number(self.step) and self.step > 0):
            raise LtbenchError(f"step must be a finite number > 0, got {self.step}")
        if not isinstance(self.lr_milestones, (list, tuple)) or not all(
                _is_number(f) and f >= 0 for f in self.lr_milestones):
            raise LtbenchError(f"lr_milestones must be fractions of the epochs ≥ 0, got {self.lr_milestones!r}")
        for key in ("train_per_class", "test_per_class"):
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or value < 1):
                raise LtbenchError(f"{key} must be at least 1, got {value!r}")
        if self.aa_n_per_class is not None and (not _is_int(self.aa_n_per_class) or self.aa_n_per_class < 1):
            raise LtbenchError(f"aa_n_per_class must be at least 1, got {self.aa_n_per_class!r}")
        if not isinstance(self.eval_attacks, (list, tuple)) or not self.eval_attacks \
                or not all(isinstance(a, str) for a in self.eval_attacks):
            raise LtbenchError(f"eval_attacks must be a non-empty list of attack names, got {self.eval_attacks!r}")
        if self.select_best is not None and not isinstance(self.select_best, str):
            raise LtbenchError(f"select_best must be an attack name, got {self.select_best!r}")
        for key in ("model_params", "method_params"):
            if not isinstance(getattr(self, key), dict):
                raise LtbenchError(f"{key} must be a table of KEY = VALUE, got {getattr(self, key)!r}")
        if self.label is not None and not isinstance(self.label, str):
            raise LtbenchError(f"label must be a string, got {self.label!r}")
        unknown = set(self.augment_params) - {"num_ops", "magnitude", "policy"}
        if unknown or (self.augment_params and not self.augment):
            raise LtbenchError(f"augment_params {self.augment_params} need augment set and take num_ops, magnitude, "
                               f"policy only")
        if isinstance(self.select_from, bool) or not isinstance(self.select_from, int) or self.select_from < 1:
            raise LtbenchError(f"select_from must be an epoch number ≥ 1, got {self.select_from!r}")
        if self.select_best and isinstance(self.epochs, int) and self.select_from > self.epochs:
            raise LtbenchError(f"select_from {self.select_from} is after the last epoch ({self.epochs}): select_best "
                               f"would have no epoch to choose; lower it (--select-from N)")
        if not isinstance(self.modifiers, dict) or not all(isinstance(v, dict) for v in self.modifiers.values()):
            raise LtbenchError(f"modifiers must map modifier names to parameter tables, got {self.modifiers!r}")
        if self.val_n_per_class is not None and (isinstance(self.val_n_per_class, bool)
                                                 or not isinstance(self.val_n_per_class, int) or self.val_n_per_class < 0):
            raise LtbenchError(f"val_n_per_class must be a non-negative integer, got {self.val_n_per_class!r}")
        if isinstance(self.val_attack_steps, bool) or not isinstance(self.val_attack_steps, int) or self.val_attack_steps < 1:
            raise LtbenchError(f"val_attack_steps must be a positive integer, got {self.val_attack_steps!r}")
        if self.select_on not in ("validation", "test"):
            raise LtbenchError(f"select_on must be 'validation' or 'test', got {self.select_on!r}")
        if self.select_best and self.select_on == "validation" and self.val_n_per_class == 0:
            raise LtbenchError("select_best on the validation split needs one: leave val_n_per_class unset or above 0, "
                               "or select on the test set (select_on = test)")
        if not isinstance(self.scale_schedules, bool):
            raise LtbenchError(f"scale_schedules must be true or false, got {self.scale_schedules!r}")
        if self.init_from is not None and not isinstance(self.init_from, str):
            raise LtbenchError(f"init_from must be a job folder, got {self.init_from!r}")
        return self

    @property
    def lt_split_seed(self) -> int:
        """The seed the long-tailed split is drawn with: ``split_seed``, else the run's ``seed``."""
        return self.seed if self.split_seed is None else int(self.split_seed)

    @property
    def job_name(self) -> str:
        """The job's folder name, ``METHOD__DATASET__rRATIO__sSEED``, built from sanitised parts
        (:func:`safe_name_part`), so that no configuration can name a folder outside the study."""
        from ltbench.study_folder import job_name

        return job_name(safe_name_part(self.label or self.method), safe_name_part(self.dataset), self.ratio, self.seed)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        # Fields added later are left out at their defaults: such configs are written exactly as before.
        for key, default in LATER_FIELDS.items():
            if d[key] == default:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], stored: bool = True) -> "JobConfig":
        """The job ``d`` describes. ``stored`` (a config.json or a study.json entry): a field it lacks
        takes the value that keeps its meaning (LATER_FIELDS, OLD_MEANING); a new job (``stored=False``,
        built from a preset or flags) takes today's defaults for the fields it does not set."""
        d = {k: v for k, v in d.items() if k != "format"}  # config.json's layout version, not a job field
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise LtbenchError(f"unknown config keys: {', '.join(sorted(unknown))}")
        if stored:
            d = {**LATER_FIELDS, **OLD_MEANING, **d}
        for k in ("lr_milestones", "eval_attacks"):
            if k in d and isinstance(d[k], list):
                d[k] = tuple(d[k])
        return cls(**d)


# --- a stored configuration against its folder and against other jobs ------------------------------
# Fields that say which job this is (its folder name) or where it ran; every other field is a setting
# that jobs averaged over seeds must share.
IDENTITY_FIELDS = ("format", "method", "label", "dataset", "ratio", "seed", "device")
INCONSISTENT = "inconsistent"  # how a folder that is not the job its name says is reported


def name_mismatch(folder_name: str, config: dict) -> Optional[str]:
    """Why a job folder named ``folder_name`` cannot hold the job ``config`` describes (renamed or
    copied by hand, or its configuration edited to another method), or None when it can. A folder
    not named like a job (``METHOD__DATASET__rRATIO__sSEED``) claims nothing and is never a mismatch."""
    from ltbench.study_folder import job_name, parse_job_name

    if parse_job_name(folder_name) is None:
        return None
    try:
        cfg = JobConfig.from_dict(config)
        expected = cfg.job_name
        unsanitised = job_name(cfg.label or cfg.method, cfg.dataset, cfg.ratio, cfg.seed)  # before names were made safe
    except (LtbenchError, TypeError, ValueError):  # not a configuration this ltbench can name
        return None
    if folder_name in (expected, unsanitised):
        return None
    return f"{INCONSISTENT}: the folder is named {folder_name} but its configuration is job {expected}"


def folder_problem(job_dir) -> Optional[str]:
    """Why the job folder ``job_dir`` does not hold the job its name says (its ``config.json``, or its
    result's configuration, is another job's: :func:`name_mismatch`), or None. Such a folder is
    *failed* for ``status`` and the report (never a seed of any label), and ``run`` and ``eval``
    refuse it."""
    from ltbench import study_folder as sf

    for config in (sf.read_config(job_dir), (sf.read_result(job_dir) or {}).get("config")):
        problem = name_mismatch(Path(job_dir).name, config) if isinstance(config, dict) else None
        if problem:
            return problem
    return None


def job_settings(config: dict) -> dict:
    """The settings of a stored job configuration: every field but :data:`IDENTITY_FIELDS`, with the
    defaults filled in (a field left out of ``config.json`` at its default equals it written out) and
    ``init_from``'s seed replaced by ``{seed}`` (each seed starts from its own seed's job)."""
    defaults = json.loads(json.dumps(dataclasses.asdict(JobConfig())))  # tuples as lists, as read from JSON
    settings = {k: v for k, v in {**defaults, **config}.items() if k not in IDENTITY_FIELDS}
    seed = config.get("seed")
    if isinstance(settings.get("init_from"), str) and _is_int(seed):
        settings["init_from"] = re.sub(rf"__s{seed}$", "__s{seed}", settings["init_from"].rstrip("/"))
    return settings


def differing_settings(configs: list[dict]) -> list[str]:
    """The setting names (sorted) whose values are not the same in all of ``configs``; a key that
    only some of them know (a field of another ltbench version) is not compared."""
    settings = [job_settings(c) for c in configs]
    keys = sorted(set.intersection(*(set(s) for s in settings))) if settings else []
    return [k for k in keys if any(s.get(k) != settings[0].get(k) for s in settings[1:])]


# --- parameter values from the command line or a preset ---------------------------------------


_GUESS = object()  # coerce_value without a default: the value's own type


def coerce_value(raw: Any, default: Any = _GUESS, name: str = "") -> Any:
    """A parameter value from the command line or a preset, the one coercion of ltbench.

    A string becomes the type of ``default`` (bool accepts true/false/1/0/yes/no; ``None`` tries
    a float, else keeps the string); without a default, an int, else a float, else the string.
    A non-string (a preset's TOML value) is returned as is once its type fits ``default``."""
    if default is _GUESS:
        if not isinstance(raw, str):
            return raw
        for cast in (int, float):
            try:
                return cast(raw)
            except ValueError:
                pass
        return raw
    if not isinstance(raw, str):
        check_type(name, raw, default)  # a preset's TOML value: its type must fit
        return raw
    try:
        if isinstance(default, bool):
            low = raw.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return low in ("true", "1", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if default is None:
            try:
                return float(raw)
            except ValueError:
                return raw
        return type(default)(raw)
    except ValueError:
        raise LtbenchError(f"{name}={raw!r} is not a valid {type(default).__name__}") from None


def check_type(name: str, value: Any, default: Any) -> None:
    """A method parameter given as a value (a preset's TOML), not a string: its type must fit the default's."""
    if default is None or isinstance(value, str) and not isinstance(default, str):
        return
    ok = (isinstance(value, bool) if isinstance(default, bool)
          else isinstance(value, int) and not isinstance(value, bool) if isinstance(default, int)
          else isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(default, float)
          else isinstance(value, str) if isinstance(default, str)
          else True)
    if not ok:
        raise LtbenchError(f"{name}={value!r} is not a valid {type(default).__name__}")
