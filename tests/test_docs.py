"The notebook executor and the site builder (kdd_explore.docs and kdd_explore.site, nbs/11_docs and nbs/11b_site): bad input stops the build with the notebook, the cell and the error."
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(autouse=True)
def in_project(monkeypatch):
    monkeypatch.chdir(ROOT)  # nbdev's settings are found from the working folder

@pytest.mark.slow
def test_a_failing_notebook_stops_the_build_naming_notebook_cell_and_error(tmp_path):
    from kdd_explore.docs import DocsError, make_notebook
    from kdd_explore.site import build_site
    ok = make_notebook(tmp_path/'nbs'/'fine.ipynb', ['print("fine")', '#| slow\nprint("only with --flags slow")'])
    bad = make_notebook(tmp_path/'nbs'/'broken.ipynb', ['md:# Broken', 'x = 1',
                                                        "y = {'a': 1}['b']  # the failing cell\nprint(y)"])
    with pytest.raises(DocsError) as e:
        build_site(tmp_path/'site', [ok, bad], n_workers=1, build_dir=tmp_path/'build', progress=False)
    msg = str(e.value)
    assert msg.startswith('1 notebook(s) failed to execute; the site was not built.'), msg
    assert ("broken.ipynb failed at cell 3 of 3:\n    y = {'a': 1}['b']  # the failing cell\n    print(y)\n"
            "KeyError: 'b'") in msg, msg
    assert 'While Executing Cell #3' in msg  # the traceback follows
    assert not (tmp_path/'site').exists()  # no page with a silent traceback: no site at all
    # the good one is kept: a rerun reuses it
    cells = json.loads((tmp_path/'build'/'executed'/'fine.ipynb').read_text())['cells']
    assert cells[0]['outputs'][0]['text'] == ['fine\n']
    # skipped unless --flags slow
    assert cells[1]['outputs'] == [] and cells[1]['metadata']['kdd_docs']['skipped'] == '#| slow'

@pytest.mark.slow
def test_the_command_fails_with_the_message_and_exit_status_2(tmp_path):
    from kdd_explore.docs import make_notebook
    bad = make_notebook(tmp_path/'nbs'/'broken.ipynb', ['import nosuchmodule_kdd'])
    r = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'docs', str(bad), '--out', str(tmp_path/'site'),
                        '--build-dir', str(tmp_path/'build'), '--workers', '1', '--quiet'],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith('kdd-explore docs: error: 1 notebook(s) failed to execute'), r.stderr
    assert ("broken.ipynb failed at cell 1 of 1:\n    import nosuchmodule_kdd\n"
            "ModuleNotFoundError: No module named 'nosuchmodule_kdd'") in r.stderr

def test_the_flags_are_part_of_the_key(tmp_path):
    from kdd_explore.docs import make_notebook, notebook_key, package_hash, skip_flags
    nb, pkg = make_notebook(tmp_path/'n.ipynb', ['1']), package_hash()
    assert skip_flags() == {'slow', 'cuda'} and skip_flags('slow') == {'cuda'}
    # --flags slow executes again
    assert notebook_key(nb, pkg, skip_flags()) != notebook_key(nb, pkg, skip_flags('slow'))
    # so does a change to the package
    assert notebook_key(nb, pkg, skip_flags()) != notebook_key(nb, pkg[::-1], skip_flags())

def test_outside_the_project_the_message_says_where_to_run_it(tmp_path, monkeypatch):
    from kdd_explore.docs import DocsError, lesson_notebooks
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DocsError, match="No nbdev project here .* run this from the project's folder"):
        lesson_notebooks()

def test_the_ci_notebook_times_name_every_lesson():
    "The times CI orders the notebooks by (tests/notebook_seconds.json, passed by tests/run.sh) name every lesson and nothing else, so that no lesson falls out of the longest-first order unnoticed."
    from kdd_explore.docs import _config, lesson_notebooks
    took = json.loads((ROOT/'tests'/'notebook_seconds.json').read_text())
    root = Path(_config().nbs_path).resolve()
    assert set(took) == {nb.relative_to(root).as_posix() for nb in lesson_notebooks()}
    assert all(isinstance(v, (int, float)) and v > 0 for v in took.values())
    assert '--seconds tests/notebook_seconds.json' in (ROOT/'tests'/'run.sh').read_text()
