"Where MKDT's gain comes from: the reference's student and probe, lr-controlled baselines, equal minibatches, the horizon check."
import json, subprocess, sys, warnings
import pytest
import torch
from torch import nn
from kdd_explore.core import KddError, make_generator
from kdd_explore.data import equal_batches
from kdd_explore.models import ConvNet, build_model, canonical_arch
from kdd_explore.kd import student_arch, train_kd, record_experts, reference_padding
from kdd_explore.probe import linear_probe, ProbeWarning
from kdd_explore.distill import minibatch_schedule, step_budget, DistillConfig
from kdd_explore.pipeline import get_config, open_run, run_pipeline
from conftest import ROOT

# --- the reference's padded student

def test_padded_student_shapes_and_parameter_count():
    net = ConvNet(1, 28, width=32, depth=3, out_dim=512, first_padding=3)
    sizes = []
    for m in net.body:
        if isinstance(m, nn.AvgPool2d): m.register_forward_hook(lambda mod, i, o: sizes.append(o.shape[-1]))
    first = []
    net.body[0].register_forward_hook(lambda mod, i, o: first.append(o.shape[-1]))
    assert net.features(torch.randn(3, 1, 28, 28)).shape == (3, 512)
    assert first == [32] and sizes == [16, 8, 4]  # 28 is mapped as 32: 32 -> 16 -> 8 -> 4
    by_hand = (1 * 32 * 9 + 32) + 2 * (32 * 32 * 9 + 32) + 3 * (2 * 32) + (32 * 16 * 512 + 512)
    assert sum(p.numel() for p in net.parameters()) == by_hand == 281_664
    paper = ConvNet(1, 28, width=128, depth=3, out_dim=512, first_padding=3)
    assert paper.feat_dim == 2048  # the reference's 2,048-d features at width 128
    assert ConvNet(1, 28, width=32, depth=4).feat_dim == 32  # today's depth-4 student: 32 numbers for the probe

def test_reference_padding_follows_the_image_shape_and_survives_artifacts(tmp_path):
    assert reference_padding((1, 28, 28)) == 3 and reference_padding((3, 32, 32)) == 1
    arch = student_arch((1, 28, 28), 16, width=8, first_padding='reference')
    assert arch['first_padding'] == 3 and arch['depth'] == 3
    assert student_arch((3, 32, 32), 16, width=8, first_padding='reference')['first_padding'] == 1
    x, y = torch.randn(40, 1, 28, 28), torch.randn(40, 16)
    ex = record_experts(arch, x, y, n_experts=1, epochs=2, batch_size=20, progress=False, out=tmp_path)
    ex.check_arch(build_model(arch).arch)  # the full arch a model records matches
    with pytest.raises(KddError, match='another architecture|recorded for architecture'):
        ex.check_arch(student_arch((1, 28, 28), 16, width=8))  # padding 1 is another student
    # an arch written by hand without the new key is the padding-1 student
    assert canonical_arch({k: v for k, v in student_arch((1, 28, 28), 16, width=8).items() if k
                           != 'first_padding'}) == \
           canonical_arch(student_arch((1, 28, 28), 16, width=8))

@pytest.mark.slow
def test_pipeline_with_the_padded_student_end_to_end(tmp_path):
    "Experts, distillation, evaluation and the horizon check with the reference's padded student, at toy size."
    cfg = get_config('quick', dataset='fake', dataset_options={'shape': [1, 28, 28], 'n_classes': 4},
                     n_train=200, n_test=80, depth=3, first_padding='reference', width=8, high_loss_clusters=None,
                     distilled_baselines=(), transfer=dict(name='small_resnet',
                                                           widths=[4, 4, 8, 8], blocks=[1, 1, 1, 1]),
                     teacher=None, variance=False, fractions=(0.1,), seeds=(0,), teacher_epochs=1)
    res = run_pipeline(cfg, tmp_path/'run', progress=False)
    assert res['config']['first_padding'] == 'reference'
    meta = json.loads((tmp_path/'run'/'experts'/'experts.json').read_text())
    assert meta['arch']['first_padding'] == 3
    assert {r['method'] for r in res['results']} >= {'mkdt_high_loss', 'mkdt_initial_at_learned_lr',
                                                     'random_subset_at_learned_lr'}
    assert res['transfer'] and res['horizon']

