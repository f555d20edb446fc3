"The default meta-gradient ('auto'): float64 agreement with the plain unrolled graph, its choice under a budget, resume, bad input."
import dataclasses, json
import pytest, torch
from kdd_explore.core import KddError, save_artifact, load_artifact
from kdd_explore.models import build_model
from kdd_explore.kd import Experts
from kdd_explore.metagrad import (unroll_match, kd_step_loss, minibatch_schedule, graph_step_mb,
                                  plan_unroll, check_budget, DEFAULT_BUDGET_MB)
from kdd_explore.distill import SyntheticSet, DistillConfig, DistillHistory, distill

ARCH = dict(name='convnet', in_channels=1, im_size=8, width=4, depth=2, out_dim=3, norm='instance')

def _case():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(7, 1, 8, 8, generator=g, dtype=torch.float64)  # 7 images at batch 3: passes of 3 + 2 + 2 (uneven)
    Y = torch.randn(7, 3, generator=g, dtype=torch.float64)
    m = build_model(ARCH, seed=1).double()
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    target = {n: v + 0.05 * torch.randn(v.shape, generator=g, dtype=torch.float64) for n, v in start.items()}
    return m, X, Y, start, target

def plain_unrolled(m, X, Y, start, target, lr, batches, steps):
    "The textbook gradient, written out here: every step's graph kept, one backward pass."
    names = list(start)
    theta = {n: v.clone().requires_grad_(True) for n, v in start.items()}
    th = theta
    for i in range(steps):
        out = torch.func.functional_call(m, th, (X[batches[i]],))
        loss = torch.nn.functional.mse_loss(out, Y[batches[i]])
        g = torch.autograd.grad(loss, list(th.values()), create_graph=True)
        th = {n: th[n] - lr * gn for n, gn in zip(names, g)}
    match = sum((th[n] - target[n]).pow(2).sum() for n in names) / sum((start[n] - target[n]).pow(2).sum()
                                                                       for n in names)
    return (match.detach(),) + torch.autograd.grad(match, [X, Y, lr])

@pytest.mark.parametrize('steps', [1, 2, 5, 40])
def test_auto_equals_plain_unrolled_float64(steps):
    m, X, Y, start, target = _case()
    batches = minibatch_schedule(7, 3, steps, torch.Generator().manual_seed(3))
    assert sorted({len(b) for b in batches}) == ([3] if steps == 1 else [2, 3])
    Xg, Yg = X.clone().requires_grad_(True), Y.clone().requires_grad_(True)
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    ref = plain_unrolled(m, Xg, Yg, start, target, lr, batches, steps)
    for kw in (dict(), dict(memory_budget_mb=1e-4), dict(segment=3), dict(mode='bounded'), dict(mode='full')):
        loss, (gx, gy), glr, _ = unroll_match(start, target, lr, [Xg, Yg], kd_step_loss(m, Xg, Yg, batches), steps,
                                              **kw)
        assert abs(float(loss - ref[0])) < 1e-12
        for a, b in ((gx, ref[1]), (gy, ref[2]), (glr, ref[3])):
            assert float((a - b).norm()) <= 1e-10 * float(b.norm()) and float(b.norm()) > 0, kw

def test_choice_under_tiny_and_huge_budgets():
    m, X, Y, start, target = _case()
    step_mb = graph_step_mb(kd_step_loss(m, X, Y, minibatch_schedule(7, 3, 1, torch.Generator().manual_seed(0))),
                            start, torch.tensor(0.1))
    assert step_mb > 0
    huge = plan_unroll(step_mb, 40, 'auto', 1e9)
    assert (huge['chose'], huge['segment']) == ('full', 40) and 'fits the budget' in huge['note']
    tiny = plan_unroll(step_mb, 40, 'auto', step_mb / 10)  # not even one step fits: bounded, with a note, no error
    assert (tiny['chose'], tiny['segment']) == ('bounded', 1) and 'already over the budget' in tiny['note']
    mid = plan_unroll(step_mb, 40, 'auto', step_mb * 7.5)
    assert (mid['chose'], mid['segment']) == ('checkpoint', 7) and mid['graph_mb'] <= 7.5 * step_mb + 0.1

