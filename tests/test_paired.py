"Paired findings: the interval arithmetic on numbers worked by hand, and every method sharing each seed's random choices."
import math
import pytest
import torch
import kdd_explore.evaluate as ev
from kdd_explore.core import KddError
from kdd_explore.data import load_dataset
from kdd_explore.evaluate import PretrainSet, compare, gap, gap_text, kd_method, t_interval, bootstrap_interval
from kdd_explore.probe import labelled_indices, label_seeds

def test_t_interval_by_hand():
    # d = 1, 2, 3: mean 2, sd 1, se 1/sqrt(3); t(0.975, 2) = 4.302653 -> 2 -+ 2.484138
    m, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert m == 2.0 and lo == pytest.approx(-0.484138, abs=1e-6) and hi == pytest.approx(4.484138, abs=1e-6)
    # d = 0.5, 1, 1: mean 0.8333, sd 0.288675, se 0.166667; 4.302653 * 0.166667 = 0.717109
    m, lo, hi = t_interval([0.5, 1.0, 1.0])
    assert lo == pytest.approx(0.116224, abs=1e-6) and hi == pytest.approx(1.550442, abs=1e-6)
    # 90%: t(0.95, 2) = 2.919986 -> 2 -+ 1.685854
    assert t_interval([1.0, 2.0, 3.0], conf=0.9)[1] == pytest.approx(0.314146, abs=1e-6)
    assert math.isnan(t_interval([1.0])[1])
    with pytest.raises(KddError, match='share no seed'): t_interval([])

def test_bootstrap_interval_brackets_the_mean():
    m, lo, hi = bootstrap_interval([0.0, 1.0, 2.0, 3.0, 4.0], seed=1)
    assert m == 2.0 and 0.0 <= lo < 2.0 < hi <= 4.0
    assert bootstrap_interval([0.0, 1.0, 2.0, 3.0, 4.0], seed=1) == (m, lo, hi)  # seeded: the same interval again

def test_gap_pairs_by_seed_and_claims_only_beyond_zero():
    a = dict(method='A', label_fraction=0.01, acc_mean=72.0, acc_std=2.0, accs=[74.0, 72.0, 70.0], seeds=[0, 1, 2])
    b = dict(method='B', label_fraction=0.01, acc_mean=71.17, acc_std=2.25, accs=[69.0, 71.0, 73.5], seeds=[2, 1, 0])
    g = gap([a, b], 'A', 'B')[0.01]
    assert g['n'] == 3 and g['gap'] == pytest.approx(0.833, abs=1e-3) and g['claim'] == 'gain' and g['beats']
    assert gap_text(g) == '+0.8 [+0.1, +1.6], 3 seeds: a gain'
    # paired by position instead of by seed, the same numbers are a tie
    c = dict(b, seeds=[0, 1, 2])
    t = gap([a, c], 'A', 'B')[0.01]
    assert t['claim'] == 'tie' and not t['beats'] and gap_text(t).endswith(f"a tie (at most {t['hi']:+.1f})")
    # rows that do not say their seeds and differ in number cannot be paired
    unsaid = lambda r, **kw: {k: v for k, v in dict(r, **kw).items() if k != 'seeds'}
    with pytest.raises(KddError, match='same seeds'): gap([unsaid(a), unsaid(b, accs=[1.0, 2.0])], 'A', 'B')
    assert gap([unsaid(a), unsaid(c)], 'A', 'B')[0.01]['gap'] == t['gap']  # no seeds, as many: paired in order

def test_methods_share_each_seeds_initialisation_order_and_labels(monkeypatch):
    "At one seed every method's student starts from the same weights, sees its set in the same order and is probed on the same labelled subset."
    dg = load_dataset('digits')
    x = dg.normalize(dg.x_train)
    reps = torch.nn.functional.one_hot(dg.y_train, 10).float() @ torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    arch = dict(name='convnet', in_channels=1, im_size=8, width=8, depth=2)
    seen = []
    real_train, real_probe = ev.train_kd, ev.probe_accuracies
    def train(model, images, targets, **kw):
        init = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
        seen.append(('train', kw['seed'], init))
        return real_train(model, images, targets, **kw)
    def probe(model, data, fractions, seed=0, **kw):
        seen.append(('labels', seed, torch.cat([labelled_indices(data.y_train, f, s) for s in label_seeds(seed, kw.get('draws', 1))
                                              for f in fractions])))
        return real_probe(model, data, fractions, seed=seed, **kw)
    monkeypatch.setattr(ev, 'train_kd', train); monkeypatch.setattr(ev, 'probe_accuracies', probe)
    methods = {'first': kd_method(arch, PretrainSet(x[:40], reps[:40]), epochs=1, batch_size=16),
               'second': kd_method(arch, PretrainSet(x[40:80], reps[40:80]), epochs=1, batch_size=16)}
    rows = compare(methods, dg, fractions=(0.1,), seeds=(0, 1), progress=False, label_draws=2)
    assert all(r['seeds'] == [0, 1] for r in rows)
    for kind in ('train', 'labels'):
        by_seed = {}
        for k, s, v in seen:
            if k == kind: by_seed.setdefault(s, []).append(v)
        assert sorted(by_seed) == [0, 1] and all(len(v) == 2 for v in by_seed.values())
        for vs in by_seed.values(): assert torch.equal(vs[0], vs[1])  # both methods, one seed: the same choice
        assert not torch.equal(by_seed[0][0], by_seed[1][0])  # another seed: another choice