# --- the reference probe

def _separable(n=400, k=4, seed=0):
    g = make_generator(seed)
    y = torch.arange(n) % k
    return torch.nn.functional.one_hot(y, k).double() * 3 + 0.3 * torch.randn(n, k, generator=g, dtype=torch.float64), y

def test_reference_probe_works_on_well_scaled_features():
    f, y = _separable()
    assert linear_probe(f[:200], y[:200], f[200:], y[200:], protocol='reference') == 100.0

def test_reference_probe_sits_at_chance_on_badly_scaled_features_and_says_so():
    "The reference's chance-level rows: L-BFGS at lr 1 without a line search explodes on offset features; the standard probe does not."
    f, y = _separable()
    bad = f + 1000.0  # the same information, shifted (as un-normalised activations can be)
    assert linear_probe(bad[:200], y[:200], bad[200:], y[200:]) == 100.0
    with pytest.warns(ProbeWarning, match='diverged'):
        acc = linear_probe(bad[:200], y[:200], bad[200:], y[200:], protocol='reference')
    assert acc == 25.0  # one class of four, exactly chance

def test_probe_refuses_nan_and_collapsed_features_and_unknown_protocols():
    f, y = _separable()
    with pytest.raises(KddError, match='NaN'):
        linear_probe(torch.where(f > 2, float('nan'), f)[:200], y[:200], f[200:], y[200:])
    with pytest.raises(KddError, match='NaN'):
        linear_probe(f[:200], y[:200], f[200:] * float('inf'), y[200:], protocol='reference')
    with pytest.raises(KddError, match='constant'):
        linear_probe(torch.zeros(200, 4), y[:200], f[200:], y[200:])
    with pytest.raises(KddError, match='Unknown probe protocol'):
        linear_probe(f[:200], y[:200], f[200:], y[200:], protocol='reference2')
    some = torch.cat([f, torch.full((400, 2), 7.0)], 1)  # constant columns are ignored (documented fallback)
    assert linear_probe(some[:200], y[:200], some[200:], y[200:]) == 100.0

# --- equal minibatches

def test_kd_training_steps_are_equal_sized():
    seen = []
    class Spy(nn.Module):
        def __init__(self): super().__init__(); self.lin = nn.Linear(4, 2)
        def forward(self, x): seen.append(len(x)); return self.lin(x.flatten(1))
    steps = []
    train_kd(Spy(), torch.randn(100, 1, 2, 2), torch.randn(100, 2), epochs=2, batch_size=32, progress=False,
             on_step=lambda s, m: steps.append(s))
    assert seen == [25] * 8  # not 32, 32, 32, 4
    assert steps == list(range(9))  # step 0 = before training, then one call per step

