"KD experts: representations cache, train_kd, record/resume, replay-buffer import, high-loss subset, bad input."
import pytest, torch
from kdd_explore.core import ArtifactError, DatasetError, KddError, TrainingError
from kdd_explore.data import load_dataset
from kdd_explore.models import build_model
from kdd_explore.kd import (Experts, record_experts, teacher_representations, cached_representations,
                            train_kd, kd_loss, kd_losses, import_replay_buffer, high_loss_indices, per_example_kd_loss,
                            random_indices, train_kd_vmap, experts_job)

ARCH = dict(name='convnet', in_channels=1, im_size=8, width=4, depth=2, out_dim=3, norm='instance')

@pytest.fixture(scope='module')
def setting():
    d = load_dataset('fake', shape=(1, 8, 8), n_classes=3, n_train=48, n_test=6, seed=0)
    x = d.normalize(d.x_train)
    teacher = build_model(ARCH, seed=7)
    reps = teacher_representations(teacher, x, progress=False)
    ex = record_experts(ARCH, x, reps, n_experts=3, epochs=2, batch_size=16, seed=0, progress=False)
    return d, x, teacher, reps, ex

def test_representations_and_cache(setting, tmp_path):
    d, x, teacher, reps, ex = setting
    assert reps.shape == (48, 3) and reps.dtype == torch.float32
    assert torch.allclose(teacher_representations(teacher, x, batch_size=5, progress=False), reps, atol=1e-6)
    r = cached_representations(teacher, x, tmp_path/'r', {'dataset': d.meta()}, progress=False)
    assert torch.equal(r, reps)
    with pytest.raises(ArtifactError, match='teacher: expected'):
        cached_representations(build_model(ARCH, seed=8), x, tmp_path/'r', {'dataset': d.meta()}, progress=False)
    with pytest.raises(ArtifactError, match='n: expected'):
        cached_representations(teacher, x[:10], tmp_path/'r', {'dataset': d.meta()}, progress=False)

def test_kd_losses():
    p, t = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    assert (torch.allclose(kd_losses(p, t), ((p - t) ** 2).mean(1))
            and torch.allclose(kd_loss(p, t), ((p - t) ** 2).mean()))

def test_train_kd_deterministic_and_guarded(setting):
    d, x, teacher, reps, ex = setting
    a, b = build_model(ARCH, seed=1), build_model(ARCH, seed=1)
    la = train_kd(a, x, reps, epochs=3, batch_size=16, seed=4, progress=False)
    # a learned lr tensor
    lb = train_kd(b, x, reps, epochs=3, batch_size=16, seed=4, lr=torch.tensor(0.1), progress=False)
    assert la == lb and la[-1] < la[0]
    seen = []
    train_kd(build_model(ARCH, seed=1), x, reps, epochs=2, progress=False, on_epoch=lambda e, m: seen.append(e))
    assert seen == [1, 2]
    with pytest.raises(TrainingError, match='diverged'):
        train_kd(build_model(ARCH, seed=1), x, reps * float('nan'), epochs=1, progress=False)
    with pytest.raises(TrainingError, match='positive'):
        train_kd(build_model(ARCH, seed=1), x, reps, epochs=1, lr=-0.1, progress=False)

def test_record_resume_and_load(setting, tmp_path):
    d, x, teacher, reps, ex = setting
    assert (ex.n_experts, ex.n_epochs) == (3, 2)
    # an interrupted run: expert 0 finished and was saved; expert 1 was not
    record_experts(ARCH, x, reps, n_experts=1, epochs=2, batch_size=16, seed=0, out=tmp_path, progress=False)
    (tmp_path/'experts.json').rename(tmp_path/'expert_000.json')
    (tmp_path/'experts.safetensors').rename(tmp_path/'expert_000.safetensors')
    full = record_experts(ARCH, x, reps, n_experts=3, epochs=2, batch_size=16, seed=0, out=tmp_path, progress=False)
    for k in range(3):
        for e in range(3):
            for n, v in ex.params(k, e).items(): assert torch.equal(full.params(k, e)[n], v)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['experts.json', 'experts.safetensors']
    back = Experts.load(tmp_path/'experts', arch=ARCH)
    assert torch.equal(back.params(2, 2)['head.weight'], ex.params(2, 2)['head.weight'])
    with pytest.raises(ArtifactError, match='recorded for architecture'):
        Experts.load(tmp_path/'experts', arch=dict(ARCH, width=8))
    with pytest.raises(KddError, match='epochs 0..2'):
        ex.params(0, 3)

