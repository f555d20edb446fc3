"""One process or two? Wall time of the quickstart's experts stage and of distillation iterations with B = 2 expert stretches per
iteration, in 1 process of 2 threads against 2 processes of 1 thread (torchrun, gloo, on the loopback); and the matching loss after the
same number of iterations with B = 1 and B = 2 (does a less noisy meta-gradient match better?). The figures behind the README's
"Across processes" section (issue 14).

    python benchmarks/speed/distributed_scaling.py --json distributed_scaling.json    # the quickstart's experts, 20 iterations (a few minutes)
    python benchmarks/speed/distributed_scaling.py --tiny                             # the same code at toy size (the 'quick' configuration)

Run it on an otherwise idle machine: the point is how two processes share the cores. The times exclude starting the processes
(importing torch, joining the group), which is reported apart as `launch_s`. Every run reads the same cached teacher representations,
and the distillations start from the same high-loss images of the same experts (those of the one-process recording).
"""
from __future__ import annotations
import argparse, json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
from benchmarks.provenance import provenance

HERE = Path(__file__).resolve()

def _setting(tiny):
    from kdd_explore.pipeline import get_config
    return get_config('quick' if tiny else 'quickstart')

def _data(cfg, work):
    "The pool, its teacher representations (cached in `work`) and the student's arch, as the pipeline makes them."
    from kdd_explore.data import load_dataset
    from kdd_explore.kd import cached_representations
    from kdd_explore.ssl import default_teacher
    data = load_dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed, **cfg.dataset_options)
    x = data.normalize(data.x_train)
    reps = cached_representations(default_teacher(cfg.dataset), x, work/'representations', {'dataset': data.meta()},
                                  progress=False)
    return x, reps, cfg.student(data.shape, reps.shape[1])

def worker(a):
    "One measurement, in every process of a launch (or in the only one); rank 0 writes `work/result_{tag}.json`."
    import torch
    from kdd_explore.distributed import barrier, dist_info, init_distributed, is_main
    init_distributed('cpu')
    work, cfg = Path(a.work), _setting(a.tiny)
    x, reps, arch = _data(cfg, work)
    res = dict(tag=a.tag, what=a.worker, processes=dist_info().world_size, threads=torch.get_num_threads())
    if a.worker == 'experts':
        from kdd_explore.kd import record_experts
        barrier(); t0 = time.time()
        record_experts(arch, x, reps, cfg.n_experts, cfg.expert_epochs, batch_size=cfg.expert_batch_size, seed=cfg.seed,
                       out=work/a.tag, progress=False)
        barrier(); res['seconds'] = round(time.time() - t0, 2)
        res['experts'] = f'{cfg.n_experts} x {cfg.expert_epochs} epochs on {len(x)} images'
    else:
        from kdd_explore.core import load_json
        from kdd_explore.kd import Experts
        from kdd_explore.distill import SyntheticSet, distill, matching_loss
        experts = Experts.load(work/'experts_one'/'experts')
        dc = cfg.distill_config(iterations=a.iterations, experts_per_iteration=a.b,
                                snapshot_every=10**6, checkpoint_every=10**6)
        syn0 = SyntheticSet.from_real(x, reps, torch.tensor(load_json(work/'subsets.json')['high_loss']),
                                      lr=dc.lr_init, meta={'arch': arch})
        barrier(); t0 = time.time()
        syn, _ = distill(experts, syn0, dc, progress=False)
        barrier(); res['seconds'] = round(time.time() - t0, 2)
        res.update(b=a.b, iterations=a.iterations, stretches=a.b * a.iterations,
                   syn_steps=dc.syn_steps, n_images=len(syn0))
        if is_main():
            res.update(matching_loss_start=round(matching_loss(experts, syn0, dc), 4),
                       matching_loss_end=round(matching_loss(experts, syn, dc), 4))
    if is_main(): (work/f'result_{a.tag}.json').write_text(json.dumps(res))