def test_inner_loop_and_epoch_batches_are_equal_sized():
    assert [len(b) for b in minibatch_schedule(100, 32, 8, make_generator(0))] == [25] * 8
    for n, b in ((5000, 64), (1200, 256), (7, 3), (10, 10)):
        sizes = [len(i) for i in equal_batches(n, b, make_generator(1))]
        assert max(sizes) - min(sizes) <= 1 and max(sizes) <= b and sum(sizes) == n and len(sizes) == -(-n // b)

def test_step_budget_of_the_papers_setting():
    ex = type('E', (), {'meta': dict(n_train=50_000, batch_size=256, lr=0.1, momentum=0.9)})()
    sb = step_budget(ex, DistillConfig.preset('cifar10_2pct'))
    assert sb['expert_steps'] == 392 and abs(sb['ratio'] - 4 / 392) < 1e-12

# --- the pipeline: lr-controlled baselines, findings, the horizon check, bad input

def test_lr_controlled_baselines_and_findings_in_the_quick_run(quick_run):
    _, out = quick_run
    res = json.loads((out/'results.json').read_text())
    rows = {(r['method'], r['label_fraction']): r for r in res['results']}
    for m in ('random_subset_at_learned_lr', 'mkdt_initial_at_learned_lr'):
        assert all((m, f) in rows for f in res['config']['fractions'])
        assert (out/'evaluation'/f'{m}.json').exists()
    assert all('kd_loss_mean' in r and r['kd_loss_mean'] > 0 for r in res['results'])
    f = res['findings']
    assert (f['images_and_targets']['a'] == 'mkdt_high_loss'
            and f['images_and_targets']['b'] == 'mkdt_initial_at_learned_lr')
    g = f['headroom']['by_fraction']['0.05']
    want = rows['full_data_kd', 0.05]['acc_mean'] - rows['random_subset', 0.05]['acc_mean']
    # the mean paired difference (of accuracies rounded to 3 decimals) and its t interval over the run's seeds
    assert abs(g['gap'] - want) < 2e-3 and g['lo'] <= g['gap'] <= g['hi'] and g['n'] == len(res['config']['seeds'])
    assert g['beats'] == (g['lo'] > 0) and g['claim'] in ('gain', 'loss', 'tie')
    sb = res['synthetic_sets']['mkdt_high_loss']
    assert 0 < sb['matching_loss_start'] and 0 < sb['matching_loss_end']
    assert sb['step_budget_learned']['syn_budget'] == pytest.approx(sb['step_budget_learned']['syn_steps'] * sb['lr'])
    html = (out/'report.html').read_text()
    assert ('What the distilled images and targets add beyond the learned lr' in html
            and 'random_subset_at_learned_lr' in html)
    assert 'Can the synthetic steps reach the target?' in html

def test_horizon_check_on_the_quick_run(quick_run):
    _, out = quick_run
    res = json.loads((out/'results.json').read_text())
    hz = res['horizon']
    steps = tuple(res['config']['horizon_steps'])
    assert {(r['method'], r['step']) for r in hz} == {(m, t) for m in ('mkdt_high_loss', 'mkdt_initial_at_learned_lr')
                                                      for t in steps}
    at = {(r['method'], r['step']): r for r in hz}
    # the same initialisations
    assert at['mkdt_high_loss', 0]['kd_losses'] == at['mkdt_initial_at_learned_lr', 0]['kd_losses']
    for m in ('mkdt_high_loss', 'mkdt_initial_at_learned_lr'):
        assert at[m, steps[-1]]['kd_loss_mean'] < at[m, 0]['kd_loss_mean']  # pre-training moves toward the teacher
    assert 'The horizon check' in (out/'report.html').read_text()

def test_bad_settings_are_refused_before_any_work(tmp_path):
    with pytest.raises(KddError, match="Unknown probe_protocol 'ref'"):
        get_config('quick', probe_protocol='ref')
    with pytest.raises(KddError, match="probe_labels must be 'pool' or 'full'"):
        get_config('quick', probe_labels='all')
    with pytest.raises(KddError, match='pools 28x28 images'):
        run_pipeline(get_config('quick', depth=5), tmp_path/'deep', progress=False)
    assert not (tmp_path/'deep'/'representations.json').exists()  # refused before the teacher's representations

def test_resuming_with_another_student_or_probe_is_refused(quick_run):
    _, out = quick_run
    with pytest.raises(KddError, match='first_padding'):
        open_run(out, get_config('quick', first_padding='reference'))
    with pytest.raises(KddError, match='probe_protocol'):
        open_run(out, get_config('quick', probe_protocol='reference'))

@pytest.mark.slow
def test_protocol_study_at_toy_size(tmp_path):
    "benchmarks/studies/protocol_study.py --quick: two of the four (probe, labels) settings (each protocol, each label source) with their headroom; a rerun reads every result back."
    cmd = [sys.executable, 'benchmarks/studies/protocol_study.py', '--out', str(tmp_path/'ps'),
           '--quick', '--students', 'padded3', '--seeds', '0,1', '--fractions', '0.05', '--probes',
           'standard/full,reference/pool', '--quiet']
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'ps'/'protocol_study.json').read_text())
    settings = {(x['protocol'], x['labels']) for x in res['rows']}
    assert settings == {('standard', 'full'), ('reference', 'pool')}
    assert {x['method'] for x in res['rows']} == {'no_pretrain', 'random_subset', 'random_subset_at_learned_lr',
                                                  'high_loss_subset',
                                                 'mkdt_high_loss', 'mkdt_initial_at_learned_lr', 'full_data_kd'}
    md = (tmp_path/'ps'/'protocol_study.md').read_text()
    assert 'headroom: full KD - random (stds)' in md and md.count('| padded3 |') == 2
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert (again.returncode == 0
            and json.loads((tmp_path/'ps'/'protocol_study.json').read_text())['rows'] == res['rows'])
