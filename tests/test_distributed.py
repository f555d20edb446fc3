"""Across processes with torch.distributed: two real gloo processes on the CPU (torchrun, on the loopback) against one process, and the refusals.

The two-process tests launch `torchrun --standalone --nproc_per_node 2` (as `python -m torch.distributed.run`): experts recorded on the `fake`
dataset must be bit-identical to a one-process recording, also after a rank crashed and the launch was rerun; a distillation with two expert
stretches per iteration (one per rank) must make the same updates as one process computing both; the evaluation's jobs shared over two ranks
must give the same rows."""
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
import torch.distributed as dist
from kdd_explore.core import artifact_exists, load_artifact, load_json, save_json
from kdd_explore.distributed import (DistInfo, DistributedError, check_divides, dist_info, init_distributed, running,
                                     shard)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT/'tests'/'dist_script.py')
TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']
LAUNCH_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')

def _env():
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(OMP_NUM_THREADS='1', KDD_DEVICE='cpu',
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p))
    # one thread per process in both runs: CPU kernels may add up in another order with another number of threads
    return env

def launch(args, two=False, check=True):
    "`python ARGS`, or the same under torchrun with two processes; the completed process."
    r = subprocess.run((TORCHRUN if two else [sys.executable]) + [str(a) for a in args], capture_output=True, text=True,
                       env=_env(), cwd=ROOT, timeout=600)
    if check:
        assert r.returncode == 0, (f"{'torchrun' if two else 'python'} {args} failed:\n{r.stdout[-3000:]}\n"
                                   f"{r.stderr[-5000:]}")
    return r

def experts_args(out, teacher):
    return ['experts', '--dataset', 'fake', '--teacher', teacher, '--out', out, '--n-experts', 4,
            '--epochs', 3, '--width', 8, '--depth', 2, '--n-train', 600, '--device', 'cpu', '--quiet']

def distill_args(experts, out):
    return ['distill', '--experts', experts, '--out', out, '--iterations', 3, '--experts-per-iteration', 2, '--init',
            'random', '--fraction', 0.02, '--device', 'cpu', '--quiet']

@pytest.fixture(scope='module')
def ref(tmp_path_factory):
    "A tiny teacher, and the one-process references: experts, a distillation with B = 2, an evaluation (the pipeline's is in its test)."
    from kdd_explore.models import SmallResNet
    from kdd_explore.ssl import save_teacher
    tmp = tmp_path_factory.mktemp('dist')
    torch.manual_seed(0)
    save_teacher(tmp/'teacher', SmallResNet(3, widths=(4, 4, 8, 8)), {'dataset': 'fake'})
    launch(['-m', 'kdd_explore.cli', *experts_args(tmp/'one'/'e', tmp/'teacher')])
    launch(['-m', 'kdd_explore.cli', *distill_args(tmp/'one'/'e'/'experts', tmp/'one'/'d')])
    launch([SCRIPT, 'evaluate', tmp/'one'/'eval.json'])
    return tmp

# --- two real processes

@pytest.mark.slow
def test_two_processes_record_experts_bit_identical_to_one_and_a_crashed_rank_leaves_its_experts(ref):
    out = ref/'two'/'e'
    r = launch([SCRIPT, 'experts', '--crash-at', 2, '--', *experts_args(out, ref/'teacher')], two=True, check=False)
    assert r.returncode != 0 and 'simulated crash of rank 1 before expert 3' in r.stdout + r.stderr
    parts = sorted(int(p.stem[len('expert_'):]) for p in out.glob('expert_*.json'))
    # rank 1 finished expert 1 before it crashed
    assert 1 in parts and 3 not in parts and not artifact_exists(out/'experts')
    # the rerun continues
    r = launch([SCRIPT, 'experts', '--forbid', ','.join(map(str, parts)), '--', *experts_args(out, ref/'teacher')],
               two=True)
    # bit-identical
    assert (out/'experts.safetensors').read_bytes() == (ref/'one'/'e'/'experts.safetensors').read_bytes()
    one, two = (load_json(p/'experts.json') for p in (ref/'one'/'e', out))
    drop = ('created', 'representations')  # when it was written, and where the representations lie
    assert {k: v for k, v in two.items() if k not in drop} == {k: v for k, v in one.items() if k not in drop}
    assert sorted(two['losses']) == ['0', '1', '2', '3']  # every expert's losses, also of those read back from disk
    assert sorted(p.name for p in out.iterdir()) == ['experts.json', 'experts.safetensors', 'representations.json',
                                                     'representations.safetensors']

