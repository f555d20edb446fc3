"A named configuration on any dataset: the quick recipe end to end on digits and fake 3x32x32 (on your own folder: nbs/09c_pipeline's last cell); one up-front check; --set."
import json, os, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import kdd_here
from kdd_explore.core import KddError
from kdd_explore.data import DatasetInfo, dataset_info
from kdd_explore.pipeline import METHODS, ConfigError, PipelineConfig, get_config, run_pipeline
from kdd_explore.recipes import parse_settings

ROOT = Path(__file__).resolve().parents[1]

def kdd(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, '-m', 'kdd_explore.cli', *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})

def finished(out, r):
    "The run in `out` finished: every method evaluated, the report written; returns (results, config.json)."
    assert r.returncode == 0, f'{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    res, used = json.loads((out/'results.json').read_text()), json.loads((out/'config.json').read_text())
    assert {x['method'] for x in res['results']} == set(METHODS) and (out/'report.html').exists()
    assert res['config'] == used and used['explicit'] == ['dataset']  # the recipe, only the dataset changed
    assert all(0 <= x['acc_mean'] <= 100 for x in res['results'])
    return res, used

@pytest.mark.slow
def test_quick_runs_on_digits_with_no_other_change(tmp_path):
    out = tmp_path/'run'
    r = kdd('run', '--config', 'quick', '--dataset', 'digits', '--out', out)
    res, used = finished(out, r)
    assert (used['n_test'], used['depth'], used['eval_batch_size']) == (None, 3, 30)
    assert used['adapted']['n_test'] == {'recipe': 500, 'used': None, 'why': 'digits has 360 test images'}
    assert ('Settings that follow the data (recorded in config.json):\n'
            '  n_test: 500 -> null (digits has 360 test images)') in r.stdout
    assert json.loads((out/'experts'/'experts.json').read_text())['arch']['depth'] == 3
    # no teacher ships for digits: one is trained, its time said first
    assert 'teacher: ' in r.stdout and 'expect about' in r.stdout
    # a rerun reads every stage back: the same (fitted) configuration
    again = kdd('run', '--config', 'quick', '--dataset', 'digits', '--out', out)
    assert again.returncode == 0 and json.loads((out/'results.json').read_text())['results'] == res['results']

@pytest.mark.slow
def test_quick_runs_on_fake_3x32x32_with_no_other_change(tmp_path):
    out = tmp_path/'run'
    res, used = finished(out, kdd('run', '--config', 'quick', '--dataset', 'fake', '--out', out))
    assert (res['config']['dataset_options'] == {}
            and json.loads((out/'experts'/'experts.json').read_text())['dataset']['shape'] == [3, 32, 32])
    # 600 of 1,000 images and 500 test images fit; only the batch follows the 30-image sets
    assert set(used['adapted']) == {'eval_batch_size'}

def test_one_check_reports_every_conflict_of_a_bad_config_before_any_work(tmp_path, capsys):
    out = tmp_path/'run'
    rc, err = kdd_here(capsys, 'run', '--config', 'quickstart', '--dataset', 'digits', '--out', out, '--set',
            'n_train=5000', '--set', 'n_test=500', '--set', 'depth=4', '--set', 'high_loss_clusters=50', '--set',
            'eval_batch_size=256', '--set', 'fractions=[0.001,0.05]', '--set', 'expert_epochs=2', '--set',
            'teacher=no/such/teacher')
    # refused before any work: nothing written
    assert rc == 2 and 'Traceback' not in err and not (out.exists() and any(out.iterdir()))
    lines = err.strip().splitlines()
    assert lines[0].startswith('kdd-explore run: error: The configuration does not fit digits (1x8x8 images, 1,437 '
                               'train / 360 test, 10 classes): 8 settings to change') and 'Nothing was run.' in lines[0]
    for setting, fix in [('n_train=5000', 'set n_train=1437'), ('n_test=500', 'set n_test=360'),
                         ('teacher="no/such/teacher"', 'check the path'), ('depth=4', 'set depth=3'),
                         ('high_loss_clusters=50', 'set high_loss_clusters=29'),
                         ('distill.max_start_epoch=3', 'set distill.max_start_epoch=1'),
                         ('eval_batch_size=256', 'set eval_batch_size=29'), ('fractions=[0.001, 0.05]',
                                                                             'set fractions=[0.05]')]:
        assert sum(l.startswith(f'  - {setting}: ') and f'Fix: {fix}' in l for l in lines) == 1, (setting, err)
    assert len(lines) == 9 and not list(out.iterdir())  # one message; nothing written
    # the same from Python: explicit values are never changed to fit, each is a conflict
    with pytest.raises(ConfigError, match='2 settings to change') as e:
        get_config('quick', dataset='digits', n_test=500, depth=4).check(dataset_info('digits'))
    assert ('n_test=500: digits has 360 test images' in str(e.value)
            and 'depth=4: a ConvNet of depth 4 pools 8x8 images' in str(e.value))

