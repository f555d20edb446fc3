"The course's self-checks: every reference solution passes, and plausible wrong answers are caught with a helpful message."
import pytest, torch
import torch.nn.functional as F
from kdd_explore import course as C, course_exercises as X
from kdd_explore.course import EXERCISES, check, solution, exercise
from kdd_explore.course_exercises import minibatches, ExerciseError
from kdd_explore.core import make_generator
from kdd_explore.models import fcall
from conftest import ROOT


@pytest.mark.parametrize('name', list(EXERCISES))
def test_reference_passes(name):
    res = check(name, solution(name))
    assert res.ok and res.done, res


def _not_done(*a, **k): raise NotImplementedError("Exercise: write me")


@pytest.mark.parametrize('name', list(EXERCISES))
def test_not_done_is_a_message_not_a_crash(name):
    res = check(name, _not_done)
    assert not res.ok and not res.done and 'not done yet' in res.message
    # the lesson goes on with the reference
    assert exercise(name, _not_done, strict=False, show=False) is solution(name)
    with pytest.raises(ExerciseError, match='solutions switch on'): exercise(name, _not_done, strict=True, show=False)


def test_crash_is_reported():
    def bad(*a): raise ValueError('shapes do not match')
    res = check('kd_loss', bad)
    assert not res.ok and 'ValueError: shapes do not match' in res.message


# --- plausible wrong answers, one or more per exercise: (exercise, wrong function, words the message must contain)
def _bt(z1, z2, lambd=5e-3, standardise=True, divide_n=True, with_diag=False, unbiased=False):
    n = z1.shape[0]
    if standardise:
        z1 = (z1 - z1.mean(0)) / (z1.std(0) if unbiased else (z1.var(0, unbiased=False) + 1e-5).sqrt())
        z2 = (z2 - z2.mean(0)) / (z2.std(0) if unbiased else (z2.var(0, unbiased=False) + 1e-5).sqrt())
    c = z1.T @ z2 / (n if divide_n else 1)
    d = torch.diagonal(c)
    return (1 - d).pow(2).sum() + lambd * (c.pow(2).sum() - (0 if with_diag else d.pow(2).sum()))

def _step(model, params, x, y, lr, sign=-1, create_graph=True, use_float_lr=False):
    loss = F.mse_loss(fcall(model, params, x), y)
    gs = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    lr = float(lr.detach()) if use_float_lr else lr
    return {k: p + sign * lr * g for (k, p), g in zip(params.items(), gs)}

def _unroll(model, params, x, y, lr, syn_steps, batch_size, seed=0, steps_delta=0, keep_first=True, detach=False):
    traj, bs = [params], minibatches(len(x), batch_size, syn_steps, seed)
    for idx in bs[:syn_steps + steps_delta] if steps_delta <= 0 else bs + bs[:steps_delta]:
        p = X.reference_sgd_step(model, traj[-1], x[idx], y[idx], lr)
        traj.append({k: v.detach().requires_grad_(True) for k, v in p.items()} if detach else p)
    return traj if keep_first else traj[1:]

def _sq(a, b): return sum((a[k] - b[k]).pow(2).sum() for k in a)

def _strat_floor(y, f, seed=0):
    g, parts = make_generator(seed), []
    for c in torch.unique(y).tolist():
        idx = (y == c).nonzero().flatten(); parts.append(idx[torch.randperm(len(idx), generator=g)[:int(f * len(idx))]])
    return torch.cat(parts).sort().values

def _strat_first(y, f, seed=0):
    return torch.cat([(y == c).nonzero().flatten()[:round(f * int((y == c).sum()))]
                      for c in torch.unique(y).tolist()]).sort().values

def _probe_on_train(a, ya, b, yb):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(max_iter=500).fit(a.numpy(), ya.numpy()).score(a.numpy(), ya.numpy()) * 100

def _probe_fraction(a, ya, b, yb): return X.reference_probe_accuracy(a, ya, b, yb) / 100

