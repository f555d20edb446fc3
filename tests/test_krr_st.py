"KRR-ST: the kernel ridge regression against its closed form (float64, constant column included), gradients, the model pool's quota, resume, guards, bad input."
import dataclasses
import pytest, torch
from kdd_explore.core import DatasetError, KddError, TrainingError
from kdd_explore.distill import SyntheticSet
from kdd_explore.evaluate import kd_student
from kdd_explore import krr_st as K
from kdd_explore.krr_st import KRRSTConfig, ModelPool, krr_predict, krr_outer_loss, krr_st
from kdd_explore.augment import crop_flip

# 4 x 2 x 2 = 16 features
ARCH = dict(name='convnet', in_channels=1, im_size=8, width=4, depth=2, out_dim=3, norm='instance')

def _data(n=30, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randn(n, d, generator=g)

def _syn(x, reps, n=6):
    return SyntheticSet.from_real(x, reps, torch.arange(n), lr=0.1, meta={'arch': ARCH})

def _cfg(**kw):
    return KRRSTConfig(**dict(dict(iterations=6, n_models=3, quota=3, batch_real=10, augment='none',
                                   lr_img=1e-2, lr_targets=1e-2, snapshot_every=2, checkpoint_every=2), **kw))

def _closed_form(fs, ys, fr, ridge=1e-6):
    "The dual formula written out, with an explicit inverse and the constant column."
    one = lambda f: torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], 1)
    Fs, Fr = one(fs), one(fr)
    Kss = Fs @ Fs.T
    return Fr @ Fs.T @ torch.linalg.inv(Kss + ridge * torch.trace(Kss) * torch.eye(len(Kss), dtype=fs.dtype)) @ ys

# the dual route (n <= p + 1), the primal one, and the boundary
@pytest.mark.parametrize('n,p', [(3, 8), (6, 3), (5, 4)])
def test_krr_solve_matches_closed_form_float64(n, p):
    g = torch.Generator().manual_seed(n * 10 + p)
    fs, ys, fr = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((n, p), (n, 2), (4, p)))
    got = krr_predict(fs, ys, fr)
    assert got.dtype == torch.float64
    assert torch.allclose(got, _closed_form(fs, ys, fr), rtol=1e-8, atol=1e-9)
    # the constant column is part of it: leaving it out gives another answer
    Fs, Fr = fs, fr
    without = Fr @ Fs.T @ torch.linalg.inv(Fs @ Fs.T
                                           + 1e-6 * torch.trace(Fs @ Fs.T) * torch.eye(n, dtype=torch.float64)) @ ys
    assert not torch.allclose(got, without, atol=1e-3)