def test_corrupt_experts_file(setting, tmp_path):
    d, x, teacher, reps, ex = setting
    ex.save(tmp_path/'e')
    blob = (tmp_path/'e.safetensors').read_bytes()
    (tmp_path/'e.safetensors').write_bytes(blob[:100])
    with pytest.raises(ArtifactError, match='truncated'):
        Experts.load(tmp_path/'e')
    (tmp_path/'e.json').unlink()
    with pytest.raises(ArtifactError, match='interrupted'):
        Experts.load(tmp_path/'e')

def test_replay_buffer_import(setting, tmp_path):
    d, x, teacher, reps, ex = setting
    buf = [[[p.clone() for p in build_model(ARCH, seed=s).parameters()] for _ in range(3)] for s in range(2)]
    torch.save(buf, tmp_path/'replay_buffer_0.pt')
    imp = import_replay_buffer(tmp_path/'replay_buffer_0.pt', ARCH)
    assert (imp.n_experts, imp.n_epochs) == (2, 2)
    names = [n for n, _ in build_model(ARCH).named_parameters()]
    assert imp.names == names and torch.equal(imp.params(1, 2)[names[-1]], buf[1][2][-1])
    with pytest.raises(ArtifactError, match='has shape'):
        import_replay_buffer(tmp_path/'replay_buffer_0.pt', dict(ARCH, width=8))
    torch.save([[p[:-1] for p in e] for e in buf], tmp_path/'short.pt')
    with pytest.raises(ArtifactError, match='parameter tensors'):
        import_replay_buffer(tmp_path/'short.pt', ARCH)
    torch.save({'not': 'a list'}, tmp_path/'dict.pt')
    with pytest.raises(ArtifactError, match='list of experts'):
        import_replay_buffer(tmp_path/'dict.pt', ARCH)
    (tmp_path/'trunc.pt').write_bytes((tmp_path/'replay_buffer_0.pt').read_bytes()[:500])
    with pytest.raises(ArtifactError, match='truncated'):
        import_replay_buffer(tmp_path/'trunc.pt', ARCH)

def test_high_loss_indices_brute_force(setting):
    d, x, teacher, reps, ex = setting
    model = build_model(ARCH)
    manual = torch.stack([kd_losses(torch.func.functional_call(model, ex.params(k, 1), (x,)), reps)
                          for k in range(3)]).mean(0)
    assert torch.allclose(per_example_kd_loss(ex, x, reps, batch_size=7), manual, atol=1e-6)
    idx = high_loss_indices(ex, x, reps, 0.25)
    assert idx.tolist() == manual.argsort(descending=True)[:12].tolist()
    assert len(high_loss_indices(ex, x, reps, size=5)) == 5
    with pytest.raises(DatasetError, match='cannot be taken'):
        high_loss_indices(ex, x, reps, size=49)
    r = random_indices(48, 10, seed=3)
    assert len(set(r.tolist())) == 10 and torch.equal(r, random_indices(48, 10, seed=3))

def test_vmap_matches_sequential(setting):
    d, x, teacher, reps, ex = setting
    ms, refs = [build_model(ARCH, seed=s) for s in (1, 2)], [build_model(ARCH, seed=s) for s in (1, 2)]
    hv = train_kd_vmap(ms, x, reps, epochs=2, batch_size=16, seeds=[5, 6])
    hs = [train_kd(m, x, reps, epochs=2, batch_size=16, seed=s, progress=False) for m, s in zip(refs, (5, 6))]
    assert torch.allclose(torch.tensor(hv), torch.tensor(hs), rtol=1e-4)
    assert torch.allclose(ms[1].head.weight, refs[1].head.weight, atol=1e-5)

def test_experts_job(tmp_path):
    teacher = build_model(dict(ARCH, in_channels=1, im_size=8), seed=3)
    ex = experts_job(tmp_path, 'digits', teacher, n_experts=1, epochs=1, width=4, n_train=50, progress=False)
    assert ex.n_experts == 1 and (tmp_path/'representations.json').exists() and (tmp_path/'experts.json').exists()
