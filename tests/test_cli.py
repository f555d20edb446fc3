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