def test_krr_ridge_and_interpolation():
    g = torch.Generator().manual_seed(1)
    fs, ys = torch.randn(3, 8, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    # no ridge, full rank: the set is fitted exactly
    assert torch.allclose(krr_predict(fs, ys, fs, ridge=0.), ys, atol=1e-10)
    big = krr_predict(fs, ys, fs, ridge=10.)  # a large ridge shrinks the fit towards zero
    assert float(big.norm()) < 0.5 * float(ys.norm())

def test_gradient_reaches_images_and_targets():
    x, reps = _data()
    model = kd_student(ARCH, 3, seed=0).double()
    X = x[:6].double().requires_grad_(True); Y = reps[:6].double().requires_grad_(True)
    loss = krr_outer_loss(model, X, Y, x[6:20].double(), reps[6:20].double())
    gx, gy = torch.autograd.grad(loss, [X, Y])
    assert float(gx.abs().sum()) > 0 and float(gy.abs().sum()) > 0
    assert all(p.grad is None for p in model.parameters())
    # against finite differences, with ridge 0 (6 images, 17 columns: full rank): the ridge's trace is held constant
    # in the gradient (as in the public code), so with a ridge the two differ by the trace's own slope (~1e-5 here)
    loss0 = krr_outer_loss(model, X, Y, x[6:20].double(), reps[6:20].double(), ridge=0.)
    gx0, gy0 = torch.autograd.grad(loss0, [X, Y])
    g = torch.Generator().manual_seed(2)
    for Z, gz, which in ((X, gx0, 'images'), (Y, gy0, 'targets')):
        d = torch.randn(Z.shape, generator=g, dtype=torch.float64)
        def f(s):
            Xs, Ys = (X + s * d, Y) if which == 'images' else (X, Y + s * d)
            return float(krr_outer_loss(model, Xs, Ys, x[6:20].double(), reps[6:20].double(), ridge=0.).detach())
        fd = (f(1e-6) - f(-1e-6)) / 2e-6
        assert abs(fd - float((gz * d).sum())) <= 1e-6 * abs(fd) + 1e-10, which

def _same(a, b): return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

def test_model_reaches_quota_and_is_reinitialised():
    x, reps = _data()
    cfg = _cfg(n_models=2, quota=3)
    pool = ModelPool(ARCH, 3, cfg).warm_up(x[:6], reps[:6])
    assert all(0 <= a < 3 for a in pool.ages)
    start = pool.ages[0]
    events = []
    while not (events and events[-1]['reset']): events.append(pool.use(0, x[:6], reps[:6]))
    assert [e['age'] for e in events] == list(range(start, 4))  # one step per use up to the quota, then the reset
    assert (pool.ages[0], pool.generations[0]) == (0, 1)
    assert _same(pool.models[0].state_dict(), kd_student(ARCH, 3, pool.model_seed(0, 1)).state_dict())
    assert pool.use(0, x[:6], reps[:6]) == dict(age=0, reset=False, diverged=False,
                                                pool_loss=pytest.approx(events[0]['pool_loss'], abs=10))
    # the fresh model takes steps again (the public code's pool would reset it on every use from now on)
    assert pool.ages[0] == 1

def test_warm_up_trains_each_model_to_its_age():
    x, reps = _data()
    cfg = _cfg(n_models=3, quota=5, seed=3)
    cold, warm = ModelPool(ARCH, 3, cfg), ModelPool(ARCH, 3, cfg).warm_up(x[:6], reps[:6])
    for i, a in enumerate(warm.ages):
        assert _same(cold.models[i].state_dict(), warm.models[i].state_dict()) == (a == 0)
    # ages only: no steps taken
    lazy = ModelPool(ARCH, 3, dataclasses.replace(cfg, warm_start=False)).warm_up(x[:6], reps[:6])
    assert lazy.ages == warm.ages and all(_same(c.state_dict(), l.state_dict())
                                          for c, l in zip(cold.models, lazy.models))

def test_run_learns_and_records():
    x, reps = _data()
    syn0 = _syn(x, reps)
    res, hist = krr_st(syn0, x, reps, _cfg(), progress=False)
    assert len(hist.records) == 6 and sorted(hist.snapshots) == [0, 2, 4, 6]
    assert not torch.equal(res.images, syn0.images) and not torch.equal(res.targets, syn0.targets)
    assert res.meta['distilled'] == 'krr_st' and abs(float(res.lr) - 0.1) < 1e-7
    assert {'loss', 'model', 'age', 'reset', 'lr_img', 'grad_norm_images', 'grad_norm_targets',
            'rolled_back'} <= set(hist.records[0])

def test_resumed_run_equals_uninterrupted(tmp_path):
    x, reps = _data()
    syn0 = _syn(x, reps)
    cfg = _cfg(iterations=6, lr_decay=1e-3)  # the public schedule: the outer lrs decay over the run
    ref, ref_h = krr_st(syn0, x, reps, cfg, progress=False)
    calls = {'n': 0}
    real_use = ModelPool.use
    def crashing_use(self, *a, **kw):
        calls['n'] += 1
        if calls['n'] == 5: raise KeyboardInterrupt  # killed during iteration 4 (0-based), after the checkpoint at 4
        return real_use(self, *a, **kw)
    ModelPool.use = crashing_use
    try:
        with pytest.raises(KeyboardInterrupt): krr_st(syn0, x, reps, cfg, out=tmp_path/'run', progress=False)
    finally: ModelPool.use = real_use
    res, res_h = krr_st(syn0, x, reps, cfg, out=tmp_path/'run', progress=False)
    assert torch.equal(res.images, ref.images) and torch.equal(res.targets, ref.targets)
    assert res_h.records == ref_h.records and all(torch.equal(res_h.snapshots[k], ref_h.snapshots[k])
                                                  for k in ref_h.snapshots)
    # constant learning rates: a run can be extended; a decaying one refuses a checkpoint of another length
    const = _cfg(iterations=6, lr_decay=1.0)
    full, full_h = krr_st(syn0, x, reps, const, progress=False)
    krr_st(syn0, x, reps, dataclasses.replace(const, iterations=3), out=tmp_path/'ext', progress=False)
    more, more_h = krr_st(syn0, x, reps, const, out=tmp_path/'ext', progress=False)
    assert torch.equal(more.images, full.images) and more_h.records == full_h.records
    with pytest.raises(KddError, match='iterations: expected'):
        krr_st(syn0, x, reps, dataclasses.replace(cfg, iterations=8), out=tmp_path/'run', progress=False)

def test_resume_with_adam_pool_and_sgd_outer(tmp_path):
    x, reps = _data()
    syn0 = _syn(x, reps)
    cfg = _cfg(pool_opt='adam', pool_lr=1e-3, outer_opt='sgd', lr_img=0.1, lr_targets=0.1, lr_decay=1.0)
    ref, _ = krr_st(syn0, x, reps, cfg, progress=False)
    krr_st(syn0, x, reps, dataclasses.replace(cfg, iterations=3), out=tmp_path/'r', progress=False)
    res, _ = krr_st(syn0, x, reps, cfg, out=tmp_path/'r', progress=False)
    assert torch.equal(res.images, ref.images) and torch.equal(res.targets, ref.targets)

def test_crop_flip_augmentation_uses_the_teacher():
    x, reps = _data()
    teacher = kd_student(ARCH, 3, seed=9).eval()
    res, hist = krr_st(_syn(x, reps), x, reps, _cfg(augment='crop_flip', iterations=2), teacher=teacher, progress=False)
    assert all(r['rolled_back'] is False for r in hist.records)
    a = crop_flip(x[:4], torch.Generator().manual_seed(0))
    assert a.shape == x[:4].shape and torch.equal(a, crop_flip(x[:4], torch.Generator().manual_seed(0)))

@pytest.mark.parametrize('field', ['n_models', 'quota'])
def test_pool_size_or_quota_below_one_is_refused(field):
    for v in (0, -1):
        with pytest.raises(KddError, match=f'KRRSTConfig.{field} must be a whole number >= 1'):
            KRRSTConfig(**{field: v})

def test_bad_input_is_refused():
    x, reps = _data()
    syn0 = _syn(x, reps)
    with pytest.raises(KddError, match=r'KRRSTConfig.batch_real=31 is larger than the pool of 30 real images'):
        krr_st(syn0, x, reps, _cfg(batch_real=31), progress=False)
    with pytest.raises(DatasetError, match='larger than its pool of 4 real images'):
        krr_st(syn0, x[:4], reps[:4], _cfg(batch_real=4), progress=False)
    with pytest.raises(KddError, match='pass teacher='):
        krr_st(syn0, x, reps, _cfg(augment='crop_flip'), progress=False)
    with pytest.raises(KddError, match='lr_decay'): KRRSTConfig(lr_decay=0.)
    with pytest.raises(KddError, match='ridge must be >= 0'):
        krr_predict(torch.ones(2, 2), torch.ones(2, 1), torch.ones(1, 2), ridge=-1.)

def test_ridge_zero_with_a_singular_kernel_names_the_setting():
    x, reps = _data(n=40)
    # 20 images, 16 features + 1: rank <= 17
    syn = SyntheticSet.from_real(x, reps, torch.arange(20), lr=0.1, meta={'arch': ARCH})
    with pytest.raises(KddError, match=r'ridge=0 does not fix it.*KRRSTConfig.ridge > 0'):
        krr_st(syn, x, reps, _cfg(ridge=0.), progress=False)
    dup = torch.randn(3, 8, dtype=torch.float64)
    with pytest.raises(KddError, match='ridge=0'):  # fewer images than features, but two of them the same
        krr_predict(torch.cat([dup, dup[:1]]), torch.randn(4, 2, dtype=torch.float64), dup, ridge=0.)
    krr_st(syn, x, reps, _cfg(iterations=1), progress=False)  # the default ridge solves it

def test_nan_is_rolled_back_then_stops(tmp_path):
    x, reps = _data()
    syn0 = _syn(x, reps)
    bad = reps.clone(); bad[6:] = float('nan')  # the real batches' representations are NaN; the set's targets are fine
    with pytest.raises(TrainingError, match='rolled back') as e:
        krr_st(syn0, x, bad, _cfg(iterations=10, max_failures=3, batch_real=30), out=tmp_path/'nan', progress=False)
    assert 'last good state' in str(e.value)
    from kdd_explore.core import load_artifact
    t, m = load_artifact(tmp_path/'nan'/'checkpoint')
    assert torch.equal(t['images'], syn0.images) and m['failures'] == 3  # nothing was applied


def test_pipeline_settings_switch_krr_st_on_and_fit_it_to_the_data():
    from kdd_explore.data import dataset_info
    from kdd_explore.pipeline import ConfigError, PipelineConfig, get_config
    from kdd_explore.recipes import parse_settings
    info = dataset_info('fashion_mnist')
    on = parse_settings(['distilled_baselines=["mkdt_random_init","mtt_ssl","krr_st"]', 'krr_st.iterations=50'])
    cfg = get_config('quickstart', **on)
    assert ('krr_st' in cfg.distilled_baselines and cfg.krr_config().iterations == 50
            and cfg.krr_config().batch_real == 256)
    # a real batch larger than the pool follows the pool (recorded), unless it was asked for
    small = get_config('quickstart', n_train=200, distilled_baselines=['krr_st']).check(info)  # the recipe's 256 > 200
    assert small.krr_st['batch_real'] == 200 and small.adapted['krr_st.batch_real']['recipe'] == 256
    with pytest.raises(ConfigError, match=r'krr_st.batch_real=1024: larger than the pool of 200'):
        get_config('quickstart', n_train=200, distilled_baselines=['krr_st'], **{'krr_st.batch_real': 1024}).check(info)
    with pytest.raises(ConfigError, match='KRRSTConfig.quota must be a whole number >= 1'):
        get_config('quickstart', distilled_baselines=['krr_st'], **{'krr_st.quota': 0}).check(info)
    with pytest.raises(KddError, match='Known: mkdt_random_init, mtt_ssl, krr_st'):
        PipelineConfig(distilled_baselines=('krr',))
    with pytest.raises(ConfigError, match="unknown setting 'krr_st.pool'"): parse_settings(['krr_st.pool=3'])
    # off by default, the CPU preset when switched on
    assert get_config('quickstart').krr_config() == KRRSTConfig.cpu_default()
