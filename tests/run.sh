#!/usr/bin/env bash
# The project's test command (the README names it; .ci/run calls it):
#   1. nbdev_export must change nothing (kdd_explore/ is generated from nbs/),
#   2. every notebook runs top to bottom under nbdev_test (extra flags: NBDEV_FLAGS="slow"),
#   3. pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 KDD_DEVICE="${KDD_DEVICE:-cpu}"
echo "== nbdev_export (must change nothing)"
nbdev_export
drift=$(git status --porcelain -- kdd_explore)
if [ -n "$drift" ]; then
  echo "nbdev_export changed kdd_explore/: the package is out of sync with nbs/. Run nbdev_export and commit:"; echo "$drift"; exit 1
fi
echo "== nbdev_test"
t0=$(date +%s)
# two notebooks run at once on two cores: one thread each, or they fight over the cores (many times slower)
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" nbdev_test --n_workers 2 --timing ${NBDEV_FLAGS:+--flags "$NBDEV_FLAGS"}
echo "nbdev_test took $(( $(date +%s) - t0 ))s"
echo "== pytest"
# two workers of one thread each (pytest-xdist), as the notebooks above; the tests that share the quick run stay on one worker
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist loadgroup --durations=25 tests "$@"   # the 25 slowest are listed: CI time is watched
