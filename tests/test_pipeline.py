"The main job end to end at toy size (`kdd-explore quickstart --quick`), its outputs, reruns and refusals."
import json, re, subprocess, sys
from html.parser import HTMLParser
import pytest
from kdd_explore.core import KddError, artifact_exists
from kdd_explore.pipeline import METHODS, STAGES, get_config, run_pipeline, open_run

class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(); self.tags, self.imgs, self.scripts = [], [], 0
    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == 'img': self.imgs.append(dict(attrs))
        if tag == 'script': self.scripts += 1

def test_results_json_has_every_method_and_fraction(quick_run):
    _, out = quick_run
    res = json.loads((out/'results.json').read_text())
    from kdd_explore.data import dataset_info
    # the recipe fitted to the data: what the run used and recorded
    cfg = get_config('quick').check(dataset_info('fashion_mnist'))
    assert (res['dataset'] == 'fashion_mnist'
            and res['config'] == cfg.to_dict() == json.loads((out/'config.json').read_text()))
    # the only size of `quick` that Fashion-MNIST changes (sets of 30 images)
    assert list(res['config']['adapted']) == ['eval_batch_size']
    got = {(r['method'], r['label_fraction']) for r in res['results']}
    assert got == {(m, f) for m in METHODS for f in cfg.fractions}
    for r in res['results']:
        assert len(r['accs']) == len(cfg.seeds)
        assert all(0 <= a <= 100 for a in r['accs']) and 0 <= r['acc_mean'] <= 100 and r['acc_std'] >= 0
        assert min(r['accs']) - 1e-6 <= r['acc_mean'] <= max(r['accs']) + 1e-6
    # any encoder, even a random one, is far above chance (10%) on Fashion-MNIST with 5% of the 60,000 labels
    assert all(r['acc_mean'] > 30 for r in res['results'] if r['label_fraction'] == 0.05)
    assert set(res['timings']) >= {'data', 'teacher', 'experts', 'mkdt_high_loss', 'mtt_ssl', 'evaluation', 'report'}
    assert {r['method'] for r in res['transfer']} >= {'no_pretrain', 'random_subset', 'mkdt_high_loss'}

def test_ablation_takes_the_distilled_set_apart(quick_run):
    _, out = quick_run
    res = json.loads((out/'results.json').read_text())
    from kdd_explore.evaluate import ABLATIONS
    cfg = get_config('quick')
    assert {(r['method'], r['label_fraction']) for r in res['ablation']} == {(m, f)
                                                                             for m in ABLATIONS for f in cfg.fractions}
    by = lambda rows, m: [r['accs'] for r in rows if r['method'] == m]
    assert by(res['ablation'], 'distilled') == by(res['results'], 'mkdt_high_loss')  # the same set, the same seeds
    # the real high-loss subset at the initial lr is the high-loss baseline, evaluated a second time: the same numbers
    assert by(res['ablation'], 'initial_set') == by(res['results'], 'high_loss_subset')
    # cached per part
    assert all((out/'evaluation'/'ablation'/f'{m}.json').exists() for m in ABLATIONS if m != 'distilled')

def test_report_parses_and_holds_plots_and_images(quick_run):
    _, out = quick_run
    html = (out/'report.html').read_text()
    p = _Tags(); p.feed(html)
    assert p.tags.count('section') >= 5
    assert html.count('Plotly.newPlot') >= 4  # accuracy, curves, KRR-ST's loss, variance
    srcs = [i['src'] for i in p.imgs]
    # initial + distilled, 4 sets (MKDT x 2, MTT-SSL, KRR-ST)
    assert len(srcs) == 8 and all(s.startswith('data:image/png;base64,') for s in srcs)
    assert 'mkdt_high_loss' in html and 'no_pretrain' in html
    assert not re.search(r'<script[^>]*src=["\']https?:', html)  # self-contained: no script from the network

