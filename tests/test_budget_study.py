"The CIFAR-10 CPU recipe and the budget study at toy size: on fake 3x32x32 data and on a generated image folder (never on a real copy)."
import json, os, statistics, subprocess, sys
from pathlib import Path
import pytest, torch
from kdd_explore.data import load_dataset
from kdd_explore.own_data import example_image_folder
from kdd_explore.pipeline import get_config
from kdd_explore.probe import labelled_indices
from kdd_explore.data import stratified_indices

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'benchmarks'/'studies'))
import budget_study

def study(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, 'benchmarks/studies/budget_study.py', *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})

def check_study(out, saves, seeds=(0, 1)):
    "Every saved set evaluated (test and validation), the fixed methods once, the headline at the iteration the rule picks."
    s = json.loads((out/'budget_study.json').read_text())
    fractions = s['fractions']  # the recipe's 1% and 5%, as far as the data has labels for them
    assert s['saves'] == saves and sorted(s['iterations']) == sorted(map(str, saves))
    for t in saves:
        e = s['iterations'][str(t)]
        for split in ('test', 'val'):
            assert {(r['method'], r['label_fraction']) for r in e[split]} == {(m, f) for m in budget_study.PER_SET
                                                                              for f in fractions}
            assert all(len(r['accs']) == len(seeds) and 0 <= r['acc_mean'] <= 100 for r in e[split])
        assert all('kd_loss_mean' in r for r in e['test'])  # each encoder's pool KD loss
        assert (e['summary']['iteration'] == t and e['summary']['matching_loss'] > 0
                and 'ratio' in str(e['summary']['step_budget']))
    assert {r['method'] for r in s['fixed']['test']} == set(budget_study.FIXED)
    # the rule, recomputed from the validation rows alone
    score = {t: statistics.fmean(r['acc_mean'] for r in s['iterations'][str(t)]['val'] if r['method']
                                 == 'mkdt_high_loss') for t in saves}
    assert s['chosen'] == min(t for t in saves if score[t] == max(score.values()))
    assert s['headline']['iteration'] == s['chosen'] and s['rule'] == budget_study.RULE
    assert 'Headline (test, at the chosen' in (out/'budget_study.md').read_text()
    # the file says what made it: the command that reruns it (with this run's arguments), the machine, the date
    p = s['provenance']
    assert p['command'].startswith('python benchmarks/studies/budget_study.py ') and str(out) in p['command']
    assert 'torch' in p['machine'] and len(p['date']) == 10 and p['wall_s'] >= 0
    assert 'plotly' in (out/'budget_study.html').read_text()[:200000].lower()
    return s

def test_cifar10_cpu_recipe():
    c = get_config('cifar10_cpu')
    assert (c.dataset, c.depth, c.n_train, c.syn_fraction, c.teacher_arch, c.probe_labels, c.fractions) == \
           ('cifar10', 3, 5000, 0.02, 'small_resnet', 'full', (0.01, 0.05))
    assert c.student((3, 32, 32), 128)['depth'] == 3

def test_validation_images_lie_outside_the_pool_and_every_probe(tmp_path):
    cfg = get_config('cifar10_cpu', dataset='fake', n_train=300, seeds=(0, 1, 2))
    full = load_dataset('fake')
    vi = budget_study.validation_indices(cfg, full, 200)
    assert len(vi) == 200 == len(set(vi.tolist()))
    used = set(stratified_indices(full.y_train, 300 / len(full.y_train), seed=0).tolist())
    used |= {i for s in cfg.seeds for f in cfg.fractions for i in labelled_indices(full.y_train, f, s).tolist()}
    assert not used & set(vi.tolist())
    with pytest.raises(SystemExit, match='pass --n-val'): budget_study.validation_indices(cfg, full, 900)

