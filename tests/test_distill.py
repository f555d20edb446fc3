"Distillation: exact agreement of the bounded and full meta-gradients (float64), finite differences, bad input, guards, resume."
import dataclasses
import pytest, torch
from kdd_explore.core import ArtifactError, DatasetError, KddError, TrainingError, load_artifact
from kdd_explore.data import load_dataset
from kdd_explore.models import build_model
from kdd_explore.kd import Experts, record_experts, teacher_representations, student_arch, random_indices
from kdd_explore.distill import (SyntheticSet, DistillConfig, DistillHistory, unroll_match,
                                 kd_step_loss, minibatch_schedule, distill, distill_ssl, record_ssl_experts,
                                 expert_schedule, matching_loss, _ssl_maker)

ARCH = dict(name='convnet', in_channels=1, im_size=8, width=4, depth=2, out_dim=3, norm='instance')

def _params(seed, dtype=torch.float64):
    m = build_model(ARCH, seed=seed).to(dtype)
    return {n: p.detach().clone() for n, p in m.named_parameters()}

def _case(dtype=torch.float64, n=6):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 1, 8, 8, generator=g, dtype=dtype)
    Y = torch.randn(n, 3, generator=g, dtype=dtype)
    start = _params(1, dtype)
    target = {k: v + 0.05 * torch.randn(v.shape, generator=g, dtype=dtype) for k, v in start.items()}
    return X, Y, start, target

def _grads(mode, lr_value=0.1, steps=5, batch=4):
    X, Y, start, target = _case()
    X.requires_grad_(True); Y.requires_grad_(True)
    lr = torch.tensor(lr_value, dtype=torch.float64, requires_grad=True)
    model = build_model(ARCH).double()
    batches = minibatch_schedule(len(X), batch, steps, torch.Generator().manual_seed(3))
    return unroll_match(start, target, lr, [X, Y], kd_step_loss(model, X, Y, batches), steps, mode, distances=True)

def rel(a, b): return float((a - b).norm() / b.norm())

def test_bounded_equals_full_float64():
    lb, (gxb, gyb), glrb, cb = _grads('bounded')
    lf, (gxf, gyf), glrf, cf = _grads('full')
    assert abs(float(lb - lf)) < 1e-12
    assert rel(gxb, gxf) < 1e-6 and rel(gyb, gyf) < 1e-6 and rel(glrb, glrf) < 1e-6
    assert float(gxf.norm()) > 0 and float(gyf.norm()) > 0 and abs(float(glrf)) > 0  # a real, non-trivial gradient
    assert torch.allclose(torch.tensor(cb), torch.tensor(cf), rtol=1e-10) and len(cb) == 6

def test_lr_gradient_matches_finite_difference():
    _, _, glr, _ = _grads('bounded')
    eps = 1e-6
    lp, ln = _grads('full', 0.1 + eps)[0], _grads('full', 0.1 - eps)[0]
    fd = (lp - ln) / (2 * eps)
    assert abs(float(fd - glr)) / abs(float(glr)) < 1e-5

def test_image_gradient_matches_finite_difference():
    X, Y, start, target = _case()
    model = build_model(ARCH).double()
    batches = minibatch_schedule(len(X), 4, 4, torch.Generator().manual_seed(3))
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    Xg = X.clone().requires_grad_(True)
    _, (gx, _), _, _ = unroll_match(start, target, lr, [Xg, Y], kd_step_loss(model, Xg, Y, batches), 4, 'bounded')
    d = torch.randn(X.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    f = lambda Z: unroll_match(start, target, lr, [Z, Y], kd_step_loss(model, Z, Y, batches), 4, 'full')[0]
    eps = 1e-6
    fd = (f((X + eps * d).requires_grad_(True)) - f((X - eps * d).requires_grad_(True))) / (2 * eps)
    assert abs(float(fd - (gx * d).sum())) / abs(float(fd)) < 1e-5

def test_bounded_equals_full_with_ssl_inner_loss():
    X, Y, start, target = _case(n=8)
    model = build_model(ARCH).double()
    cfg = DistillConfig(syn_steps=3, batch_syn=4, iterations=1)
    out = {}
    for mode in ('bounded', 'full'):
        Xg = X.clone().requires_grad_(True); Yg = Y.clone().requires_grad_(True)
        lr = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)
        step = _ssl_maker(cfg, 'barlow_twins', (0.5,), (0.25,))(model, Xg, Yg, 0, torch.Generator().manual_seed(0))
        out[mode] = unroll_match(start, target, lr, [Xg, Yg], step, 3, mode)
    assert rel(out['bounded'][1][0], out['full'][1][0]) < 1e-6 and rel(out['bounded'][2], out['full'][2]) < 1e-6
    assert float(out['full'][1][1].abs().max()) == 0  # no targets in an SSL loss

