"""Reports: a study's job results → tidy tables (:mod:`.aggregate`), figures (:mod:`.plots`) and
one self-contained HTML page (:mod:`.html`); ``ltbench report`` is :mod:`.cli`.

Nothing here imports torch: a report can be built on a machine that only has the result files.
"""