@pytest.mark.slow
def test_budget_study_on_fake_at_toy_size(tmp_path):
    out = tmp_path/'study'
    r = study('--dataset', 'fake', '--config', 'cifar10_cpu', '--tiny', '--saves', '2,4', '--n-val',
              '200', '--out', out, '--quiet')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = check_study(out, [2, 4])
    assert s['evaluated'] == [2, 4] and s['complete'] and 'Partial' not in (out/'budget_study.md').read_text()
    # the recipe's CPU teacher
    assert json.loads((out/'run'/'teacher'/'teacher.json').read_text())['arch']['name'] == 'small_resnet'
    # the report written after the first save (while the study runs
    # on): marked partial, the choice among what was evaluated
    part = {**s, 'evaluated': [2], 'complete': False, 'chosen': 2}
    md = budget_study.tables(part)
    assert (md.startswith('**Partial**: 1 of the 2 saved iterations evaluated so far (2)')
            and '\n| 4 |' not in md and '\n| 2 ' in md)
    assert list(budget_study.figure(part).data[0].x) == [2]
    # the saved sets are read back: evaluating them again changes nothing
    again = study('--dataset', 'fake', '--config', 'cifar10_cpu', '--tiny', '--saves', '2,4', '--n-val', '200', '--out',
                  out, '--quiet', '--no-distill')
    assert again.returncode == 0 and json.loads((out/'budget_study.json').read_text())['iterations'] == s['iterations']
    # an iteration the run never reached is refused, naming what was saved
    bad = study('--dataset', 'fake', '--config', 'cifar10_cpu', '--tiny', '--saves', '2,4,6', '--n-val', '200', '--out',
                out, '--quiet', '--no-distill')
    assert bad.returncode != 0 and 'No set was saved at iteration 6: this run saved [2, 4]' in bad.stderr

@pytest.mark.slow
def test_budget_study_on_a_generated_image_folder(tmp_path):
    env = {'KDD_DATA': str(tmp_path/'data')}
    folder = example_image_folder(tmp_path/'imgs', n_classes=4, n_train=40, n_test=10, size=16)
    assert subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'register', 'shapes', folder],
                          capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT).returncode == 0
    out = tmp_path/'study'
    r = study('--dataset', 'shapes', '--config', 'cifar10_cpu', '--tiny', '--set', 'n_train=80', '--set', 'n_test=null',
              '--set', 'kd_eval_n=null', '--set', 'high_loss_clusters=2', '--set', 'distill.batch_syn=4', '--saves',
              '1,2', '--n-val', '40', '--out', out, '--quiet', env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = check_study(out, [1, 2])
    # 1% of 160 images would leave classes without a label: the recipe's fraction follows the data
    assert s['fractions'] == [0.05]
    assert s['pool'] == 80 and s['set_size'] == 4

@pytest.mark.slow
def test_budget_study_says_how_to_get_a_missing_or_half_registered_copy(tmp_path):
    env = {'KDD_DATA': str(tmp_path/'empty')}
    r = study('--dataset', 'cifar10_jpeg', '--out', tmp_path/'x', env=env)
    assert r.returncode != 0 and r.stderr.strip().count('\n') == 0
    assert 'cifar10_jpeg is not available here' in r.stderr and 'kdd-explore register cifar10_jpeg' in r.stderr
    env = {'KDD_DATA': str(tmp_path/'data')}
    # a copy that stopped half-way
    folder = example_image_folder(tmp_path/'imgs', n_classes=3, n_train=5, n_test=2, size=8)
    subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'register', 'cifar10_jpeg', folder], capture_output=True,
                   env={**os.environ, **env}, cwd=ROOT)
    r = study('--dataset', 'cifar10_jpeg', '--out', tmp_path/'x', env=env)
    assert r.returncode != 0 and 'half-extracted' in r.stderr and 'kdd-explore register cifar10_jpeg' in r.stderr
    assert not (tmp_path/'x').exists()  # nothing was run

@pytest.mark.slow
def test_budget_study_without_the_full_split_stops_before_any_work(tmp_path):
    "With only the shipped Fashion-MNIST slice (no Debian files, nothing under KDD_DATA) the study needs the whole split for its validation images: one clear stop, nothing run."
    env = {'KDD_DATA': str(tmp_path/'empty'), 'KDD_IGNORE_SYSTEM_DATA': '1'}
    r = study('--dataset', 'fashion_mnist', '--config', 'quickstart', '--out', tmp_path/'x',
              '--quiet', env=env, timeout=300)
    assert (r.returncode != 0 and "needs all of fashion_mnist's training images" in r.stderr
            and 'apt-get install dataset-fashion-mnist' in r.stderr)
    assert 'Traceback' not in r.stderr and not (tmp_path/'x').exists()
