"The supervised study's scripts at toy size: a factor row end to end, and the same set tested again under other test protocols."
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT))

def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True, text=True)

@pytest.fixture(scope='module')
def row(tmp_path_factory):
    "One factor row (max_start_epoch 5, which the toy experts' 3 epochs cap at 2) run by the study at toy size."
    out = tmp_path_factory.mktemp('sup_study')
    r = run('benchmarks/studies/supervised_study.py', '--out', out, '--tiny', '--rows', '10ipc_start5')
    assert r.returncode == 0, r.stderr[-2000:]
    return out

def test_study_row(row):
    "The row's results land in the study file with the command that reruns it."
    study = json.loads((row/'supervised_study.json').read_text())
    got = study['rows']['10ipc_start5']
    assert got['results']['complete'] and got['results']['recipe']['distill']['max_start_epoch'] == 2
    assert got['command'].endswith('--rows 10ipc_start5 --tiny')
    assert got['images']['distilled'] and got['images']['initial']

def test_protocol_repeats_the_row(row, tmp_path):
    "The row's own protocol repeats its accuracies; another width and epoch count is a separate, paired reading."
    res = json.loads((row/'10ipc_start5'/'results.json').read_text())
    r = run('benchmarks/studies/supervised_protocol.py', row/'10ipc_start5', '--protocols', '32x20,16x2',
            '--json', tmp_path/'p.json')
    assert r.returncode == 0, r.stderr[-2000:]
    p = json.loads((tmp_path/'p.json').read_text())
    assert p['repeats_row'] is True and p['save'] == res['chosen']
    assert p['protocols']['32x20']['distilled']['accuracies'] == res['saves'][res['chosen']]['test']['accuracies']
    other = p['protocols']['16x2']
    assert other['epochs'] == 2 and other['width'] == 16 and len(other['distilled']['accuracies']) == 2
    d = [a - b for a, b in zip(other['distilled']['accuracies'], other['random_real']['accuracies'])]
    assert other['gain']['gap'] == pytest.approx(sum(d) / len(d), abs=1e-3)
    assert p['provenance']['command'].startswith('python benchmarks/studies/supervised_protocol.py')

def test_bad_input(row, tmp_path):
    "A malformed protocol, a folder without a run and a save the row lacks are refused with what to do."
    r = run('benchmarks/studies/supervised_protocol.py', row/'10ipc_start5', '--protocols', '32by300')
    assert r.returncode != 0 and 'WIDTHxEPOCHS' in r.stderr
    r = run('benchmarks/studies/supervised_protocol.py', tmp_path)
    assert r.returncode != 0 and 'no results.json' in r.stderr
    r = run('benchmarks/studies/supervised_protocol.py', row/'10ipc_start5', '--save', '999')
    assert r.returncode != 0 and 'has no save 999' in r.stderr
    r = run('benchmarks/studies/supervised_study.py', '--out', tmp_path, '--tiny', '--rows', 'no_such_row')
    assert r.returncode != 0 and 'Unknown rows' in r.stderr
