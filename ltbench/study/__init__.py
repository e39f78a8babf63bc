"""A study: a grid of jobs in one folder, from the options to the finished folder.

* :mod:`ltbench.study.grid` — preset + config file + options → the spec → validated jobs;
* :mod:`ltbench.study.checks` — what is checked before a study writes anything;
* :mod:`ltbench.study.study` — :class:`~ltbench.study.study.Study`, the study folder (``study.json``,
  job folders, the study lock);
* :mod:`ltbench.study.job_state` — one job's state (done, running under its lock, failed, pending);
* :mod:`ltbench.study.records` — the read side: every job's record, for the report and the API;
* :mod:`ltbench.study.run` — :func:`~ltbench.study.run.run_study`, the one call behind ``ltbench run``
  and :func:`ltbench.run`; :mod:`ltbench.study.cli` — ``ltbench run``'s options;
* :mod:`ltbench.study.estimate`, :mod:`ltbench.study.dryrun` — time estimates, ``--dry-run``;
* :mod:`ltbench.study.summary` — the lines printed after a run; :mod:`ltbench.study.status` — ``ltbench status``.

The executors that run the jobs are :mod:`ltbench.runner`; the study folder's file names and
formats are :mod:`ltbench.study_folder`.
"""
