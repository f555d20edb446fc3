import os, shutil, subprocess, sys
from pathlib import Path
import pytest

os.environ.setdefault('KDD_DEVICE', 'cpu')
# `kdd-explore run`/`quickstart` in one process (the default; an environment's
# own KDD_PROCS is kept): the tests already run in parallel workers
os.environ.setdefault('KDD_PROCS', '1')
ROOT = Path(__file__).resolve().parents[1]

def kdd_here(capsys, *args):
    "`kdd-explore ARGS` in this process (for errors raised before any work: no interpreter start): (exit status, stderr)."
    from kdd_explore.cli import main
    capsys.readouterr()
    try: rc = main([str(a) for a in args])
    except SystemExit as e: rc = e.code  # argparse's own errors
    return rc, capsys.readouterr().err

def load_script(path:Path):
    "A benchmark script (a file outside the package) imported as a module, for tests of its functions."
    import importlib.util
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

@pytest.fixture(scope='session')
def quick_run(tmp_path_factory):
    """One `kdd-explore quickstart --quick` run for the whole session: (completed process, run folder).
    It runs as on a fresh machine: no full copy of Fashion-MNIST in sight, only the slice the package ships (test_data_slice checks
    that the slice serves the full files' tensors, so the table is the full files' too)."""
    base = tmp_path_factory.mktemp('quick')
    out = base/'run'
    env = dict(os.environ, KDD_DATA=str(base/'empty'), KDD_IGNORE_SYSTEM_DATA='1')
    r = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'quickstart', '--quick', '--out', str(out)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert r.returncode == 0, f'quickstart --quick failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r, out

# before xdist's own hook, which turns the mark into the group (pytest < 9.2: pytest-xdist issue 1386)
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`-n 2 --dist loadgroup`, as tests/run.sh runs it) the tests that share `quick_run` go to one worker: the run is made once.
    They are also marked `slow` (out of `pytest -m "not slow"`)."""
    for item in items:
        if 'quick_run' in getattr(item, 'fixturenames', ()):
            item.add_marker(pytest.mark.xdist_group('quick_run'))
            item.add_marker(pytest.mark.slow)  # they wait for the whole quick job

BROWSERS = ('chromium', 'chromium-browser', 'google-chrome')
# the headless browser of the browser tests (None: none)
CHROME = next((shutil.which(c) for c in BROWSERS if shutil.which(c)), None)

def in_ci() -> bool:
    "Whether this is CI (`CI=true`, as CI services set it, or `KDD_CI=1`, as .ci/run sets it where it installs Chromium)."
    return os.environ.get('KDD_CI') == '1' or os.environ.get('CI', '').lower() in ('true', '1')

def _no_chromium(what):
    return (f"no Chromium on PATH (looked for {', '.join(BROWSERS)}), so {what} is not checked in a browser; "
            "install one (apt-get install chromium) to run this test")

def needs_chromium(what:str) -> list:
    """`pytestmark` of a module whose tests open `what` in headless Chromium: without a browser they are skipped, saying how to
    install one, except in CI (`CI=true` or `KDD_CI=1`, see `in_ci`), where a skipped check would pass unseen, so they fail.
    They are `slow` tests (out of `pytest -m "not slow"`)."""
    return [pytest.mark.skipif(CHROME is None and not in_ci(), reason=_no_chromium(what)
                               + ' (in CI, CI=true or KDD_CI=1, this is a failure)'),
            pytest.mark.chromium(what), pytest.mark.slow, pytest.mark.usefixtures('_chromium_or_fail')]

def pytest_configure(config):
    config.addinivalue_line('markers', 'chromium(what): the test opens `what` in headless Chromium (see '
                                       'needs_chromium)')

@pytest.fixture
def _chromium_or_fail(request):
    "In CI a missing browser fails the tests instead of skipping them."
    if CHROME is None:
        pytest.fail(f"CI (CI=true or KDD_CI=1) but {_no_chromium(request.node.get_closest_marker('chromium').args[0])} (.ci/run "
                    "installs it with apt-get).")