def test_minibatches_without_replacement():
    bs = minibatch_schedule(7, 3, 6, torch.Generator().manual_seed(0))
    # 7 images at batch 3: passes of 3 + 2 + 2, never a step on 1 image
    assert [len(b) for b in bs] == [3, 2, 2, 3, 2, 2]
    assert sorted(torch.cat(bs[:3]).tolist()) == list(range(7))

def test_every_expert_used():
    assert sorted(expert_schedule(i, 5, 0) for i in range(5)) == list(range(5))
    assert sorted(expert_schedule(i, 5, 0) for i in range(5, 10)) == list(range(5))

@pytest.fixture(scope='module')
def setting():
    d = load_dataset('fake', shape=(1, 8, 8), n_classes=3, n_train=60, n_test=6, seed=0)
    x = d.normalize(d.x_train)
    teacher = build_model(dict(ARCH, out_dim=3), seed=7)
    reps = teacher_representations(teacher, x, progress=False)
    ex = record_experts(ARCH, x, reps, n_experts=2, epochs=3, batch_size=16, seed=0, progress=False)
    syn = SyntheticSet.from_real(x, reps, torch.arange(8), lr=0.1, meta={'arch': ARCH})
    cfg = DistillConfig(iterations=6, syn_steps=3, expert_epochs=2, max_start_epoch=2, batch_syn=4, lr_img=100.,
                        snapshot_every=2, checkpoint_every=2)
    return d, x, reps, ex, syn, cfg

def test_resume_gives_the_same_run(setting, tmp_path):
    d, x, reps, ex, syn, cfg = setting
    ref, ref_h = distill(ex, syn, cfg, progress=False)
    distill(ex, syn, dataclasses.replace(cfg, iterations=3), out=tmp_path, progress=False)  # "interrupted" after 3
    res, res_h = distill(ex, syn, cfg, out=tmp_path, progress=False)
    assert torch.equal(res.images, ref.images) and torch.equal(res.targets, ref.targets) and torch.equal(res.lr, ref.lr)
    assert res_h.records == ref_h.records and sorted(res_h.snapshots) == [0, 2, 4, 6]
    h = DistillHistory.load(tmp_path/'history')
    assert h.records == ref_h.records and torch.equal(h.snapshots[6], ref.images)
    assert set(h.distance_curves) == {0, 2, 4} and len(h.distance_curves[0]) == cfg.syn_steps + 1
    with pytest.raises(ArtifactError, match='seed: expected'):
        distill(ex, syn, dataclasses.replace(cfg, seed=1), out=tmp_path, progress=False)

def test_modes_agree_in_the_loop(setting):
    d, x, reps, ex, syn, cfg = setting
    a, ha = distill(ex, syn, dataclasses.replace(cfg, iterations=2), progress=False)
    b, hb = distill(ex, syn, dataclasses.replace(cfg, iterations=2, mode='full'), progress=False)
    assert torch.allclose(a.images, b.images, atol=1e-5) and abs(float(a.lr - b.lr)) < 1e-6

def test_history_fields(setting):
    d, x, reps, ex, syn, cfg = setting
    _, h = distill(ex, syn, dataclasses.replace(cfg, iterations=2), progress=False)
    assert set(h.records[0]) == {'iteration', 'loss', 'start_epoch', 'expert', 'lr',
                                 'grad_norm_images', 'grad_norm_targets', 'grad_norm_lr', 'rolled_back'}

def test_guard_rolls_back_and_stops(setting, tmp_path):
    d, x, reps, ex, syn, cfg = setting
    bad = dataclasses.replace(cfg, lr_lr=1e8, max_failures=2)
    with pytest.raises(TrainingError, match='lr_lr too high'):
        distill(ex, syn, bad, out=tmp_path, progress=False)
    t, m = load_artifact(tmp_path/'checkpoint')
    assert m['failures'] == 2 and all(r['rolled_back'] for r in m['records'])
    # the last good state: nothing applied
    assert torch.equal(t['images'], syn.images) and abs(float(t['lr']) - 0.1) < 1e-7

def test_nan_is_rolled_back(setting):
    d, x, reps, ex, syn, cfg = setting
    poisoned = SyntheticSet(syn.images.clone(), syn.targets.clone(), syn.lr, syn.meta)
    poisoned.targets[0, 0] = float('nan')
    with pytest.raises(TrainingError, match='rolled back'):
        distill(ex, poisoned, dataclasses.replace(cfg, max_failures=3), progress=False)

