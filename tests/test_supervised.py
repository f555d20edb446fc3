"Supervised trajectory matching: the cross-entropy meta-gradient against a plain unroll (float64), bad input, the CLI (the CI-sized run that distils is nbs/06a_supervised's toy `supervised_job`)."
import dataclasses, json, math, os, subprocess, sys
import pytest, torch
import torch.nn.functional as F
from kdd_explore.core import DatasetError, KddError
from kdd_explore.models import build_model, fcall
from kdd_explore.augment import DSA, ZCA, augmenter
from kdd_explore.kd import Experts, record_experts
from kdd_explore.metagrad import minibatch_schedule, unroll_match
from kdd_explore.distill import SyntheticSet, DistillConfig, distill
from kdd_explore.supervised import (SupervisedConfig, ce_maker, one_hot_targets, per_class_indices,
                                    record_supervised_experts, distill_supervised, supervised_recipe, supervised_job,
                                    supervised_settings, evaluate_set, open_supervised_run, set_labels,
                                    supervised_matching_loss)
from conftest import ROOT

ARCH = dict(name='convnet', in_channels=1, im_size=8, width=4, depth=2, out_dim=5, norm='instance', first_padding=1)

def _case(n=7):
    g = torch.Generator().manual_seed(0)
    m = build_model(ARCH, seed=0).double()
    start = {k: p.detach().clone() for k, p in m.named_parameters()}
    target = {k: v + 0.05 * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in start.items()}
    X = torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64)
    Y = one_hot_targets(torch.arange(n) % 5, 5).double()
    return m, start, target, X, Y

def _plain(m, start, target, X0, Y0, lr0, steps, batch, augment, order_seed=3, run_seed=0):
    "The matching loss and its gradients, by one plain unroll that keeps the whole graph: the reference."
    X, Y, lr = X0.clone().requires_grad_(True), Y0.clone().requires_grad_(True), lr0.clone().requires_grad_(True)
    from kdd_explore.core import derive_seed
    batches, aug = (minibatch_schedule(len(X), batch, steps, torch.Generator().manual_seed(order_seed)),
                    augmenter(augment))
    theta = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    for i in range(steps):
        xb = X[batches[i]] if aug is None else aug(X[batches[i]], derive_seed(run_seed, 'dsa', 0, i))
        # PyTorch's cross-entropy with probability targets: differentiable in them
        loss = F.cross_entropy(fcall(m, theta, xb), Y[batches[i]])
        gs = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
        theta = {k: v - lr * gv for (k, v), gv in zip(theta.items(), gs)}
    match = sum((theta[k] - target[k]).pow(2).sum() for k in theta) / sum((start[k] - target[k]).pow(2).sum()
                                                                          for k in theta)
    return (match.detach(), *torch.autograd.grad(match, [X, Y, lr]))

@pytest.mark.parametrize('steps', [1, 5])
@pytest.mark.parametrize('augment', [None, 'dsa'])
def test_ce_meta_gradient_matches_plain_unroll_float64(steps, augment):
    "Uneven batches (7 images in batches of 3: 3, 2, 2), 1 and 5 steps, with and without DSA, every mode: the same loss and gradients."
    m, start, target, X0, Y0 = _case()
    lr0 = torch.tensor(0.05, dtype=torch.float64)
    want = _plain(m, start, target, X0, Y0, lr0, steps, 3, augment)
    assert [len(b) for b in minibatch_schedule(7, 3, 3, torch.Generator().manual_seed(3))] == [3, 2, 2]
    for mode, segment in (('full', None), ('bounded', None), ('auto', 2)):
        X, Y, lr = X0.clone().requires_grad_(True), Y0.clone().requires_grad_(True), lr0.clone().requires_grad_(True)
        step_loss = ce_maker(steps, 3, augment, 0)(m, X, Y, 0, torch.Generator().manual_seed(3))
        loss, (gx, gy), glr, _ = unroll_match(start, target, lr, [X, Y], step_loss, steps, mode, segment=segment)
        for got, ref in zip((loss, gx, gy, glr), want):
            assert float((got - ref).norm()) <= 1e-10 * max(1., float(ref.norm())), (mode, steps, augment)
    # a real gradient for images, labels and lr
    assert float(want[1].norm()) > 0 and float(want[2].norm()) > 0 and abs(float(want[3])) > 0

def test_dsa_is_seeded_and_differentiable():
    x = torch.randn(6, 3, 8, 8, requires_grad=True)
    d = DSA()
    assert torch.equal(d(x, 11), d(x, 11))
    d(x, 11).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0

def test_zca_round_trip_and_refusals():
    x = torch.randn(300, 3, 4, 4)
    z = ZCA(0.1).fit(x)
    assert torch.allclose(z.inverse(z(x)), x, atol=1e-4)
    with pytest.raises(KddError, match='not fitted yet'): ZCA().inverse(x)
    with pytest.raises(KddError, match='fitted on images of shape'): z(torch.zeros(2, 1, 4, 4))

