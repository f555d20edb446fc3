"The `kdd-explore` stage commands over artifacts on disk, and their errors."
import json, re, shutil, subprocess, sys
import pytest, torch
from conftest import kdd_here
from kdd_explore.core import artifact_exists, read_meta, save_artifact

def kdd(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'kdd_explore.cli', *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=cwd)

@pytest.mark.slow
def test_variance_command_writes_json_and_html(tmp_path):
    r = kdd('variance', '--dataset', 'digits', '--out', tmp_path, '--quick', '--quiet')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path/'variance.json').read_text())
    assert set(res['losses']) == {'barlow_twins', 'simclr', 'kd_mse', 'supervised_ce'}
    for v in res['losses'].values():
        assert len(v['batch_sizes']) == len(v['norm_var']) >= 2 and all(x > 0 for x in v['norm_var'])
    html = (tmp_path/'variance.html').read_text()
    assert 'Plotly.newPlot' in html and not re.search(r'<script[^>]*src=["\']https?:', html)

@pytest.mark.slow
def test_teacher_experts_distill_chain(tmp_path):
    r = kdd('teacher', '--dataset', 'digits', '--method', 'simclr', '--out', tmp_path/'t', '--epochs', '1',
            '--n-train', '300', '--quiet')
    assert r.returncode == 0, r.stderr
    assert read_meta(tmp_path/'t'/'teacher')['epochs'] == 1
    r = kdd('experts', '--dataset', 'digits', '--teacher', tmp_path/'t'/'teacher', '--out', tmp_path/'e',
            '--n-experts', 2, '--epochs', 3, '--width', 8, '--depth', 2, '--n-train', 300, '--quiet')
    assert r.returncode == 0, r.stderr
    assert read_meta(tmp_path/'e'/'experts')['n_experts'] == 2
    r = kdd('distill', '--experts', tmp_path/'e'/'experts', '--out', tmp_path/'d', '--iterations', 3, '--init',
            'random', '--fraction', 0.05, '--quiet')
    assert r.returncode == 0, r.stderr
    assert artifact_exists(tmp_path/'d'/'synthetic_set') and read_meta(tmp_path/'d'/'synthetic_set')['n'] == 15

def test_missing_experts_file_is_a_clear_error(tmp_path, capsys):
    rc, err = kdd_here(capsys, 'distill', '--experts', tmp_path/'nope', '--out', tmp_path/'d')
    assert rc == 2 and 'No artifact' in err and 'Traceback' not in err

def test_unknown_dataset_in_a_stage_command(tmp_path, capsys):
    rc, err = kdd_here(capsys, 'teacher', '--dataset', 'mnist2', '--out', tmp_path)
    assert rc == 2 and 'Known datasets' in err

@pytest.mark.parametrize('cmd', [['quickstart', '--quick'], ['run', '--config', 'quick'],
                                 ['experts', '--n-experts', '1'], ['distill', '--experts', 'nowhere/experts'],
                                 ['data', '--dataset', 'digits']])
def test_out_that_is_a_file_is_one_line_error(tmp_path, cmd, capsys):
    f = tmp_path/'results.txt'; f.write_text('keep me')
    for out in (f, f/'sub'):
        rc, err = kdd_here(capsys, *cmd, '--out', out)
        assert rc == 2 and 'Traceback' not in err, err
        assert err.startswith(f'kdd-explore {cmd[0]}: error: --out {out} ') and len(err.strip().splitlines()) == 1, err
        assert 'is a file, not a folder' in err if out == f else f'{f} is a file' in err
    assert f.read_text() == 'keep me'

@pytest.mark.slow
def test_the_command_line_exits_2_with_the_one_line_error(tmp_path):
    "The same refusal through the installed entry point's module, in its own process: exit status 2, one line, no traceback."
    f = tmp_path/'results.txt'; f.write_text('keep me')
    r = kdd('experts', '--n-experts', '1', '--out', f)
    assert r.returncode == 2 and r.stderr.startswith(f'kdd-explore experts: error: --out {f} is a file, not a folder')
    assert len(r.stderr.strip().splitlines()) == 1 and f.read_text() == 'keep me'

@pytest.mark.slow
def test_second_run_on_a_busy_folder_is_refused_naming_the_first(tmp_path):
    import os
    from kdd_explore.core import RunLock
    with RunLock(tmp_path/'run'):
        r = kdd('quickstart', '--quick', '--out', tmp_path/'run')
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert (r.stderr.startswith('kdd-explore quickstart: error: ')
            and f'in use by another run: process {os.getpid()} on this machine since' in r.stderr)
    # the refused run wrote nothing (and the test's own lock is released)
    assert [p.name for p in (tmp_path/'run').iterdir()] == []