def test_every_stage_left_its_artifacts(quick_run):
    _, out = quick_run
    for a in ('representations', 'experts/experts', 'ssl_experts', 'mkdt_high_loss/synthetic_set',
              'mkdt_random_init/synthetic_set', 'mtt_ssl/synthetic_set', 'mkdt_high_loss/history',
              'krr_st/synthetic_set', 'krr_st/history', 'krr_st/checkpoint'):
        assert artifact_exists(out/a), a
    for f in ('config.json', 'subsets.json', 'variance/variance.json', 'variance/variance.html',
              'results.json', 'report.html'):
        assert (out/f).exists(), f
    assert not list(out.rglob('*.tmp'))  # no half-written file

def test_progress_is_shown_per_stage(quick_run):
    r, _ = quick_run
    for i, stage in enumerate(['data', 'teacher', 'representations', 'experts'], 1):
        assert f'[{i}/{len(STAGES)}] {stage}' in r.stdout

def test_rerun_reuses_finished_stages_and_interrupted_evaluation_continues(quick_run, tmp_path):
    _, out = quick_run
    before = json.loads((out/'results.json').read_text())
    ev = out/'evaluation'
    # as if the run was interrupted during the evaluation of mtt_ssl: its seed 0 finished, its seed 1 not
    (ev/'mtt_ssl.json').unlink()
    (ev/'jobs'/'mtt_ssl__seed1.json').unlink()
    (ev/'horizon.json').unlink(); (ev/'horizon_jobs'/'mkdt_high_loss__seed1.json').unlink()  # and of the horizon check
    kept = {p: p.stat().st_mtime_ns for p in (out/'experts'/'experts.safetensors',
                                              out/'mkdt_high_loss'/'synthetic_set.safetensors',
                                               ev/'jobs'/'mtt_ssl__seed0.json',
                                              ev/'horizon_jobs'/'mkdt_high_loss__seed0.json')}
    res = run_pipeline('quick', out, progress=False)
    # the same seeds give the same numbers
    assert res['results'] == before['results'] and res['horizon'] == before['horizon']
    # read back, not recomputed: the artifacts and finished jobs were not written again
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    # the interrupted part was done again
    assert (ev/'mtt_ssl.json').exists() and (ev/'jobs'/'mtt_ssl__seed1.json').exists()
    assert (ev/'horizon_jobs'/'mkdt_high_loss__seed1.json').exists()

def test_out_folder_of_another_config_is_refused(quick_run):
    _, out = quick_run
    with pytest.raises(KddError, match='another configuration \\(different: seed\\)'):
        open_run(out, get_config('quick', seed=5))
    r = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'run', '--config', 'quick', '--dataset',
                        'digits', '--out', str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and 'another configuration' in r.stderr and 'Traceback' not in r.stderr

@pytest.mark.slow
def test_unknown_config_is_a_clear_cli_error():
    r = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'run', '--config', 'cifar1000', '--out', '/tmp/x'],
                       capture_output=True, text=True)
    assert r.returncode == 2 and 'Known: quickstart, quick' in r.stderr

@pytest.mark.slow
def test_gpu_config_code_path_runs_on_cpu_with_fake_data(tmp_path):
    "The CIFAR-10 2% configuration's code path (3x32x32 images, paper preset, ResNet-10 transfer) at toy size on the CPU."
    import dataclasses
    from kdd_explore.distill import DistillConfig
    from kdd_explore.models import SmallResNet
    from kdd_explore.ssl import save_teacher
    teacher = SmallResNet(3, widths=(8, 8, 16, 16))
    save_teacher(tmp_path/'teacher', teacher, {'dataset': 'fake'})
    paper = get_config('cifar10_2pct')
    assert (paper.width == 128 and paper.n_experts == 100
            and paper.distill_config() == DistillConfig.preset('cifar10_2pct'))
    cfg = get_config('cifar10_2pct', dataset='fake', dataset_options={'shape': [3, 32, 32], 'n_classes': 4},
                     n_train=200, n_test=80, teacher=str(tmp_path/'teacher'), width=8, n_experts=2, expert_epochs=3,
                     n_ssl_experts=1, ssl_expert_epochs=3, distill=dict(paper.distill, iterations=2, syn_steps=2,
                                                                        snapshot_every=1, checkpoint_every=1),
                     eval_epochs=1, fractions=(0.1,), seeds=(0,), variance=False, horizon_steps=(0, 1))
    res = run_pipeline(cfg, tmp_path/'run', progress=False)
    # the CIFAR recipes leave KRR-ST off
    assert {r['method'] for r in res['results']} == set(METHODS) - {'krr_st', 'krr_st_at_learned_lr'}
    assert res['config']['transfer']['name'] == 'resnet10_cifar' and res['transfer']
    assert (tmp_path/'run'/'report.html').exists()