@pytest.mark.parametrize('bad', [0, -1, -0.5, float('nan'), '512', [1], True])
def test_bad_budget(bad):
    with pytest.raises(KddError, match='memory_budget_mb must be'):
        check_budget(bad)
    with pytest.raises(KddError, match='memory_budget_mb must be'):
        DistillConfig(memory_budget_mb=bad)

def test_bad_mode_lists_the_known_ones():
    m, X, Y, start, target = _case()
    for call in (lambda: DistillConfig(mode='auot'), lambda: plan_unroll(1., 5, 'Auto'),
                 lambda: unroll_match(start, target, torch.tensor(0.1), [X], kd_step_loss(m, X, Y, [torch.arange(3)]),
                                      1, 'flul')):
        with pytest.raises(KddError, match="Known modes: 'auto', 'full', 'bounded'"):
            call()

@pytest.fixture(scope='module')
def setting():
    g = torch.Generator().manual_seed(0)
    trajs = []
    for k in range(2):
        p = {n: v.detach().clone() for n, v in build_model(ARCH, seed=k).named_parameters()}
        traj = [p]
        for e in range(3): traj.append({n: v + 0.05 * torch.randn(v.shape, generator=g) for n, v in traj[-1].items()})
        trajs.append(traj)
    ex = Experts(ARCH, trajs, dict(n_train=100, batch_size=16, lr=0.1, momentum=0.9))
    x, y = torch.randn(9, 1, 8, 8, generator=g), torch.randn(9, 3, generator=g)
    syn = SyntheticSet.from_real(x, y, torch.arange(9), lr=0.1, meta={'arch': ARCH})
    cfg = DistillConfig(iterations=6, syn_steps=4, expert_epochs=2, max_start_epoch=2, batch_syn=4, lr_img=100.,
                        snapshot_every=2, checkpoint_every=2, memory_budget_mb=1e-4)  # a budget that forces checkpoints
    return ex, syn, cfg

def test_resumed_auto_run_equals_uninterrupted(setting, tmp_path, capsys):
    ex, syn, cfg = setting
    ref, ref_h = distill(ex, syn, cfg, progress=False)
    assert capsys.readouterr().out.count('meta-gradient') == 1  # printed once
    assert (ref_h.meta_grad['mode'] == 'auto' and ref_h.meta_grad['chose'] == 'bounded'
            and ref_h.meta_grad['segment'] == 1)
    distill(ex, syn, dataclasses.replace(cfg, iterations=3), out=tmp_path, progress=False)
    res, res_h = distill(ex, syn, cfg, out=tmp_path, progress=False)
    assert torch.equal(res.images, ref.images) and torch.equal(res.targets, ref.targets) and torch.equal(res.lr, ref.lr)
    assert res_h.records == ref_h.records and res_h.meta_grad == ref_h.meta_grad
    assert DistillHistory.load(tmp_path/'history').meta_grad == ref_h.meta_grad

def test_huge_budget_takes_the_whole_graph_with_the_same_result(setting):
    ex, syn, cfg = setting
    a, ha = distill(ex, syn, dataclasses.replace(cfg, iterations=2), progress=False)
    b, hb = distill(ex, syn, dataclasses.replace(cfg, iterations=2, memory_budget_mb=1e9), progress=False)
    assert hb.meta_grad['chose'] == 'full' and ha.meta_grad['chose'] == 'bounded'
    assert torch.allclose(a.images, b.images, atol=1e-5) and abs(float(a.lr - b.lr)) < 1e-6

@pytest.mark.parametrize('steps,segment,twice', [(40, 13, 27), (20, 13, 7), (5, 5, 0), (5, 1, 4), (12, 4, 8)])
def test_only_the_steps_outside_the_last_segment_are_computed_twice(steps, segment, twice):
    m, X, Y, start, target = _case()
    calls, inner = [], kd_step_loss(m, X, Y, minibatch_schedule(7, 3, steps, torch.Generator().manual_seed(0)))
    def counted(params, i): calls.append(i); return inner(params, i)
    unroll_match(start, target, torch.tensor(0.1, dtype=torch.float64, requires_grad=True), [],
                 counted, steps, segment=segment)
    assert len(calls) == steps + twice and sorted(set(calls)) == list(range(steps))
