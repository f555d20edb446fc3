"SSL losses, teacher checkpoints and resume, teacher loading, and the gradient-variance estimator: hand-computed cases and bad input."
import math
from pathlib import Path
import pytest, torch
import torch.nn.functional as F
from torch import nn
from kdd_explore.core import ArtifactError, KddError, TrainingError, load_artifact, read_meta, make_generator
from kdd_explore.data import load_dataset
from kdd_explore.augment import SSLViews
from kdd_explore.models import SmallResNet, ConvNet, resnet18_cifar
from kdd_explore.ssl import (BarlowTwinsLoss, NTXentLoss, Projector, ssl_loss, train_teacher,
                             save_teacher, load_teacher, teacher_job, default_teacher, init_model)
from kdd_explore.variance import (gradient_variance, norm_var_from_grads, trajectory_spread,
                                  variance_job, train_student, LOSSES)

torch.set_num_threads(1)

# ---------- losses against hand-computed cases (float64) ----------

def test_barlow_twins_by_hand():
    z1 = torch.tensor([[1., 3.], [-1., 1.]], dtype=torch.float64)
    z2 = torch.tensor([[2., 0.], [0., 1.]], dtype=torch.float64)
    # standardised: z1 -> [[1, 1], [-1, -1]], z2 -> [[1, -1], [-1, 1]]; C = [[1, -1], [1, -1]]
    for lambd in (5e-3, 0.5):
        assert BarlowTwinsLoss(lambd, eps=0)(z1, z2).item() == pytest.approx(4 + 2 * lambd, abs=1e-12)

def test_barlow_twins_matches_explicit_sum():
    g = make_generator(0)
    z1, z2 = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    std = lambda z: (z - z.mean(0)) / z.std(0, unbiased=False)
    a, b = std(z1), std(z2); want = 0.
    for i in range(3):
        for j in range(3):
            c = sum(a[n, i] * b[n, j] for n in range(7)) / 7
            want += (1 - c)**2 if i == j else 0.01 * c**2
    assert BarlowTwinsLoss(0.01, eps=0)(z1, z2).item() == pytest.approx(float(want), abs=1e-10)

def test_ntxent_by_hand():
    e = torch.eye(2, dtype=torch.float64)
    assert NTXentLoss(0.5)(e, e).item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), abs=1e-12)
    assert NTXentLoss(0.5)(e, e.flip(0)).item() == pytest.approx(math.log(2 + math.exp(2)), abs=1e-12)
    assert NTXentLoss(1.0)(e, e).item() == pytest.approx(math.log(1 + 2 * math.exp(-1)), abs=1e-12)

def test_ntxent_matches_explicit_sum():
    g = make_generator(1)
    z1, z2 = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    u = F.normalize(torch.cat([z1, z2]), dim=1); t = 0.3; total = 0.
    for k in range(8):
        p = (k + 4) % 8
        den = sum(math.exp(float(u[k] @ u[l]) / t) for l in range(8) if l != k)
        total += -math.log(math.exp(float(u[k] @ u[p]) / t) / den)
    assert NTXentLoss(t)(z1, z2).item() == pytest.approx(total / 8, abs=1e-10)