def _launch(work, tag, what, procs, tiny, **kw):
    "Start one measurement in `procs` processes (`procs` x threads = 2) and return its result, with the launch's own wall time."
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK',
                                                            'MASTER_ADDR', 'MASTER_PORT')}
    env.update(OMP_NUM_THREADS=str(2 // procs), KDD_DEVICE='cpu')
    args = [str(HERE), '--worker', what, '--work', str(work), '--tag', tag] + (['--tiny'] if tiny else []) + \
           [f'--{k}={v}' for k, v in kw.items()]
    pre = [sys.executable] if procs == 1 else [sys.executable, '-m', 'torch.distributed.run', '--standalone',
                                               '--nproc_per_node', str(procs)]
    t0 = time.time()
    r = subprocess.run(pre + args, capture_output=True, text=True, env=env)
    if r.returncode: sys.exit(f"{' '.join(pre + args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    res = json.loads((work/f'result_{tag}.json').read_text())
    res['launch_s'] = round(time.time() - t0 - res['seconds'], 1)
    print(f"  {tag}: {res['seconds']:.1f}s ({procs} process{'es' if procs > 1 else ''})", flush=True)
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--tiny', action='store_true', help="the toy-size 'quick' configuration and 2 iterations: a check "
                                                        "that the script runs")
    ap.add_argument('--iterations', type=int, default=None, help='distillation iterations (default 20; 2 with --tiny)')
    ap.add_argument('--json', default=None, help='also write the figures to this JSON file')
    ap.add_argument('--work', default=None, help='working folder (default: a fresh temporary one)')
    ap.add_argument('--worker', choices=['experts', 'distill'], help=argparse.SUPPRESS)
    ap.add_argument('--tag', help=argparse.SUPPRESS)
    ap.add_argument('--b', type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    t_start = time.time()
    if a.iterations is None: a.iterations = 2 if a.tiny else 20
    if a.iterations < 1: sys.exit('--iterations must be >= 1.')
    if a.worker: return worker(a)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix='kdd_dist_scaling_'))
    if any(work.glob('result_*.json')) or (work/'experts_one').exists():
        sys.exit(f"{work} holds an earlier measurement: pass a new --work so that nothing is read back instead "
                 "of timed.")
    work.mkdir(parents=True, exist_ok=True)
    import torch
    from kdd_explore.core import save_json
    from kdd_explore.kd import Experts, high_loss_indices
    cfg = _setting(a.tiny)
    print(f"{'quick' if a.tiny else 'quickstart'} setting; caching the teacher's representations in {work}", flush=True)
    x, reps, arch = _data(cfg, work)
    print('experts stage:', flush=True)
    ex1 = _launch(work, 'experts_one', 'experts', 1, a.tiny)
    ex2 = _launch(work, 'experts_two', 'experts', 2, a.tiny)
    same = (work/'experts_one'/'experts.safetensors').read_bytes() == (
        work/'experts_two'/'experts.safetensors').read_bytes()
    experts = Experts.load(work/'experts_one'/'experts')
    idx = high_loss_indices(experts, x, reps, cfg.syn_fraction, clusters=cfg.high_loss_clusters, seed=cfg.seed)
    save_json(work/'subsets.json', {'high_loss': idx.tolist()})
    T = a.iterations
    print(f'distillation, {T} iterations:', flush=True)
    d2_one = _launch(work, 'b2_one', 'distill', 1, a.tiny, iterations=T, b=2)
    d2_two = _launch(work, 'b2_two', 'distill', 2, a.tiny, iterations=T, b=2)
    d1 = _launch(work, 'b1', 'distill', 1, a.tiny, iterations=T, b=1)
    d1_long = _launch(work, 'b1_same_stretches', 'distill', 1, a.tiny, iterations=2 * T, b=1)
    fig = dict(setting='quick' if a.tiny else 'quickstart', experts=dict(one_process=ex1,
                                                                         two_processes=ex2, bit_identical=same,
               speedup=round(ex1['seconds'] / ex2['seconds'], 2)),
               distill_b2=dict(one_process=d2_one, two_processes=d2_two,
                               speedup=round(d2_one['seconds'] / d2_two['seconds'], 2)),
               matching=dict(b1=d1, b1_same_stretches=d1_long, b2=d2_one),
               machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                            cpus=os.cpu_count(), torch=torch.__version__), work=str(work),
               provenance=provenance(__file__, argv, t0=t_start))
    print(f"\n| | 1 process, 2 threads | 2 processes, 1 thread each (gloo) | speed-up |\n|---|---|---|---|\n"
          f"| experts stage ({ex1['experts']}) | {ex1['seconds']:.1f} s | {ex2['seconds']:.1f} s | "
          f"{fig['experts']['speedup']:.2f}x |\n| {T} distillation iterations, B = 2 | {d2_one['seconds']:.1f} s | "
          f"{d2_two['seconds']:.1f} s | {fig['distill_b2']['speedup']:.2f}x |")
    print(f"\nexperts bit-identical across the two launches: {same}; starting a launch took {ex1['launch_s']:.1f} s (1 "
          f"process), {ex2['launch_s']:.1f} s (2 processes)")
    print(f"\n| matching loss (every expert and start, fixed minibatches) | iterations | stretches | start | end |\n"
          f"|---|---|---|---|---|")
    for name, r in (('B = 1', d1), ('B = 1', d1_long), ('B = 2', d2_one)):
        print(f"| {name} | {r['iterations']} | {r['stretches']} | {r['matching_loss_start']:.4f} | "
              f"{r['matching_loss_end']:.4f} |")
    if a.json: Path(a.json).write_text(json.dumps(fig, indent=1))

if __name__ == '__main__': main()