def test_a_second_run_on_a_locked_folder_is_refused_at_once(tmp_path):
    "Two runs on one folder: the second is refused before it writes anything, naming the first."
    import os, time
    from kdd_explore.core import RunLock
    with RunLock(tmp_path/'run'):
        with pytest.raises(KddError, match=rf'in use by another run: process {os.getpid()} .* since '):
            run_pipeline('quick', tmp_path/'run', progress=False)
        assert [p.name for p in (tmp_path/'run').iterdir()] == ['.lock']  # no config.json, nothing else

def test_the_lock_is_released_when_a_run_fails_or_is_interrupted(tmp_path, monkeypatch):
    from kdd_explore import pipeline
    with pytest.raises(KddError, match='Unknown dataset'):
        run_pipeline(get_config('quick', dataset='nope'), tmp_path/'a', progress=False)
    assert list((tmp_path/'a').iterdir()) == []  # refused by the up-front check: no config.json, and the lock is gone
    def ctrl_c(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, 'load_dataset', ctrl_c)
    with pytest.raises(KeyboardInterrupt): run_pipeline('quick', tmp_path/'b', progress=False)
    assert (tmp_path/'b'/'config.json').exists() and not (tmp_path/'b'/'.lock').exists()

def test_overwrite_keeps_the_lock_and_out_file_is_refused(tmp_path):
    from kdd_explore.core import RunLock
    with RunLock(tmp_path/'r') as lock:
        open_run(tmp_path/'r', get_config('quick'))  # the run's own lock does not make the folder "not empty"
        (tmp_path/'r'/'stale.json').write_text('{}')
        open_run(tmp_path/'r', get_config('quick', seed=3), overwrite=True)
        assert sorted(p.name for p in (tmp_path/'r').iterdir()) == ['.lock', 'config.json']
    assert not (tmp_path/'r'/'.lock').exists()
    (tmp_path/'file').write_text('x')
    for out in (tmp_path/'file', tmp_path/'file'/'run'):
        with pytest.raises(KddError, match=r'--out .* (is a file, not a folder|cannot be a folder)'):
            run_pipeline('quick', out, progress=False)
    assert (tmp_path/'file').read_text() == 'x'

def test_a_moved_or_older_run_still_resumes(quick_run, tmp_path):
    "The experts record where the representations lie, but do not compare it: a moved run, or one recorded before, resumes."
    import shutil
    from kdd_explore.core import read_meta
    _, out = quick_run
    before = json.loads((out/'results.json').read_text())
    for name, strip in (('moved', False), ('older', True)):
        run = tmp_path/name
        shutil.copytree(out, run)
        if strip:  # experts as the pipeline recorded them before they named their representations
            meta = json.loads((run/'experts'/'experts.json').read_text()); meta.pop('representations')
            (run/'experts'/'experts.json').write_text(json.dumps(meta))
        kept = (run/'mkdt_high_loss'/'synthetic_set.safetensors').stat().st_mtime_ns
        res = run_pipeline('quick', run, progress=False)
        assert res['results'] == before['results']
        # the finished stages were read back, not redone
        assert (run/'mkdt_high_loss'/'synthetic_set.safetensors').stat().st_mtime_ns == kept
        # now names this folder's
        assert read_meta(run/'experts'/'experts')['representations'] == str(run/'representations')

