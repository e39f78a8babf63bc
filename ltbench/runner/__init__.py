"""Executors: running a study's jobs, locally or on Slurm, resumably (the study itself is
:mod:`ltbench.study`, which hands its jobs to one of these).

* :mod:`ltbench.runner.executors` — the executor the options ask for, checked against this machine;
* :mod:`ltbench.runner.local` — worker processes, one per GPU or N on the CPU;
* :mod:`ltbench.runner.slurm` — one Slurm array task per job, via submitit;
* :mod:`ltbench.runner.job` — one job under its lock, with log, progress and failure record;
* :mod:`ltbench.runner.display` — live progress lines on a terminal, event lines elsewhere;
* :mod:`ltbench.runner.tensorboard` — a job's training curves for TensorBoard, if asked for.
"""