def test_loss_bad_input():
    with pytest.raises(KddError, match='Known: barlow_twins, simclr'): ssl_loss('byol')
    with pytest.raises(KddError, match='same shape'): BarlowTwinsLoss()(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(KddError, match='at least 2'): BarlowTwinsLoss()(torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(KddError, match='positive'): NTXentLoss(-1)
    assert Projector(16, 8, 4)(torch.randn(3, 16)).shape == (3, 4)

# ---------- teacher training: resume, divergence ----------

@pytest.fixture(scope='module')
def tiny_data(): return load_dataset('fake', shape=(1, 12, 12), n_classes=4, n_train=96, n_test=32, seed=0)

def tiny_backbone():
    return init_model({'name': 'small_resnet', 'in_channels': 1, 'widths': [4, 4, 8, 8], 'blocks': [1, 1, 1, 1]}, 0)
KW = dict(batch_size=32, lr=3e-3, proj_hidden=16, proj_dim=16, progress=False)

def test_resume_equals_uninterrupted(tiny_data, tmp_path):
    a = tiny_backbone(); ra = train_teacher(a, tiny_data, 'barlow_twins', epochs=2, out=tmp_path/'a', **KW)
    b = tiny_backbone(); train_teacher(b, tiny_data, 'barlow_twins', epochs=1, out=tmp_path/'b', **KW)
    assert read_meta(tmp_path/'b'/'checkpoint')['epoch'] == 1
    b2 = tiny_backbone()  # a fresh process would start from a fresh model: the checkpoint must carry everything
    rb = train_teacher(b2, tiny_data, 'barlow_twins', epochs=2, out=tmp_path/'b', **KW)
    assert rb['history']['epoch'] == [1, 2]
    assert rb['history']['loss'] == pytest.approx(ra['history']['loss'], rel=1e-5)
    for (k, va), vb in zip(a.state_dict().items(), b2.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-4, atol=1e-5, msg=k)
    # asking again for 2 epochs trains nothing more
    rc = train_teacher(tiny_backbone(), tiny_data, 'barlow_twins', epochs=2, out=tmp_path/'b', **KW)
    assert rc['history']['epoch'] == [1, 2]

def test_resume_refuses_other_settings(tiny_data, tmp_path):
    train_teacher(tiny_backbone(), tiny_data, 'barlow_twins', epochs=1, out=tmp_path, **KW)
    with pytest.raises(ArtifactError, match='method: expected'):
        train_teacher(tiny_backbone(), tiny_data, 'simclr', epochs=2, out=tmp_path, **KW)
    with pytest.raises(ArtifactError, match='batch_size'):
        train_teacher(tiny_backbone(), tiny_data, 'barlow_twins', epochs=2, out=tmp_path, **dict(KW, batch_size=16))

def test_nan_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path):
    train_teacher(tiny_backbone(), tiny_data, 'barlow_twins', epochs=1, out=tmp_path, **KW)
    before = (tmp_path/'checkpoint.safetensors').read_bytes()
    with pytest.raises(TrainingError, match='lower the learning rate') as e:
        train_teacher(tiny_backbone(), tiny_data, 'barlow_twins', epochs=4, out=tmp_path, **dict(KW, lr=1e10))
    assert 'epoch 1' in str(e.value) and 'checkpoint' in str(e.value)
    assert (tmp_path/'checkpoint.safetensors').read_bytes() == before
    assert read_meta(tmp_path/'checkpoint')['epoch'] == 1
    # the advice works: rerun with a sane lr resumes from epoch 1
    r = train_teacher(tiny_backbone(), tiny_data, 'barlow_twins', epochs=2, out=tmp_path, **KW)
    assert r['history']['epoch'] == [1, 2]

def test_batch_larger_than_dataset(tiny_data):
    with pytest.raises(KddError, match='larger than the 96 training images'):
        train_teacher(tiny_backbone(), tiny_data, epochs=1, **dict(KW, batch_size=200))

def test_teacher_job_and_artifact(tmp_path):
    p = teacher_job('digits', 'barlow_twins', out=tmp_path, epochs=1, n_train=200, progress=False)
    t = load_teacher(p)
    assert (t.teacher_meta['method'] == 'barlow_twins'
            and 'kdd-explore teacher --dataset digits' in t.teacher_meta['command'])
    assert not t.training and not any(q.requires_grad for q in t.parameters())

# ---------- loading teachers ----------

def test_load_public_resnet18_layout(tmp_path):
    ref = resnet18_cifar(3).eval()
    sd = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    sd['fc.weight'] = torch.zeros(10, 512)
    torch.save({'state_dict': sd}, tmp_path/'bt.pth')
    t = load_teacher(tmp_path/'bt.pth'); x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(t(x), ref(x))

def test_load_teacher_wrong_channels_and_arch(tmp_path):
    with pytest.raises(ArtifactError, match=r'conv1.weight: expected \(64, 3, 3, 3\), found \(64, 1, 3, 3\)'):
        load_teacher(resnet18_cifar(1).state_dict())
    with pytest.raises(ArtifactError) as e: load_teacher(ConvNet(3, 32, width=8).state_dict())
    msg = str(e.value)
    assert 'missing keys: conv1.weight' in msg and 'unexpected keys: body.0.weight' in msg and 'in all' in msg
    assert len(msg) < 1500  # a few keys, not hundreds
    save_teacher(tmp_path/'t', SmallResNet(1), {'dataset': 'x'})
    with pytest.raises(ArtifactError, match='not the'):
        load_teacher(tmp_path/'t', arch={'name': 'small_resnet', 'in_channels': 3})
    torch.save([1, 2], tmp_path/'list.pth')
    with pytest.raises(ArtifactError, match='not a state dict'): load_teacher(tmp_path/'list.pth')

def test_default_teacher_unknown_dataset():
    with pytest.raises(KddError, match='kdd-explore teacher --dataset cifar100'): default_teacher('cifar100')

# ---------- the variance estimator ----------

def test_estimator_gaussian_known_answer():
    "g_k = mu + sigma*eps in P dims: nu = P sigma^2 / ||mu||^2 = 100 * 0.09 / 25 = 0.36."
    g = make_generator(3); P = 100
    est = [norm_var_from_grads(torch.full((P,), 0.5)
                               + 0.3 * torch.randn(40, P, generator=g, dtype=torch.float64))['norm_var']
           for _ in range(300)]
    assert sum(est) / len(est) == pytest.approx(0.36, rel=0.02)

def test_gradient_variance_linear_closed_form():
    "Per-example gradients of a linear student under MSE are exact; the finite-population formula gives nu(b)."
    class Lin(nn.Module):
        def __init__(s): super().__init__(); s.w = nn.Linear(5, 1, bias=False)
        def forward(s, x): return s.w(x.flatten(1))
    torch.manual_seed(0); m = Lin()
    g = make_generator(0); x = torch.randn(30, 1, 1, 5, generator=g); t = torch.randn(30, 1, generator=g) + 1
    with torch.no_grad(): a = 2 * (m(x) - t) * x.flatten(1)
    N = len(a); sig2 = (a - a.mean(0)).pow(2).sum(1).mean(); mu2 = a.mean(0).pow(2).sum()
    for b in (3, 10):
        r = gradient_variance(m, 'kd_mse', x, b, n_batches=600, targets=t, seed=b)
        exact = float((N - b) / (N - 1) * sig2 / b / mu2)
        assert abs(r['norm_var'] - exact) < 3.5 * r['stderr'], (b, r, exact)
        assert r['stderr'] < 0.1 * exact

def test_gradient_variance_bad_input():
    m = ConvNet(1, 8, width=4, depth=2, out_dim=3); x = torch.randn(10, 1, 8, 8)
    with pytest.raises(KddError, match='larger than the 10 images'):
        gradient_variance(m, 'kd_mse', x, 11, targets=torch.zeros(10, 3))
    with pytest.raises(KddError, match='Known: barlow_twins'): gradient_variance(m, 'mse', x, 4)
    with pytest.raises(KddError, match='needs targets'): gradient_variance(m, 'kd_mse', x, 4)
    with pytest.raises(KddError, match='out_dim=5'): gradient_variance(m, 'kd_mse', x, 4, targets=torch.zeros(10, 5))
    with pytest.raises(KddError, match='needs views'): gradient_variance(m, 'simclr', x, 4)
    with pytest.raises(KddError, match='at least 3'):
        gradient_variance(m, 'kd_mse', x, 4, n_batches=2, targets=torch.zeros(10, 3))
    with pytest.raises(KddError, match='same parameters'):
        trajectory_spread([[{'w': torch.zeros(2)}], [{'w': torch.ones(2)}]])

def test_ssl_variance_runs_and_is_reproducible():
    d = load_dataset('digits', n_train=300); x = d.normalize(d.x_train)
    m = ConvNet(1, 8, width=8, depth=2, out_dim=16); v = SSLViews(d.mean, d.std)
    r1 = gradient_variance(m, 'barlow_twins', x, 32, n_batches=5, views=v, seed=1)
    r2 = gradient_variance(m, 'barlow_twins', x, 32, n_batches=5, views=v, seed=1)
    assert r1['norm_var'] == r2['norm_var'] and r1['norm_var'] > 0

def test_variance_job_quick_writes_json_and_html(tmp_path, capsys):
    t = init_model({'name': 'small_resnet', 'in_channels': 1, 'widths': [4, 4, 8, 8], 'blocks': [1, 1, 1, 1]}, 0).eval()
    res = variance_job('digits', tmp_path, teacher=t, quick=True, progress=False, n_train=400,
                       batch_sizes=[16, 32], n_batches=4)
    import json
    saved = json.loads((tmp_path/'variance.json').read_text())
    assert set(saved['losses']) == set(LOSSES) and saved['losses']['simclr']['batch_sizes'] == [16, 32]
    assert all(len(v['norm_var']) == 2 and len(v['stderr']) == 2 for v in saved['losses'].values())
    assert 'plotly' in (tmp_path/'variance.html').read_text()[:5_000_000].lower()
    with pytest.raises(KddError, match=r'larger than the \d+ images of digits'):
        variance_job('digits', None, teacher=t, quick=True, progress=False, n_train=400, batch_sizes=[500])
    # no shipped teacher for digits: quick mode warns and uses a random one
    variance_job('digits', None, quick=True, progress=False, n_train=200, batch_sizes=[16], n_batches=3)
    assert 'randomly initialised teacher' in capsys.readouterr().out
    with pytest.raises(KddError, match='Unknown variance settings'): variance_job('digits', None, quick=True, widht=3)