def test_recipe_values_follow_the_data_and_explicit_ones_do_not():
    small = DatasetInfo('small', (3, 8, 8), ['a', 'b', 'c'], [10, 10, 10], [4, 4, 4])
    fit = get_config('quick', dataset='small').check(small)
    assert (fit.n_train, fit.n_test, fit.depth, fit.high_loss_clusters, fit.eval_batch_size,
            fit.distill['batch_syn']) == (None, None, 3, 2, 2, 2)
    # 1% and 5% of 10 images per class round to none: raised to one per class
    assert fit.fractions == (0.1,) and fit.horizon_fraction == 0.1
    # 30 images: too few for the variance study's two batch sizes
    assert fit.horizon_steps == (0, 1, 3) and fit.variance is False
    assert (fit.adapted['fractions']['recipe'] == [0.01, 0.05]
            and 'without a labelled example' in fit.adapted['fractions']['why'])
    assert fit.check(small) == fit  # fitted once, it fits
    with pytest.raises(ConfigError, match=r'fractions=\[0.05\]: label fraction 0.05 .* Fix: set fractions=\[0.1\]'):
        get_config('quick', dataset='small', fractions=(0.05,)).check(small)
    with pytest.raises(ConfigError, match=r'horizon_steps=\[0, 4\]: steps \[4\] are past the end of pre-training \(3 '
                                          r'epochs of 1 step on the 2 images = 3\)'):
        get_config('quick', dataset='small', horizon_steps=(0, 4)).check(small)

@pytest.mark.slow
def test_set_changes_any_setting_and_refuses_unknown_keys(tmp_path, capsys):
    out = tmp_path/'run'
    r = kdd('run', '--config', 'quick', '--dataset', 'digits', '--out', out, '--quiet', '--set',
            'n_train=300', '--set', 'seeds=[0]', '--set', 'fractions=[0.5]', '--set', 'distill.iterations=2', '--set',
            'distilled_baselines=[]', '--set', 'transfer=null', '--set', 'ablation=false', '--set', 'variance=false',
            '--set', 'horizon_steps=null')
    assert r.returncode == 0, r.stderr
    used = json.loads((out/'config.json').read_text())
    assert (used['n_train'], used['seeds'], used['distill']['iterations'], used['transfer'],
            used['distilled_baselines']) == (300, [0], 2, None, [])
    assert used['explicit'] == sorted(['ablation', 'dataset', 'distill.iterations', 'distilled_baselines',
                                       'fractions', 'horizon_steps', 'n_train', 'seeds', 'transfer', 'variance'])
    res = json.loads((out/'results.json').read_text())
    assert {x['label_fraction'] for x in res['results']} == {0.5} and all(len(x['accs']) == 1 for x in res['results'])
    for bad, says in ((['n_trains=300'], "unknown setting 'n_trains'"),
                      (['seeds=0'], 'seeds takes a list, got 0 (a whole number)'),
                      (['distill.lr=1'], "unknown setting 'distill.lr'"), (['depth'], "'depth' is not KEY=VALUE")):
        args = [a for b in bad for a in ('--set', b)]
        rc, err = kdd_here(capsys, 'run', '--config', 'quick', '--out', tmp_path/'never', *args)  # refused before any work
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert (err.startswith(f'kdd-explore run: error: --set: {says}')
                and 'Known settings: dataset, dataset_options, n_train' in err)
        assert 'distill.iterations' in err and not (tmp_path/'never').exists()
    assert parse_settings(['teacher=runs/t/teacher', 'first_padding=reference', 'dataset_options.shape=[1,16,16]']) == \
           {'teacher': 'runs/t/teacher', 'first_padding': 'reference', 'dataset_options.shape': [1, 16, 16]}

def test_stage_commands_check_their_options_first(tmp_path, capsys):
    rc, err = kdd_here(capsys, 'experts', '--dataset', 'digits', '--depth', '4', '--out', tmp_path/'e')
    assert rc == 2 and '2 settings to change' in err and 'Fix: --depth 3 or leave out --depth' in err
    assert "no teacher is shipped for 'digits'" in err and not (tmp_path/'e').exists()
    rc, err = kdd_here(capsys, 'teacher', '--dataset', 'digits', '--n-train', 5000, '--out', tmp_path/'t')
    assert rc == 2 and ('n_train=5000: digits has 1,437 train images. Fix: --n-train 1437 or leave out '
                        '--n-train') in err
