"benchmarks/reference_loop.py: our distillation loop held to the authors' loop (jiayini1119/MKDT) without their code, and the script's refusals."
import json, os, subprocess, sys
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file
from conftest import ROOT, load_script

SCRIPT = ROOT/'benchmarks'/'reference_loop.py'
RESULTS = ROOT/'benchmarks'/'results'/'reference_equivalence.json'

def _script(): return load_script(SCRIPT)

def _clone():
    "A clone of jiayini1119/MKDT for the tests that run their code: $MKDT_REFERENCE (else none: those tests skip)."
    p = os.environ.get('MKDT_REFERENCE')
    return p if p and Path(p).exists() else None

def test_files_are_small_and_record_equivalence():
    "The results file names the reference commit, the patches and the state's seed; the figures are float64 round-off."
    assert RESULTS.stat().st_size < 200_000 and RESULTS.with_suffix('.safetensors').stat().st_size < 200_000
    r = json.loads(RESULTS.read_text())
    assert len(r['reference']['commit']) == 40 and r['equivalent'] is True
    assert r['worst_update_rel'] < r['tolerance'] <= 1e-9 and r['worst_loss_rel'] < r['tolerance']
    names = {p['name'] for p in r['patches']}
    assert {'wandb_stub', 'float64', 'our_minibatches', 'dump_state', 'data_from_toolkit'} <= names
    assert all(p['why'] for p in r['patches'])
    assert r['their_loaded_files'] == ['replay_buffer_0.pt']

@pytest.mark.parametrize('mode,iterations', [('auto', 1), ('auto', 2), ('bounded', 2)])
def test_our_loop_matches_the_reference_tensors(mode, iterations):
    "Our loop from the recorded state (regenerated from the seed) lands on the reference's updated images, targets, lr and loss after one and two iterations, to float64 round-off (in both meta-gradient modes)."
    ref = _script()
    r = json.loads(RESULTS.read_text())
    assert r['seed'] == ref.SEED and r['settings'] == ref.SETTINGS
    theirs = load_file(str(RESULTS.with_suffix('.safetensors')))
    experts, syn = ref.make_state(r['seed'], r['settings'])
    # the minibatches fed into their loop are still the ones our loop draws
    assert [[b.tolist() for b in it] for it in ref.our_batches(experts, syn, ref.our_config())] == r['minibatches']
    start = dict(images=syn.images, labels=syn.targets, lr=syn.lr)
    for t in [iterations]:
        ours = ref.run_ours(experts, syn, t, mode=mode)
        assert not ours['rolled_back']
        k = len(theirs[f'after_{t}.images'])
        for name in ('images', 'labels', 'lr'):
            b = theirs[f'after_{t}.{name}'].reshape(-1)  # after iteration 2: the first images only
            a, s0 = ours[name].reshape(-1)[:b.numel()], start[name].reshape(-1)[:b.numel()]
            if name == 'images': assert k == (r['settings']['n_images'] if t == 1 else ref.STORED_IMAGES_2)
            upd = (b - s0).abs().max()
            assert upd > 0, name  # the step moved it: the comparison is not vacuous
            rel = ((a - s0) - (b - s0)).abs().max() / upd
            assert rel < r['tolerance'], (t, name, float(rel))
        loss = float(theirs[f'after_{t}.loss'])
        assert abs(ours['loss'] - loss) / loss < r['tolerance']

@pytest.mark.parametrize('change', [dict(seed=37), dict(momentum=0.9)])
def test_the_comparison_sees_a_different_loop(change):
    "Sensitivity: another minibatch order (seed) or another outer momentum misses the reference's update by far more than the tolerance."
    ref = _script()
    r = json.loads(RESULTS.read_text())
    theirs = load_file(str(RESULTS.with_suffix('.safetensors')))
    experts, syn = ref.make_state(r['seed'], r['settings'])
    from kdd_explore.distill import distill
    t = 1 if 'seed' in change else 2  # momentum shows from the second update on
    cfg = ref.our_config(iterations=t)
    for k, v in change.items(): setattr(cfg, k, v)
    res, _ = distill(experts, syn, cfg, progress=False)
    b = theirs[f'after_{t}.images']; a, s0 = res.images[:len(b)], syn.images[:len(b)]
    assert ((a - b).abs().max() / (b - s0).abs().max()).item() > 1e-3