@pytest.mark.parametrize('args, message', [
    (['distill', '--experts', 'nowhere/experts', '--fraction', '-0.5'],
     "argument --fraction: must be a share in (0, 1], e.g. 0.02 for 2%; got '-0.5'"),
    (['distill', '--experts', 'nowhere/experts', '--fraction', '1.5'],
     "argument --fraction: must be a share in (0, 1]"),
    (['distill', '--experts', 'nowhere/experts', '--fraction', '5%'], "argument --fraction: must be a share in (0, 1]"),
    (['distill', '--experts', 'nowhere/experts', '--iterations', '0'],
     "argument --iterations: must be a whole number >= 1; got '0'"),
    (['experts', '--n-experts', '0'], "argument --n-experts: must be a whole number >= 1"),
    (['experts', '--epochs', '-3'], "argument --epochs: must be a whole number >= 1"),
    (['experts', '--width', '2.5'], "argument --width: must be a whole number >= 1"),
    (['teacher', '--epochs', '0'], "argument --epochs: must be a whole number >= 1"),
    (['data', '--n-train', '0'], "argument --n-train: must be a whole number >= 1")])
def test_numeric_options_are_checked_before_anything_else(tmp_path, args, message, capsys):
    "A bad number is refused by the parser with its own message, before the (missing) experts or data are looked at."
    rc, err = kdd_here(capsys, *args, '--out', tmp_path/'o')
    assert rc == 2 and 'Traceback' not in err
    assert f'kdd-explore {args[0]}: error: {message}' in err, err
    assert 'No artifact' not in err and not (tmp_path/'o').exists()

def _copy_artifact(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    for suf in ('.json', '.safetensors'): shutil.copyfile(f'{src}{suf}', f'{dst}{suf}')

def test_distill_reads_the_experts_of_a_run(quick_run, tmp_path):
    "`kdd-explore distill --experts RUN/experts/experts`: the representations are found without --representations."
    _, out = quick_run
    # the run's experts name them
    assert read_meta(out/'experts'/'experts')['representations'] == str(out/'representations')
    r = kdd('distill', '--experts', out/'experts'/'experts', '--out', 'd', '--iterations', 2, '--init', 'random',
            '--fraction', 0.05, '--quiet',
            cwd=tmp_path)  # from another folder than the run's
    assert r.returncode == 0, r.stderr
    assert read_meta(tmp_path/'d'/'synthetic_set')['n'] == 30  # 5% of the run's 600 images

def test_distill_finds_the_representations_of_an_older_or_moved_run(quick_run, tmp_path):
    "Experts whose metadata names no representations (runs before they did), or a path that has moved: found one folder up."
    _, out = quick_run
    run = tmp_path/'moved_run'
    _copy_artifact(out/'representations', run/'representations')
    _copy_artifact(out/'experts'/'experts', run/'experts'/'experts')
    meta = json.loads((run/'experts'/'experts.json').read_text())
    meta.pop('representations')  # as the pipeline recorded experts before
    (run/'experts'/'experts.json').write_text(json.dumps(meta))
    r = kdd('distill', '--experts', run/'experts'/'experts', '--out', tmp_path/'d', '--iterations', 1, '--init',
            'random', '--fraction', 0.05, '--quiet')
    assert r.returncode == 0, r.stderr
    assert read_meta(tmp_path/'d'/'synthetic_set')['n'] == 30

def test_distill_without_representations_names_the_option(quick_run, tmp_path):
    _, out = quick_run
    _copy_artifact(out/'experts'/'experts', tmp_path/'lone'/'experts'/'experts')
    meta = json.loads((tmp_path/'lone'/'experts'/'experts.json').read_text())
    meta['representations'] = str(tmp_path/'gone'/'representations')  # names a path that no longer exists
    (tmp_path/'lone'/'experts'/'experts.json').write_text(json.dumps(meta))
    r = kdd('distill', '--experts', tmp_path/'lone'/'experts'/'experts', '--out', tmp_path/'d',
            '--iterations', 1, '--quiet')
    assert r.returncode == 2 and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'Where are the teacher representations' in r.stderr and str(tmp_path/'gone'/'representations') in r.stderr
    assert 'Pass --representations PATH (Python: representations=PATH)' in r.stderr
    # the option, given: a wrong artifact is refused with why, the right one is used
    save_artifact(tmp_path/'small', {'representations': torch.zeros(5, 128)},
                  dict(kind='representations', n=5, dim=128))
    r = kdd('distill', '--experts', tmp_path/'lone'/'experts'/'experts', '--representations', tmp_path/'small', '--out',
            tmp_path/'d', '--iterations', 1, '--quiet')
    assert (r.returncode == 2 and 'do not fit the experts' in r.stderr
            and "5 images, the experts' training set has 600" in r.stderr), r.stderr
    r = kdd('distill', '--experts', tmp_path/'lone'/'experts'/'experts', '--representations',
            out/'representations', '--out', tmp_path/'d', '--iterations', 1, '--init', 'random',
            '--fraction', 0.05, '--quiet')
    assert r.returncode == 0, r.stderr

def test_distill_job_checks_its_settings_before_loading(tmp_path):
    from kdd_explore.core import KddError
    from kdd_explore.distill_job import distill_job
    for kw, msg in ((dict(fraction=-0.5), r'fraction must be a share in \(0, 1\]'),
                    (dict(fraction=float('nan')), 'fraction must be'),
                    (dict(size=0), 'size must be a whole number >= 1'), (dict(iterations=0), 'iterations must be >= 1'),
                    (dict(init='best'), "init must be 'high_loss' or 'random'"),
                    (dict(preset='gpu9'), 'Unknown preset')):
        # not 'No artifact'
        with pytest.raises(KddError, match=msg): distill_job(tmp_path/'no_experts_here', tmp_path/'d', **kw)