# --- bad input
# ---------------------------------------------------------------------------------------------------------------
def _tiny_experts(objective='ce', augment='dsa', zca=False):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 8, 8, generator=g), torch.arange(40) % 5
    if objective == 'ce':
        return record_supervised_experts(ARCH, x, y, 1, 3, batch_size=8, augment=augment, zca=zca, progress=False), x, y
    return record_experts(ARCH, x, torch.randn(40, 5, generator=g), 1, 3, batch_size=8, progress=False), x, y

def test_labels_out_of_range_and_missing_classes_are_refused():
    with pytest.raises(DatasetError, match=r'Labels \[5\] are out of range for 5 classes'):
        one_hot_targets(torch.tensor([0, 5]), 5)
    with pytest.raises(DatasetError, match='whole numbers'): one_hot_targets(torch.tensor([0.5]), 5)
    with pytest.raises(DatasetError, match='Class 2 has 0 image'): per_class_indices(torch.tensor([0, 1, 3, 4]), 1, 5)
    ex, x, y = _tiny_experts()
    syn = SyntheticSet.from_real(x, one_hot_targets(torch.tensor([0, 1, 1, 3, 4] * 8), 5), torch.arange(5), lr=0.01)
    with pytest.raises(DatasetError, match=r'Classes \[2\] have no image'):
        distill_supervised(ex, syn, SupervisedConfig(iterations=1, syn_steps=2, max_start_epoch=1))

def test_a_set_whose_learned_labels_moved_a_class_still_has_a_matching_loss():
    "Learned labels may make an image stand for another class: the set is scored, only a starting set must cover every class."
    ex, x, y = _tiny_experts()
    cfg = SupervisedConfig(iterations=1, syn_steps=2, max_start_epoch=1)
    syn = SyntheticSet.from_real(x, one_hot_targets(y, 5), per_class_indices(y, 1, 5), lr=0.01)
    moved = syn.targets.clone(); moved[2] = torch.tensor([0., 0., 0.4, 0.6, 0.])  # class 2's image now reads as 3
    learned = SyntheticSet(syn.images, moved, syn.lr)
    assert 2 not in set_labels(learned).tolist()
    loss, start = supervised_matching_loss(ex, learned, cfg), supervised_matching_loss(ex, syn, cfg)
    assert math.isfinite(loss) and loss != start  # scored, and the labels count
    with pytest.raises(DatasetError, match=r'Classes \[2\] have no image'): distill_supervised(ex, learned, cfg)

def test_mixed_experts_are_refused_in_one_line():
    ce, x, y = _tiny_experts('ce')
    kd, _, _ = _tiny_experts('kd')
    cfg = SupervisedConfig(iterations=1, syn_steps=2, max_start_epoch=1)
    syn = SyntheticSet.from_real(x, one_hot_targets(y, 5), per_class_indices(y, 1, 5), lr=0.01)
    with pytest.raises(KddError, match=r'^These experts were trained by KD \(MSE[^\n]*distill_supervised matches '
                                       r'experts trained with cross-entropy'):
        distill_supervised(kd, syn, cfg)
    with pytest.raises(KddError, match=r'^These experts were trained with cross-entropy on labels \(supervised\), but '
                                       r'distill \(MKDT\)'):
        distill(ce, syn, DistillConfig(iterations=1, syn_steps=2, max_start_epoch=1))

def test_augmentation_and_zca_not_recorded_with_the_experts_are_refused_before_any_work(tmp_path):
    ce, x, y = _tiny_experts('ce', augment='dsa', zca=False)
    syn = SyntheticSet.from_real(x, one_hot_targets(y, 5), per_class_indices(y, 1, 5), lr=0.01)
    base = SupervisedConfig(iterations=1, syn_steps=2, max_start_epoch=1)
    with pytest.raises(KddError, match=r"recorded with augment='dsa' but the distillation asks for augment=None"):
        distill_supervised(ce, syn, dataclasses.replace(base, augment=None), out=tmp_path/'a')
    with pytest.raises(KddError, match=r'recorded on plain \(not whitened\) images but the distillation asks for '
                                       r'zca=True'):
        distill_supervised(ce, syn, dataclasses.replace(base, zca=True), out=tmp_path/'b')
    assert not (tmp_path/'a').exists() and not (tmp_path/'b').exists()  # nothing was written
    with pytest.raises(KddError, match="Unknown augmentation 'mixup'"): SupervisedConfig(augment='mixup')

def test_recipe_settings_are_checked():
    assert supervised_settings(['distill.syn_steps=10', 'saves=[5, 10]']) == {'distill': {'syn_steps': 10},
                                                                              'saves': (5, 10)}
    with pytest.raises(KddError, match="unknown setting 'ipcs'"): supervised_settings(['ipcs=2'])
    with pytest.raises(KddError, match='reads expert epoch 11'):
        supervised_recipe('fashion_mnist_10ipc', expert_epochs=4)

