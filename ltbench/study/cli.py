"""``ltbench run``: the command line's options, a thin layer over :func:`ltbench.study.run.run_study`.

The options are read into a spec (:func:`ltbench.study.grid.study_spec`); the spec and the running
options go to :func:`~ltbench.study.run.run_study`, the call :func:`ltbench.run` makes from Python.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ltbench.config import JobConfig


def add_arguments(p):
    g = p.add_argument_group("the grid (flags override --preset and --config)")
    g.add_argument("--preset", metavar="NAME|FILE",
                   help="a shipped recipe (see `ltbench list presets`) or a TOML file with the same keys; flags "
                        "override it")
    g.add_argument("--config", metavar="FILE",
                   help="a TOML file describing the study, with the keys of a preset (it may start from one with "
                        "preset = \"NAME\"); read after --preset; flags override it")
    g.add_argument("--methods", nargs="+", help="method names (see `ltbench list methods`); an ablation is the name with its flags in "
                        "one argument, e.g. 'reat --no-tail' (job folder reat+no-tail__…); a modifier is +NAME, e.g. "
                        "'reat +robustlt' or 'at-bsl +awp' (job folder at-bsl+awp__…); 'all' = every "
                        "registered method (default: pgd-at)")
    g.add_argument("--datasets", nargs="+", help="dataset names (see `ltbench list datasets`; default: fmnist)")
    g.add_argument("--ratios", nargs="+", type=float, help="imbalance ratios in (0, 1] (0.01 = 100:1; default: 0.01)")
    g.add_argument("--seeds", nargs="+", type=int, help="run seeds (default: 0)")
    g.add_argument("--model", help=f"model name (see `ltbench list models`; default: {_default('model')})")
    g.add_argument("--epochs", type=int, help=f"training epochs (default: {_default('epochs')})")
    g.add_argument("--batch-size", type=int, help=f"training batch size (default: {_default('batch_size')})")
    g.add_argument("--lr", type=float, help=f"SGD learning rate, ×0.1 at 75%% and 93.75%% of the epochs "
                                            f"(default: {_default('lr')})")
    g.add_argument("--weight-decay", type=float, help=f"SGD weight decay (default: {_default('weight_decay')})")
    g.add_argument("--eps", type=float, help="L∞ budget (default: the dataset's)")
    g.add_argument("--step", type=float, help="PGD step size (default: the dataset's)")
    g.add_argument("--train-attack-steps", type=int, metavar="K",
                   help=f"PGD steps of the training attack (default: {_default('train_attack_steps')})")
    g.add_argument("--attacks", nargs="+", help="evaluation attacks (default: clean pgd20 cw20)")
    g.add_argument("--augment", choices=["randaugment", "autoaugment"],
                   help="per-sample policy augmentation before crop/flip (AT-BSL's recipe uses one)")
    g.add_argument("--select-best", metavar="ATTACK",
                   help="evaluate the epoch most robust to ATTACK (e.g. pgd20), not the last one, chosen on the "
                        "held-out validation split (see --select-on)")
    g.add_argument("--select-from", type=int, metavar="EPOCH",
                   help="first epoch (1-based) --select-best may choose (default 1; AT-BSL's script: 75 of 100)")
    g.add_argument("--select-on", choices=["validation", "test"],
                   help="where --select-best chooses: validation (default; the job holds out select_n_per_class, 100, "
                        "images per class) or test, a balanced test subset as the AT-BSL and REAT scripts do "
                        "(recorded in result.json and shown by the report: the test numbers are then optimistic)")
    g.add_argument("--compile", action="store_const", const=True, default=None,
                   help="torch.compile the model (worth it on GPUs for long runs; default: off)")
    g.add_argument("--no-clip-start", dest="clip_start", action="store_const", const=False, default=None,
                   help="training PGD: clip the random start to the ε-ball only, not to the image range [0, 1] "
                        "(as the AT-BSL authors' script does; default: clipped to both)")
    g.add_argument("--absolute-schedules", dest="scale_schedules", action="store_const", const=False, default=None,
                   help="keep method hyper-parameters that are numbers of epochs (CFA's start, TRADES-AWP's warm-up, "
                        "FRL's halving) as given (default: scaled by the job's epochs / the paper's)")
    g.add_argument("--profile", choices=["exp", "step"],
                   help="long-tail profile of the training set: exp (class c keeps n_max · ratio^(c/(C−1)) images) "
                        "or step (the first half of the classes n_max, the rest n_max · ratio) (default: exp)")
    g.add_argument("--split-seed", type=int, metavar="N",
                   help="draw the long-tailed split with seed N for every run seed (default: each run seed "
                        "draws its own split), so the spread over seeds is training variance alone")
    g.add_argument("--train-per-class", type=int, metavar="N",
                   help="smoke run: the head class keeps N training images, the tail ratio · N (at least 1) "
                        "(default: the dataset's, 6000 for Fashion-MNIST)")
    g.add_argument("--test-per-class", type=int, metavar="N",
                   help="smoke run: evaluate every attack on a balanced, seeded subset of N test images per class "
                        "(default: the whole test set)")
    g.add_argument("--val-n-per-class", type=int, metavar="N",
                   help="hold N images per class (at most 20%% of a class) out of the long-tailed training set and "
                        "measure them every epoch (default: the method's: 0 for most, CFA 100, WAT and FRL 300)")
    g.add_argument("--val-attack-steps", type=int, metavar="K", help="iterations of that validation PGD (default 5)")
    g.add_argument("--init-from", metavar="JOB_DIR",
                   help="start each job from the weights this finished job evaluated (fine-tuning, e.g. FRL); "
                        "{dataset}, {ratio}, {seed} and {out} (the study folder) are filled in per job, e.g. "
                        "results/s/trades__{dataset}__r{ratio:g}__s{seed}")
    g.add_argument("--device", help="cpu, cuda, cuda:1 … (default: auto)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="method, modifier or model parameter, e.g. reat.tail_weight=0.5, awp.gamma=0.005 or model.width=32")
    g.add_argument("--methods-dir", action="append", default=[], metavar="DIR",
                   help="also load methods from the .py files in DIR")
    g.add_argument("--out", help="study folder (default: results/<preset or config file name, or 'study'>)")
    g.add_argument("--dry-run", action="store_true",
                   help="list the jobs that would run and those skipped, with an estimated time; write nothing")

    e = p.add_argument_group("running")
    e.add_argument("--executor", choices=["local", "slurm"], default="local",
                   help="local worker processes (default) or one Slurm array task per job")
    e.add_argument("--gpus", help="local: GPU ids to use, one worker each, e.g. 0,1,2,3 (default: all visible)")
    e.add_argument("--jobs-per-gpu", type=int, metavar="N",
                   help="local: N workers, so N jobs at once, on each GPU (default 1); a small model at "
                        "batch 128 leaves a GPU mostly idle")
    e.add_argument("--workers", type=int, help="local: number of CPU worker processes (default 1 without GPUs)")
    e.add_argument("--retry-failed", action="store_true", help="rerun jobs that failed before (resuming them)")
    e.add_argument("--redo", nargs="+", metavar="PATTERN",
                   help="start the jobs of this run whose folder name matches a glob afresh, e.g. 'cfa__*' 'frl__*': "
                        "their folders are deleted and this run's configuration replaces the recorded one")
    e.add_argument("--quiet", action="store_true", help="no progress output")
    e.add_argument("--tensorboard", action="store_true",
                   help="also log each job's training curves for TensorBoard under <study>/tensorboard "
                        "(needs the optional extra: pip install 'ltbench[tensorboard]')")

    s = p.add_argument_group("Slurm (--executor slurm)")
    s.add_argument("--partition", help="Slurm partition (default: the cluster's default)")
    s.add_argument("--time", default="24:00:00", help="time limit per job, Slurm format (default 24:00:00); "
                   "a job that reaches it is requeued and resumes")
    s.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per array task (default 1; 0 for CPU)")
    s.add_argument("--cpus-per-job", type=int, help="CPU cores per array task")
    s.add_argument("--mem", help="memory per array task, Slurm format (e.g. 32G)")
    s.add_argument("--max-parallel", type=int, help="at most this many tasks running at once")
    s.add_argument("--slurm-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=abc or qos=high")
    s.add_argument("--no-wait", action="store_true", help="submit and return; `ltbench status` shows progress")


def _default(field: str):
    """A JobConfig field's default, for the help texts."""
    import dataclasses

    return {f.name: f.default for f in dataclasses.fields(JobConfig)}[field]


def main(args) -> int:
    """Run the study the options describe; the exit status (:mod:`ltbench.study.run`)."""
    from ltbench.study.grid import study_spec
    from ltbench.study.run import run_study

    launched = Path(sys.argv[0]).name in ("ltbench", "__main__.py") if sys.argv else False
    return run_study(study_spec(args), args, command=["ltbench", *sys.argv[1:]] if launched else None)