@pytest.mark.slow
def test_two_processes_distil_with_two_stretches_like_one_process(ref):
    out = ref/'two'/'d'
    launch(['-m', 'kdd_explore.cli', *distill_args(ref/'one'/'e'/'experts', out)], two=True)
    (a, ma), (b, mb) = (load_artifact(p/'synthetic_set') for p in (ref/'one'/'d', out))
    for k in ('images', 'targets', 'lr'): torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    # rank 0 wrote the checkpoint of the end
    assert (b['images'] - load_artifact(out/'checkpoint')[0]['images']).abs().max() == 0
    assert mb['config']['experts_per_iteration'] == 2
    h1, h2 = (load_json(p/'history.json')['records'] for p in (ref/'one'/'d', out))
    assert len(h1) == len(h2) == 3
    for r1, r2 in zip(h1, h2):
        assert (r1['expert'], r1['start_epoch']) == (r2['expert'], r2['start_epoch']) and len(r2['expert']) == 2
        # the averaged meta-gradients, to float tolerance
        for k in ('loss', 'lr', 'grad_norm_images', 'grad_norm_targets', 'grad_norm_lr'):
            assert r2[k] == pytest.approx(r1[k], rel=1e-5, abs=1e-9), k
        assert r2['losses'] == pytest.approx(r1['losses'], rel=1e-6)
    assert not r1['rolled_back']

@pytest.mark.slow
def test_evaluation_jobs_across_two_processes_give_the_rows_of_one_and_B_must_divide(ref):
    launch([SCRIPT, 'evaluate', ref/'two'/'eval.json', ref/'one'/'e'/'experts'], two=True)
    one, two = (load_json(p) for p in (ref/'one'/'eval.json', ref/'two'/'eval.json'))
    assert two['rows'] == one['rows'] and len(two['rows']) == 4
    bad = two['indivisible']  # 3 stretches per iteration cannot be shared by 2 processes: refused before any work
    assert bad['code'] == 2 and ('experts_per_iteration (--experts-per-iteration) is 3, which 2 processes cannot '
                                 'share evenly') in bad['stderr']
    assert not (ref/'two'/'indivisible').exists()

def pipeline_args(out, teacher, procs):
    "`kdd-explore run` of the quick recipe at toy size on the fake dataset (MTT-SSL and KRR-ST beside MKDT), in `procs` processes."
    sets = ['dataset_options={"shape": [3, 32, 32], "n_classes": 4}', 'n_train=200', 'n_test=80', 'width=8', 'depth=2',
            'high_loss_clusters=null', 'distilled_baselines=["mtt_ssl", "krr_st"]', 'n_ssl_experts=2', 'transfer=null',
            'variance=false', 'ablation=false', 'fractions=[0.1]', 'seeds=[0, 1, 2]', 'horizon_steps=[0, 1]',
            'distill.lr_init=0.01']  # the random teacher's targets are large: a smaller inner lr keeps the steps short
    return ['-m', 'kdd_explore.cli', 'run', '--config', 'quick', '--dataset', 'fake', '--teacher', teacher,
            '--out', out, '--device', 'cpu', '--procs', procs, *[a for kv in sets for a in ('--set', kv)]]

@pytest.mark.slow
def test_the_pipeline_in_two_processes_writes_the_results_of_one(ref):
    "`--procs 2` relaunches the command under torchrun: experts and evaluation jobs shared, the distillations (B = 1) side by side (one per process), the rest rank 0 first."
    launch(pipeline_args(ref/'one'/'run', ref/'teacher', 1))
    r = launch(pipeline_args(ref/'two'/'run', ref/'teacher', 2))  # one process, which starts two
    assert 'Running in 2 processes of one thread each' in r.stdout
    assert ('each distillation runs whole on one of the 2 processes, the distillations side by side: 2 processes '
            'cannot share experts_per_iteration=1') in r.stdout
    one, two = (load_json(p/'run'/'results.json') for p in (ref/'one', ref/'two'))
    assert {k: v for k, v in two.items() if k != 'timings'} == {k: v for k, v in one.items() if k != 'timings'}
    # each stage timed on the rank that ran it
    assert set(two['timings']) == set(one['timings']) >= {'mkdt_high_loss', 'mtt_ssl', 'krr_st', 'horizon'}
    assert len(two['results']) == 10 and len(two['results'][0]['accs']) == 3
    for f in ('experts/experts.safetensors', 'mkdt_high_loss/synthetic_set.safetensors',
              'mtt_ssl/synthetic_set.safetensors', 'krr_st/synthetic_set.safetensors'):
        assert (ref/'two'/'run'/f).read_bytes() == (ref/'one'/'run'/f).read_bytes(), f
    assert not (ref/'two'/'run'/'.lock').exists()
    # refused here, before any launch
    bad = launch(pipeline_args(ref/'two'/'bad', ref/'teacher', 2) + ['--set', 'n_train=100000'], check=False)
    assert (bad.returncode == 2 and 'n_train=100000' in bad.stderr and 'Running in 2' not in bad.stdout
            and 'torch.distributed' not in bad.stderr)

# --- one process: nothing distributed, and the refusals