WRONG = [
    ('barlow_twins_loss', lambda a, b, l=5e-3: _bt(a, b, l, standardise=False), 'without standardisation'),
    ('barlow_twins_loss', lambda a, b, l=5e-3: _bt(a, b, l, divide_n=False), 'divide the cross-correlation by N'),
    ('barlow_twins_loss', lambda a, b, l=5e-3: _bt(a, b, l, with_diag=True), 'diagonal'),
    ('barlow_twins_loss', lambda a, b, l=5e-3: _bt(a, b, 1.0), 'lambd'),
    ('barlow_twins_loss', lambda a, b, l=5e-3: float(_bt(a, b, l)), 'scalar tensor'),
    ('normalized_grad_variance', lambda G: G.pow(2).sum(1).mean() / G.mean(0).pow(2).sum(),
     'subtract the mean gradient'),
    ('normalized_grad_variance', lambda G: (G - G.mean(0)).pow(2).sum(1).mean(), 'normalise'),
    ('normalized_grad_variance', lambda G: (G - G.mean(0)).pow(2).sum(1).sum() / (len(G) - 1) / G.mean(0).pow(2).sum(),
     'not B - 1'),
    ('kd_loss', lambda p, t: (p - t).pow(2).sum(1).mean(), 'summed over the representation dimensions'),
    ('kd_loss', lambda p, t: (p - t).abs().mean(), 'square'),
    ('kd_loss', lambda p, t: (p - t).pow(2).sum(), 'do not sum'),
    ('sgd_step', lambda *a: _step(*a, create_graph=False), 'create_graph'),
    ('sgd_step', lambda *a: _step(*a, sign=+1), 'uphill'),
    ('sgd_step', lambda *a: _step(*a, use_float_lr=True), 'learning rate'),
    ('sgd_step', lambda m, p, x, y, lr: _step(m, {k: v.detach().clone().requires_grad_(True)
                                                  for k, v in m.named_parameters()}, x, y, lr), 'fcall'),
    ('matching_loss', lambda tn, t0, ts: _sq(tn, ts), 'normalise'),
    ('matching_loss', lambda tn, t0, ts: _sq(tn, ts) / sum(v.pow(2).sum() for v in t0.values()),
     'distance from the *start to the target*'),
    ('matching_loss', lambda tn, t0, ts: _sq(tn, ts).sqrt() / _sq(t0, ts).sqrt(), 'squared'),
    ('matching_loss', lambda tn, t0, ts: sum(_sq({k: tn[k]}, {k: ts[k]}) / _sq({k: t0[k]}, {k: ts[k]})
                                             for k in tn) / len(tn), 'all'),
    ('unroll', lambda *a: _unroll(*a, steps_delta=-1), 'one step too few'),
    ('unroll', lambda *a: _unroll(*a, steps_delta=+1), 'one step too many'),
    ('unroll', lambda *a: _unroll(*a, keep_first=False), 'theta_0'),
    ('unroll', lambda *a: _unroll(*a, detach=True), 'gradient'),
    ('stratified_subset',
     lambda y, f, seed=0: torch.randperm(len(y), generator=make_generator(seed))[:round(f * len(y))].sort().values,
     'Stratify'),
    ('stratified_subset', _strat_floor, 'round'),
    ('stratified_subset', _strat_first, 'seed'),
    ('stratified_subset', lambda y, f, seed=0: torch.randint(len(y), (round(f * len(y)),),
                                                             generator=make_generator(seed)), 'without replacement'),
    ('probe_accuracy', _probe_on_train, 'test'),
    ('probe_accuracy', _probe_fraction, 'percentage'),
]


@pytest.mark.parametrize('name,fn,words', WRONG, ids=[f'{n}-{i}' for i, (n, _, _) in enumerate(WRONG)])
def test_wrong_answer_is_caught(name, fn, words):
    res = check(name, fn)
    assert not res.ok and res.done, res
    assert words in res.message, res.message
    with pytest.raises(ExerciseError): exercise(name, fn, strict=True, show=False)


def test_solutions_switch(monkeypatch):
    monkeypatch.delenv('KDD_SOLUTIONS', raising=False); monkeypatch.delenv('IN_TEST', raising=False)
    assert C.solutions_on() is False
    monkeypatch.setenv('IN_TEST', '1'); assert C.solutions_on() is True
    monkeypatch.setenv('KDD_SOLUTIONS', '0'); assert C.solutions_on() is False
    monkeypatch.setenv('KDD_SOLUTIONS', '1'); monkeypatch.delenv('IN_TEST'); assert C.solutions_on() is True


def test_minibatches_cover_the_set_then_reshuffle():
    bs = minibatches(10, 5, 4, seed=3)
    assert torch.equal(torch.cat(bs[:2]).sort().values, torch.arange(10))
    assert torch.equal(torch.cat(bs[2:]).sort().values, torch.arange(10))
    assert [b.tolist() for b in bs] == [b.tolist() for b in minibatches(10, 5, 4, seed=3)]

def test_lessons_install_the_toolkit_only_where_it_is_missing(monkeypatch, tmp_path):
    "The first cell of each lesson installs kdd_explore only when it cannot be imported, from the clone it lies in (no git address)."
    import importlib.util, json, subprocess as sp
    for path in sorted((ROOT/'nbs'/'course').glob('0[1-5]*.ipynb')):
        cells = [''.join(c['source']) for c in json.loads(path.read_text())['cells'] if c['cell_type'] == 'code']
        first = cells[0]
        assert 'git+' not in first and "'install', '-q', '-e'" in first, path.name
        calls = []
        monkeypatch.setattr(sp, 'run', lambda *a, **k: calls.append(a[0]))
        exec(first, {})  # kdd_explore is installed here: nothing is run
        assert calls == [], path.name
        monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None)  # as on a fresh machine
        monkeypatch.chdir(path.parent)
        exec(first, {})  # inside the clone: pip install -e at its root
        assert calls and calls[-1][-2:] == ['-e', str(ROOT.resolve())], (path.name, calls)
        monkeypatch.chdir(tmp_path)
        with pytest.raises(ModuleNotFoundError, match='not inside a clone'): exec(first, {})
        monkeypatch.undo()