def test_krr_st_is_a_row_of_every_table(quick_run):
    "`--quick` runs the KRR-ST baseline: results.json, the findings, the transfer table, the report, the dashboard and the image browser show it."
    from kdd_explore.distill import DistillHistory, SyntheticSet
    from kdd_explore.widgets import ResultsDashboard, SnapshotBrowser
    _, out = quick_run
    res = json.loads((out/'results.json').read_text())
    cfg = get_config('quick')
    assert 'krr_st' in cfg.distilled_baselines
    for m in ('krr_st', 'krr_st_at_learned_lr'):
        assert sorted(r['label_fraction'] for r in res['results'] if r['method'] == m) == sorted(cfg.fractions)
    assert 'krr_st' in {r['method'] for r in res['transfer']}
    assert {'krr_st_vs_random', 'mkdt_vs_krr_st'} <= set(res['findings']) and 'krr_st' in res['timings']
    info = res['synthetic_sets']['krr_st']
    assert (info['n'] == res['synthetic_sets']['mkdt_random_init']['n']
            and abs(info['lr'] - cfg.krr_st['pretrain_lr']) < 1e-6)
    syn = SyntheticSet.load(out/'krr_st'/'synthetic_set')
    subsets = json.loads((out/'subsets.json').read_text())
    # from the random subset, as mkdt_random_init
    assert syn.meta['init_indices'] == subsets['random'] and syn.meta['distilled'] == 'krr_st'
    html = (out/'report.html').read_text()
    assert ('KRR-ST: its outer loss' in html and 'krr_st: after distillation (fixed lr 0.1)' in html
            and 'krr_st_at_learned_lr' in html)
    assert 'krr_st' in ResultsDashboard(out/'results.json').methods
    hist = DistillHistory.load(out/'krr_st'/'history')
    assert SnapshotBrowser(hist).iterations == [0, 3, 6] and len(hist.records) == cfg.krr_st['iterations']


def test_the_experts_optimiser_is_a_recipe_setting(tmp_path):
    "expert_lr / expert_momentum / expert_weight_decay reach the experts (recorded in their metadata) and change them; bad values are refused."
    import torch
    from kdd_explore.data import dataset_info
    from kdd_explore.recipes import get_config, ConfigError
    from kdd_explore.pipeline import get_experts
    g = torch.Generator().manual_seed(0)
    x, reps = torch.randn(64, 1, 8, 8, generator=g), torch.randn(64, 4, generator=g)
    arch = dict(name='convnet', in_channels=1, im_size=8, width=4, depth=2, out_dim=4, norm='instance')
    moves = {}
    for name, changes in (('reference', {}), ('mtt', dict(expert_lr=0.01, expert_momentum=0.0,
                                                          expert_weight_decay=0.0))):
        cfg = get_config('quick', n_experts=1, expert_epochs=2, expert_batch_size=16, **changes)
        ex = get_experts(cfg, arch, x, reps, tmp_path/name, 'cpu', False, {})
        assert (ex.meta['lr'], ex.meta['momentum'],
                ex.meta['weight_decay']) == (cfg.expert_lr, cfg.expert_momentum, cfg.expert_weight_decay)
        a, b = ex.params(0, 0), ex.params(0, 2)
        moves[name] = float(sum((b[k] - a[k]).pow(2).sum() for k in a)) ** 0.5
    # ten times smaller steps without momentum's tenfold reach: the experts travel far less
    assert moves['mtt'] < moves['reference'] / 5
    with pytest.raises(ConfigError, match=r'expert_lr=0: must be a number > 0'):
        get_config('quick', expert_lr=0).check(dataset_info('fashion_mnist'))