def _refuses(args, tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('reference_loop.py: '), r.stderr
    return lines[0]

def test_refuses_a_missing_or_wrong_reference(tmp_path):
    "A missing path, a folder that is not the authors' repository, and a look-alike distill.py: one line naming what to do."
    msg = _refuses(['--reference', str(tmp_path/'nowhere')], tmp_path)
    assert 'does not exist' in msg and 'git clone https://github.com/jiayini1119/MKDT' in msg
    (tmp_path/'empty').mkdir()
    msg = _refuses(['--reference', str(tmp_path/'empty')], tmp_path)
    assert 'is not a clone of jiayini1119/MKDT' in msg and 'distill.py' in msg
    fake = tmp_path/'fake'; fake.mkdir()
    for f in ('distill.py', 'reparam_module.py', 'networks.py', 'utils.py', 'buffer.py'): (fake/f).write_text('# x\n')
    msg = _refuses(['--reference', str(fake)], tmp_path)
    assert 'not the one of jiayini1119/MKDT' in msg
    assert 'required' in _refuses([], tmp_path)

@pytest.mark.skipif(_clone() is None, reason="needs a clone of jiayini1119/MKDT: set MKDT_REFERENCE=PATH")
def test_check_mode_runs_their_code(tmp_path):
    "With a clone: check mode runs their patched distill.py and agrees with ours (the figures are not written)."
    r = subprocess.run([sys.executable, str(SCRIPT), '--reference', _clone(), '--no-write'], capture_output=True,
                       text=True, timeout=600, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"equivalent": true' in r.stdout

@pytest.mark.skipif(_clone() is None, reason="needs a clone of jiayini1119/MKDT: set MKDT_REFERENCE=PATH")
def test_run_mode_at_toy_size(tmp_path):
    "With a clone: their loop for a few iterations on our experts (fake data) at cifar10_cpu's settings, saved as our SyntheticSet; with one trajectory per buffer file it loads one file."
    from kdd_explore.data import load_dataset
    from kdd_explore.kd import student_arch, record_experts
    from kdd_explore.distill import SyntheticSet
    data = load_dataset('fake', n_train=40, n_test=10, shape=(3, 32, 32), n_classes=4)
    x = data.normalize(data.x_train)
    reps = torch.randn(len(x), 16, generator=torch.Generator().manual_seed(0))
    arch = student_arch((3, 32, 32), 16, width=32)
    ex = record_experts(arch, x, reps, n_experts=2, epochs=4, lr=0.05, batch_size=16, seed=0, progress=False)
    ex.save(tmp_path/'experts')
    syn0 = SyntheticSet.from_real(x, reps, torch.arange(12), lr=0.1, meta=dict(arch=arch))
    syn0.save(tmp_path/'init')
    r = subprocess.run([sys.executable, str(SCRIPT), '--reference', _clone(), '--run', '--experts',
                        str(tmp_path/'experts'), '--init', str(tmp_path/'init'), '--iterations', '4', '--save-every',
                        '2', '--out', str(tmp_path/'out')], capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    info = json.loads((tmp_path/'out'/'reference_run.json').read_text())
    assert info['saves'] == [2, 4] and len(info['losses']) == 4 and all(0 <= s < 3 for s in info['start_epochs'])
    assert info['buffer_files'] == 2 and len(info['loaded_files']) == 1  # one trajectory of the two is ever read
    assert info['settings']['syn_steps'] == 10 and info['settings']['batch_syn'] == 32
    out = SyntheticSet.load(tmp_path/'out'/'synthetic_set')
    assert len(out) == 12 and out.meta['distilled'] == 'reference' and out.meta['iteration'] == 4
    assert not torch.equal(out.images, syn0.images) and float(out.lr) != 0.1
    # their loop fed our equal minibatches (12 images, batch_syn 32: one batch of all 12 either way, so the same
    # images move; the option's plumbing is what is checked here)
    r = subprocess.run([sys.executable, str(SCRIPT), '--reference', _clone(), '--run', '--experts',
                        str(tmp_path/'experts'), '--init', str(tmp_path/'init'), '--iterations', '2', '--our-batches',
                        '--one-file', '--out', str(tmp_path/'out2')], capture_output=True, text=True, timeout=600,
                       cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    info = json.loads((tmp_path/'out2'/'reference_run.json').read_text())
    assert info['minibatches'].startswith('ours') and info['buffer_files'] == 1 and 'our_minibatches' in {
        p['name'] for p in info['patches']}
