import os, subprocess, sys
from pathlib import Path
import pytest

os.environ.setdefault('KDD_DEVICE', 'cpu')
ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='session')
def quick_run(tmp_path_factory):
    "One `kdd-explore quickstart --quick` run for the whole session: (completed process, run folder)."
    out = tmp_path_factory.mktemp('quick')/'run'
    r = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'quickstart', '--quick', '--out', str(out)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, f'quickstart --quick failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r, out

@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the mark into the group (pytest < 9.2: pytest-xdist issue 1386)
def pytest_collection_modifyitems(config, items):
    "Under pytest-xdist (`-n 2 --dist loadgroup`, as tests/run.sh runs it) the tests that share `quick_run` go to one worker: the run is made once."
    for item in items:
        if 'quick_run' in getattr(item, 'fixturenames', ()): item.add_marker(pytest.mark.xdist_group('quick_run'))