@pytest.mark.slow
def test_cli_runs_a_toy_recipe_and_reports_a_typo(tmp_path):
    tiny = ['--set', 'n_train=400', '--set', 'n_experts=1', '--set', 'expert_epochs=3', '--set',
            'expert_batch_size=64', '--set', 'saves=[2]', '--set', 'eval_epochs=3', '--set', 'eval_seeds=[0]',
            '--set', 'distill.syn_steps=2']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'supervised', '--out',
                        str(tmp_path/'s'), '--quiet'] + tiny,
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'distilled, 2 iterations' in r.stdout and (tmp_path/'s'/'figure.html').exists()
    res = json.loads((tmp_path/'s'/'results.json').read_text())
    assert res['complete'] and res['recipe']['n_train'] == 400
    other = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'supervised', '--out', str(tmp_path/'s'), '--quiet']
                           + tiny + ['--set', 'seed=1'], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert (other.returncode == 2 and 'different: seed' in other.stderr and '--overwrite' in other.stderr
            and 'Traceback' not in other.stderr)
    assert json.loads((tmp_path/'s'/'results.json').read_text()) == res  # refused: the run is kept
    bad = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'supervised', '--out', str(tmp_path/'t'),
                          '--set', 'distill.lr_imgs=1'],
                         capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert (bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
            and "--set: unknown setting 'distill.lr_imgs'" in bad.stderr)
    assert not (tmp_path/'t').exists()

# --- the run folder: the pipeline's open_run and Stages
# ---------------------------------------------------------------------------------------------------------------
TINY = dict(n_train=400, n_test=500, n_experts=1, expert_epochs=3, expert_batch_size=64, saves=(2,), eval_epochs=3,
            eval_seeds=(0,), distill={'syn_steps': 2})

def _files(out):
    "Every file under `out` (but the lock) -> its bytes."
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob('*') if p.is_file() and p.name != '.lock'}

def test_supervised_folder_refuses_another_recipe_resumes_the_same_and_overwrite_replaces(tmp_path):
    "A toy run: the same recipe resumes with no new work, another is refused (naming the setting and --overwrite) and loses nothing, overwrite=True replaces it."
    a, out = supervised_recipe('fashion_mnist_1ipc', **TINY), tmp_path/'run'
    first = supervised_job(a, out, progress=False)
    assert json.loads((out/'config.json').read_text())['seed'] == 0 and first['complete']
    assert set(first['timings']) == {'data', 'experts', 'random_real', 'distill', 'tests'}
    assert {'experts', 'distill', 'total'} <= set(first['seconds'])
    before = _files(out)
    again = supervised_job(a, out, progress=False)
    for key in ('saves', 'random_real', 'random_real_at_learned_lr', 'matching_loss_start', 'history', 'chosen'):
        assert again[key] == first[key], key
    after = _files(out)
    # no new work: the experts, the distillation, the sets and their tests are read back as they were
    assert {k for k in before if before[k] != after.get(k)} <= {'results.json', 'config.json'} and set(after) == set(before)
    assert again['timings']['experts'] < 1 and again['timings']['distill'] < 1
    assert again['seconds']['total'] > first['seconds']['total']  # a resumed run adds its time
    b = dataclasses.replace(a, seed=1)
    with pytest.raises(KddError, match=r'another configuration \(different: seed\)\. .*--overwrite'):
        supervised_job(b, out, progress=False)
    assert _files(out) == after  # refused: nothing lost or changed
    res = supervised_job(b, out, progress=False, overwrite=True)
    assert res['recipe']['seed'] == 1 and json.loads((out/'config.json').read_text())['seed'] == 1
    # replaced: no time of the old run carried over
    assert all(res['seconds'][k] == round(v, 1) for k, v in res['timings'].items())

def test_folders_from_before_config_json_are_opened_for_their_recipe(tmp_path):
    "A row folder of the old job (results.json, no config.json) resumes for its recipe and refuses another losing nothing; one with only experts/ (the study copies them in) is this recipe's."
    a = supervised_recipe('fashion_mnist_1ipc', **TINY)
    old = tmp_path/'old'; old.mkdir()
    (old/'results.json').write_text(json.dumps(dict(kind='supervised_results', recipe=dataclasses.asdict(a))))
    (old/'experts').mkdir(); (old/'experts'/'experts.json').write_text('{}')
    with pytest.raises(KddError, match=r'different: n_experts\)'):
        open_supervised_run(old, dataclasses.replace(a, n_experts=2))
    assert sorted(p.relative_to(old).as_posix() for p in old.rglob('*')) == [
        'config.json', 'experts', 'experts/experts.json', 'results.json']
    open_supervised_run(old, a)
    ex = tmp_path/'ex'; (ex/'experts').mkdir(parents=True)
    open_supervised_run(ex, a)
    assert json.loads((ex/'config.json').read_text())['n_experts'] == 1
    with pytest.raises(KddError, match='holds no kdd_explore run'):
        (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'notes.txt').write_text('x'); open_supervised_run(tmp_path/'mine', a)