def test_one_process_needs_no_process_group():
    assert dist_info() == DistInfo(0, 1, 0) and not running()
    assert init_distributed('cpu') == torch.device('cpu') and not dist.is_initialized()
    assert shard(range(5)) == [0, 1, 2, 3, 4] and shard(range(5), DistInfo(1, 2)) == [1, 3]
    assert check_divides(3, 'B') == 3
    with pytest.raises(DistributedError, match='B is 3, which 2 processes cannot share evenly'):
        check_divides(3, 'B', world_size=2)

def test_a_process_launched_as_one_of_two_without_a_group_is_refused(monkeypatch, tmp_path):
    from kdd_explore.kd import record_experts
    from kdd_explore.evaluate import compare
    monkeypatch.setenv('WORLD_SIZE', '2')
    x, t = torch.randn(8, 1, 8, 8), torch.randn(8, 4)
    with pytest.raises(DistributedError, match='has not joined their process group'):
        record_experts(dict(name='convnet', in_channels=1, im_size=8, width=4, depth=2, out_dim=4), x, t, 2, 1,
                       out=tmp_path, progress=False)
    with pytest.raises(DistributedError, match='init_distributed'): compare({}, None, progress=False)
    assert not list(tmp_path.iterdir())

@pytest.mark.slow
def test_a_rank_whose_gpu_is_missing_is_refused_before_any_work(tmp_path):
    env = dict(_env(), RANK='1', WORLD_SIZE='2', LOCAL_RANK='99', MASTER_ADDR='127.0.0.1', MASTER_PORT='29999')
    r = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'experts', '--out', str(tmp_path/'e'), '--device',
                        'cuda'],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and ('Rank 1 (local rank 99 on this machine) computes on cuda:99, but '
                                  'torch sees') in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and not (tmp_path/'e').exists()

def _toy():
    from kdd_explore.data import load_dataset
    from kdd_explore.kd import record_experts, student_arch
    from kdd_explore.distill import SyntheticSet
    d = load_dataset('fake', shape=(1, 8, 8), n_classes=3, n_train=60, n_test=6, seed=0)
    x = d.normalize(d.x_train); reps = torch.randn(60, 5, generator=torch.Generator().manual_seed(1))
    arch = student_arch(d.shape, 5, width=4, depth=2)
    ex = record_experts(arch, x, reps, 3, 3, batch_size=16, progress=False)
    return ex, SyntheticSet.from_real(x, reps, torch.arange(8), lr=0.1, meta={'arch': arch})

def test_two_stretches_average_their_exact_meta_gradients_and_one_is_the_papers_loop():
    from kdd_explore.distill import DistillConfig, distill, unroll_match, _stretch, _kd_maker
    from kdd_explore.models import build_model
    ex, syn0 = _toy()
    cfg = DistillConfig.cpu_default(iterations=1, syn_steps=3, batch_syn=4, experts_per_iteration=2)
    syn, h = distill(ex, syn0, cfg, progress=False)
    grads = []
    for j in range(2):
        g, k, s = _stretch(ex, cfg, j)
        X, Y, lr = (t.clone().requires_grad_(True) for t in (syn0.images, syn0.targets, syn0.lr))
        grads.append(unroll_match(ex.params(k, s), ex.params(k, s + 2), lr, [X, Y],
                                  _kd_maker(cfg)(build_model(ex.arch), X, Y, j, g), 3))
    torch.testing.assert_close(syn.images, syn0.images - cfg.lr_img * (grads[0][1][0] + grads[1][1][0]) / 2)
    torch.testing.assert_close(syn.lr, syn0.lr - cfg.lr_lr * (grads[0][2] + grads[1][2]) / 2)
    assert h.records[0]['losses'] == pytest.approx([float(grads[0][0]), float(grads[1][0])])
    _, h1 = distill(ex, syn0, DistillConfig.cpu_default(iterations=2, syn_steps=3, batch_syn=4), progress=False)
    assert isinstance(h1.records[0]['expert'], int) and 'losses' not in h1.records[0]  # B = 1: the records as before
    assert [r['expert'] for r in h1.records] == h.records[0]['expert']  # stretch j of B = 2 is iteration j of B = 1

def test_a_checkpoint_resumes_and_refuses_another_number_of_stretches(tmp_path):
    import dataclasses
    from kdd_explore.distill import DistillConfig, distill
    ex, syn0 = _toy()
    cfg = DistillConfig.cpu_default(iterations=2, syn_steps=2, batch_syn=4, checkpoint_every=1)
    ref, _ = distill(ex, syn0, cfg, progress=False)
    distill(ex, syn0, dataclasses.replace(cfg, iterations=1), out=tmp_path, progress=False)
    res, _ = distill(ex, syn0, cfg, out=tmp_path, progress=False)
    assert torch.equal(res.images, ref.images)
    with pytest.raises(Exception, match='experts_per_iteration: expected 2, found 1'):
        distill(ex, syn0, dataclasses.replace(cfg, experts_per_iteration=2), out=tmp_path, progress=False)
