"""Studies: expanding a grid into jobs and running them, locally or on Slurm, resumably.

* :mod:`ltbench.runner.cli` — ``ltbench run``: preset + flags → validated jobs → study → executor;
* :mod:`ltbench.runner.study` — :class:`~ltbench.runner.study.Study`, the study folder (``study.json``, job
  folders, job states, every job's record as read);
* :mod:`ltbench.runner.checks` — what is checked before a study writes anything;
* :mod:`ltbench.runner.job` — one job under its lock, with log, progress and failure record;
* :mod:`ltbench.runner.local` — worker processes, one per GPU or N on the CPU;
* :mod:`ltbench.runner.slurm` — one Slurm array task per job, via submitit;
* :mod:`ltbench.runner.display` — live progress lines on a terminal, event lines elsewhere;
* :mod:`ltbench.runner.status` — ``ltbench status STUDY``.
"""
