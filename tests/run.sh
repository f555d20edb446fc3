#!/usr/bin/env bash
# The project's test command (the README names it; .ci/run calls it):
#   1. nbdev_export must change nothing (kdd_explore/ is generated from nbs/), nor may the README's generated blocks
#      differ from their results files (python -m benchmarks.pages check),
#   2. every notebook runs top to bottom, once, as nbdev_test would (extra flags: NBDEV_FLAGS="slow"), and the
#      lessons' website is built from those executed copies, with the study pages that benchmarks/pages writes from the
#      results files (kdd-explore docs --pages: _docs_build/, site in _docs_build/site),
#   3. pytest (its site browser test reads that site: KDD_SITE).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 KDD_DEVICE="${KDD_DEVICE:-cpu}" KDD_PROCS="${KDD_PROCS:-1}"   # runs stay in one process: notebooks and tests run two at a time already
echo "== nbdev_export (must change nothing)"
nbdev_export
drift=$(git status --porcelain -- kdd_explore)
if [ -n "$drift" ]; then
  echo "nbdev_export changed kdd_explore/: the package is out of sync with nbs/. Run nbdev_export and commit:"; echo "$drift"; exit 1
fi
echo "== the README's generated blocks (must agree with their results files)"
python -m benchmarks.pages check   # names the results file to regenerate from when a generated block was edited by hand
echo "== notebooks executed (nbdev_test's rules) + the site, with the study pages"
t0=$(date +%s)
rm -rf _docs_build/studies && python -m benchmarks.pages site _docs_build/studies   # the study pages, from the results files
# two notebooks run at once on two cores: one thread each, or they fight over the cores (many times slower); the
# longest first, by the times measured on the project's 2-core machine (an idle build's _docs_build/executed/seconds.json,
# copied to tests/notebook_seconds.json: copy it again when lessons are added or change much)
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" kdd-explore docs --workers 2 --out _docs_build/site --pages _docs_build/studies \
  --seconds tests/notebook_seconds.json ${NBDEV_FLAGS:+--flags "$NBDEV_FLAGS"}
echo "notebooks + site took $(( $(date +%s) - t0 ))s"
export KDD_SITE="$PWD/_docs_build/site"   # the browser test checks this full site instead of building a small one
echo "== pytest"
# two workers of one thread each (pytest-xdist), as the notebooks above; the tests that share the quick run stay on one worker
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist loadgroup --durations=25 tests "$@"   # the 25 slowest are listed: CI time is watched
