"The `kdd-explore` stage commands over artifacts on disk, and their errors."
import json, re, subprocess, sys
import pytest
from kdd_explore.core import artifact_exists, read_meta

def kdd(*args):
    return subprocess.run([sys.executable, '-m', 'kdd_explore.cli', *map(str, args)], capture_output=True, text=True, timeout=600)

def test_variance_command_writes_json_and_html(tmp_path):
    r = kdd('variance', '--dataset', 'digits', '--out', tmp_path, '--quick', '--quiet')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path/'variance.json').read_text())
    assert set(res['losses']) == {'barlow_twins', 'simclr', 'kd_mse', 'supervised_ce'}
    for v in res['losses'].values():
        assert len(v['batch_sizes']) == len(v['norm_var']) >= 2 and all(x > 0 for x in v['norm_var'])
    html = (tmp_path/'variance.html').read_text()
    assert 'Plotly.newPlot' in html and not re.search(r'<script[^>]*src=["\']https?:', html)

def test_teacher_experts_distill_chain(tmp_path):
    r = kdd('teacher', '--dataset', 'digits', '--method', 'simclr', '--out', tmp_path/'t', '--epochs', '1', '--n-train', '300', '--quiet')
    assert r.returncode == 0, r.stderr
    assert read_meta(tmp_path/'t'/'teacher')['epochs'] == 1
    r = kdd('experts', '--dataset', 'digits', '--teacher', tmp_path/'t'/'teacher', '--out', tmp_path/'e', '--n-experts', 2, '--epochs', 3,
            '--width', 8, '--depth', 2, '--n-train', 300, '--quiet')
    assert r.returncode == 0, r.stderr
    assert read_meta(tmp_path/'e'/'experts')['n_experts'] == 2
    r = kdd('distill', '--experts', tmp_path/'e'/'experts', '--out', tmp_path/'d', '--iterations', 3, '--init', 'random', '--fraction', 0.05, '--quiet')
    assert r.returncode == 0, r.stderr
    assert artifact_exists(tmp_path/'d'/'synthetic_set') and read_meta(tmp_path/'d'/'synthetic_set')['n'] == 15

def test_missing_experts_file_is_a_clear_error(tmp_path):
    r = kdd('distill', '--experts', tmp_path/'nope', '--out', tmp_path/'d')
    assert r.returncode == 2 and 'No artifact' in r.stderr and 'Traceback' not in r.stderr

def test_unknown_dataset_in_a_stage_command(tmp_path):
    r = kdd('teacher', '--dataset', 'mnist2', '--out', tmp_path)
    assert r.returncode == 2 and 'Known datasets' in r.stderr

@pytest.mark.parametrize('cmd', [['quickstart', '--quick'], ['run', '--config', 'quick'], ['experts', '--n-experts', '1'],
                                 ['distill', '--experts', 'nowhere/experts'], ['data', '--dataset', 'digits']])
def test_out_that_is_a_file_is_one_line_error(tmp_path, cmd):
    f = tmp_path/'results.txt'; f.write_text('keep me')
    for out in (f, f/'sub'):
        r = kdd(*cmd, '--out', out)
        assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
        assert r.stderr.startswith(f'kdd-explore {cmd[0]}: error: --out {out} ') and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert 'is a file, not a folder' in r.stderr if out == f else f'{f} is a file' in r.stderr
    assert f.read_text() == 'keep me'

def test_second_run_on_a_busy_folder_is_refused_naming_the_first(tmp_path):
    import os
    from kdd_explore.core import RunLock
    with RunLock(tmp_path/'run'):
        r = kdd('quickstart', '--quick', '--out', tmp_path/'run')
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.startswith('kdd-explore quickstart: error: ') and f'in use by another run: process {os.getpid()} on this machine since' in r.stderr
    assert [p.name for p in (tmp_path/'run').iterdir()] == []  # the refused run wrote nothing (and the test's own lock is released)

@pytest.mark.parametrize('args, message', [
    (['distill', '--experts', 'nowhere/experts', '--fraction', '-0.5'], "argument --fraction: must be a share in (0, 1], e.g. 0.02 for 2%; got '-0.5'"),
    (['distill', '--experts', 'nowhere/experts', '--fraction', '1.5'], "argument --fraction: must be a share in (0, 1]"),
    (['distill', '--experts', 'nowhere/experts', '--fraction', '5%'], "argument --fraction: must be a share in (0, 1]"),
    (['distill', '--experts', 'nowhere/experts', '--iterations', '0'], "argument --iterations: must be a whole number >= 1; got '0'"),
    (['experts', '--n-experts', '0'], "argument --n-experts: must be a whole number >= 1"),
    (['experts', '--epochs', '-3'], "argument --epochs: must be a whole number >= 1"),
    (['experts', '--width', '2.5'], "argument --width: must be a whole number >= 1"),
    (['teacher', '--epochs', '0'], "argument --epochs: must be a whole number >= 1"),
    (['data', '--n-train', '0'], "argument --n-train: must be a whole number >= 1")])
def test_numeric_options_are_checked_before_anything_else(tmp_path, args, message):
    "A bad number is refused by the parser with its own message, before the (missing) experts or data are looked at."
    r = kdd(*args, '--out', tmp_path/'o')
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert f'kdd-explore {args[0]}: error: {message}' in r.stderr, r.stderr
    assert 'No artifact' not in r.stderr and not (tmp_path/'o').exists()