def test_an_error_inside_the_inner_loop_reaches_the_caller_as_it_is(setting, monkeypatch):
    "Out of memory or a shape bug while matching is not a numerical failure: no rollback, the original error goes up."
    import kdd_explore.distill as D
    d, x, reps, ex, syn, cfg = setting
    calls = []
    def out_of_memory(*args, **kw):
        calls.append(1)
        raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')
    monkeypatch.setattr(D, 'unroll_match', out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError, match='Tried to allocate 2.00 GiB') as err:
        distill(ex, syn, cfg, progress=False)
    assert len(calls) == 1  # at once, not after max_failures rollbacks
    assert not isinstance(err.value, TrainingError)
    assert any(e.name == 'out_of_memory' for e in err.traceback)  # its own traceback, down to where it was raised
    monkeypatch.undo()
    def bad_shapes(model, X, Y, batches):
        return lambda params, i: (torch.zeros(2, 3) @ torch.zeros(2, 3)).sum()  # a real shape bug
    monkeypatch.setattr(D, 'kd_step_loss', bad_shapes)
    with pytest.raises(RuntimeError, match='shapes cannot be multiplied') as err:
        distill(ex, syn, cfg, progress=False)
    assert not isinstance(err.value, TrainingError)
    if hasattr(err.value, '__notes__'): assert 'distillation iteration 0, stretch 0' in err.value.__notes__[0]

def test_a_nan_loss_is_still_rolled_back(setting, monkeypatch):
    "A non-finite loss from the inner loop cancels that update only; the run goes on from the state before it."
    import kdd_explore.distill as D
    d, x, reps, ex, syn, cfg = setting
    real, n = D.unroll_match, []
    def nan_first(*args, **kw):
        n.append(1)
        loss, grads, glr, curve = real(*args, **kw)
        return (torch.tensor(float('nan')) if len(n) == 1 else loss), grads, glr, curve
    monkeypatch.setattr(D, 'unroll_match', nan_first)
    res, h = distill(ex, syn, dataclasses.replace(cfg, iterations=3), progress=False)
    assert [r['rolled_back'] for r in h.records] == [True, False, False]
    assert h.records[0]['lr'] == float(syn.lr)  # nothing applied at iteration 0
    assert not torch.equal(res.images, syn.images)

def test_bad_inputs(setting, tmp_path):
    d, x, reps, ex, syn, cfg = setting
    with pytest.raises(KddError, match='recorded only epochs 0..3'):
        distill(ex, syn, dataclasses.replace(cfg, expert_epochs=3), progress=False)
    other = SyntheticSet(syn.images, syn.targets, syn.lr, {'arch': dict(ARCH, width=8)})
    with pytest.raises(ArtifactError, match='recorded for architecture'):
        distill(ex, other, cfg, progress=False)
    with pytest.raises(ArtifactError, match='recorded for architecture'):
        distill(ex, syn, cfg, model=build_model(dict(ARCH, width=8)), progress=False)
    with pytest.raises(DatasetError, match='cannot start from a dataset of 60'):
        SyntheticSet.from_real(x, reps, torch.arange(61))
    with pytest.raises(DatasetError, match='cannot be taken'):
        random_indices(60, 61)
    ex.save(tmp_path/'experts')
    blob = (tmp_path/'experts.safetensors').read_bytes()
    (tmp_path/'experts.safetensors').write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ArtifactError, match='truncated'):
        Experts.load(tmp_path/'experts')
    with pytest.raises(KddError, match="Known modes: 'auto', 'full', 'bounded'"):
        DistillConfig(mode='tesla')

def test_synthetic_set_round_trip(setting, tmp_path):
    d, x, reps, ex, syn, cfg = setting
    syn.save(tmp_path/'syn')
    back = SyntheticSet.load(tmp_path/'syn', expect={'arch': ARCH})
    assert (torch.equal(back.images, syn.images) and torch.equal(back.targets, syn.targets)
            and back.meta['init_indices'] == list(range(8)))
    with pytest.raises(ArtifactError, match='kind'):
        load_artifact(tmp_path/'syn', expect={'kind': 'experts'})

def test_ssl_baseline_runs(setting):
    d, x, reps, ex, syn, cfg = setting
    sx = record_ssl_experts(ARCH, x, d.mean, d.std, n_experts=1, epochs=3, lr=0.01, batch_size=16, progress=False)
    s, h = distill_ssl(sx, syn, dataclasses.replace(cfg, iterations=2, lr_init=0.01), d.mean, d.std, progress=False)
    assert len(h.records) == 2 and torch.equal(s.targets, syn.targets)
    assert matching_loss(sx, s, cfg, method='barlow_twins', mean=d.mean, std=d.std) > 0
