#!/usr/bin/env bash
# Stage a study's committable files: study.json and, for every FINISHED job (result.json present),
# its small files (config.json, lt_indices.json, metrics.jsonl, result.json, log.txt); never
# checkpoints, locks or transient files, never an unfinished job. Then commit if anything changed.
# Usage: scripts/commit_study.sh [STUDY_DIR] [MESSAGE]
set -euo pipefail
cd "$(dirname "$0")/.."
study=${1:-results/fmnist-lt}
msg=${2:-}
git add -f "$study/study.json"
done_jobs=()
for job in "$study"/*__*/; do
  job=${job%/}
  [ -f "$job/result.json" ] || { git rm -r -q --cached --ignore-unmatch "$job" >/dev/null; continue; }
  for f in config.json lt_indices.json metrics.jsonl result.json log.txt; do
    [ -f "$job/$f" ] && git add -f "$job/$f"
  done
  done_jobs+=("$(basename "$job")")
done
for tables in summary.csv summary.md summary.tex per_class.csv jobs.csv training.csv adv_predictions.csv paired.csv paired.md cost.csv; do
  [ -f "$study/$tables" ] && git add -f "$study/$tables"
done
if [ -n "$(git diff --cached --name-only -- . ":(exclude)$study")" ]; then
  echo "other changes are staged; commit or unstage them first" >&2
  exit 1
fi
if git diff --cached --quiet -- "$study"; then
  echo "nothing new in $study (${#done_jobs[@]} finished jobs committed)"
else
  git commit -q -m "${msg:-$study: ${#done_jobs[@]} finished jobs (small files only)}"
  echo "committed $study: ${#done_jobs[@]} finished jobs"
fi
