"""Seconds per distillation iteration and whole-process peak memory of the meta-gradient, side by side: the toolkit's
'bounded', 'full' and 'auto' (the default) modes, and a reference "unrolled" implementation written here (one flat
parameter vector, the whole graph of every inner step kept, one backward pass: the algorithm of the MTT/MKDT reference code).

    python benchmarks/speed/distill_speed.py                      # every setting below; figures to benchmarks/results/distill_speed.json
    python benchmarks/speed/distill_speed.py --configs a --steps 5,10 --iters 3
    python benchmarks/speed/distill_speed.py --baseline SRC       # also 'today': the package at SRC (e.g. an older commit's kdd_explore)
    python benchmarks/speed/distill_speed.py --tiny --json out.json   # a seconds-long run at toy sizes (the test's)

Settings: (a) a ConvNet of width 64 and depth 3 on 3x32x32 images with a 512-d head (600,832 parameters), 200 synthetic
images, batches of 64; (b) the quickstart's distillation (Fashion-MNIST 1x28x28, ConvNet width 32 depth 4, 128-d head,
100 images, batches of 32); (c) `fashion_mnist_2pct`'s (ConvNet width 32 depth 3, first padding 3, 1,200 images, batches
of 256). Every (setting, implementation, syn_steps) runs in a fresh process: one warm-up iteration of 2 steps, then `--iters` timed
ones (the best and the mean are kept); its memory is the process's peak resident set (getrusage ru_maxrss), everything
included, with the default allocator. Inputs are random (the arithmetic does not depend on the values); a run whose
graph would not fit in the memory available is skipped and says so. `--check` also runs a few real `distill` iterations
of (b) and (c) with the default mode and with `--baseline`, and reports their seconds per iteration and how far the
learned images, targets and lr are apart.
"""
from __future__ import annotations
import argparse, json, os, platform, resource, subprocess, sys, time
from pathlib import Path

STEPS = (5, 10, 20, 40)
IMPLS = ('unrolled', 'today', 'bounded', 'full', 'auto')
CONFIGS = {  # name: (arch, synthetic images, batch)
    'a': (dict(name='convnet', in_channels=3, im_size=32, width=64, depth=3, out_dim=512, norm='instance',
               first_padding=1), 200, 64),
    'quickstart': (dict(name='convnet', in_channels=1, im_size=28, width=32, depth=4, out_dim=128, norm='instance',
                        first_padding=1), 100, 32),
    'fashion_mnist_2pct': (dict(name='convnet', in_channels=1, im_size=28, width=32, depth=3, out_dim=128,
                                norm='instance', first_padding=3), 1200, 256),
}
TINY = {'a': (dict(name='convnet', in_channels=3, im_size=8, width=4, depth=2, out_dim=6, norm='instance',
                   first_padding=1), 10, 4)}
OWN_STEPS = {'quickstart': 10, 'fashion_mnist_2pct': 20}  # the syn_steps of each recipe (for --check)
# real distill iterations of --check (fashion_mnist_2pct's take a minute each here)
CHECK_ITERS = {'quickstart': 3, 'fashion_mnist_2pct': 1}

def mem_available_mb():
    try:
        for line in open('/proc/meminfo'):
            if line.startswith('MemAvailable:'): return int(line.split()[1]) / 1024
    except OSError: pass
    return float('inf')

def unrolled_reference(model, start, target, lr, X, Y, batches, steps):
    "The reference algorithm: a flat parameter vector, every step's graph kept, one backward pass through all of them."
    import torch
    from torch.func import functional_call
    from kdd_explore.kd import kd_loss
    names = list(start); shapes = [start[n].shape for n in names]; sizes = [start[n].numel() for n in names]
    def as_dict(flat): return {n: v.view(s) for n, v, s in zip(names, flat.split(sizes), shapes)}
    flat0 = torch.cat([start[n].reshape(-1) for n in names]).requires_grad_(True)
    goal = torch.cat([target[n].reshape(-1) for n in names])
    flat = flat0
    for i in range(steps):
        b = batches[i]
        loss = kd_loss(functional_call(model, as_dict(flat), (X[b],)), Y[b])
        g, = torch.autograd.grad(loss, flat, create_graph=True)
        flat = flat - lr * g
    match = (flat - goal).pow(2).sum() / (flat0.detach() - goal).pow(2).sum()
    gx, gy, glr = torch.autograd.grad(match, [X, Y, lr])
    return match.detach(), [gx, gy], glr

def one(cfg, impl, steps, iters, threads, tiny, budget):
    "In a fresh process: the timed iterations of one setting; returns a dict of figures."
    import torch
    torch.set_num_threads(threads)
    from kdd_explore.models import build_model
    from kdd_explore import distill as D
    try: from kdd_explore import metagrad as M  # the meta-gradient's own module (older packages: in distill)
    except ImportError: M = D
    arch, n_syn, batch = (TINY if tiny else CONFIGS)[cfg]
    model = build_model(arch, seed=0)
    g = torch.Generator().manual_seed(0)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    target = {n: v + 0.01 * torch.randn(v.shape, generator=g) for n, v in start.items()}
    X0 = torch.randn(n_syn, arch['in_channels'], arch['im_size'], arch['im_size'], generator=g)
    Y0 = torch.randn(n_syn, arch['out_dim'], generator=g)
    info = {}
    if impl in ('unrolled', 'full', 'auto') and hasattr(M, 'graph_step_mb'):  # how much the whole graph would keep
        sl = M.kd_step_loss(model, X0, Y0, D.minibatch_schedule(n_syn, batch, 1, torch.Generator().manual_seed(0)))
        info['step_mb'] = round(M.graph_step_mb(sl, start, torch.tensor(0.1)), 1)
        if impl != 'auto' and info['step_mb'] * steps > 0.7 * mem_available_mb():
            return dict(info, skipped=f"the whole graph (~{info['step_mb'] * steps:.0f} MB) would not fit in "
                                      f"{mem_available_mb():.0f} MB available")
    # the plan is made once per run (`distill` too), not in the timed iterations
    if impl == 'auto' and hasattr(M, 'plan_unroll'):
        info['plan'] = M.plan_unroll(info['step_mb'], steps, 'auto', budget)
    def iteration(i, steps=steps):
        X, Y = X0.clone().requires_grad_(True), Y0.clone().requires_grad_(True)
        lr = torch.tensor(0.1, requires_grad=True)
        batches = D.minibatch_schedule(n_syn, batch, steps, torch.Generator().manual_seed(i))
        if impl == 'unrolled': return unrolled_reference(model, start, target, lr, X, Y, batches, steps)
        mode = 'bounded' if impl == 'today' else impl
        kw = dict(segment=info['plan']['segment']) if 'plan' in info else {}  # planned once per run, as `distill` does
        out = M.unroll_match(start, target, lr, [X, Y], M.kd_step_loss(model, X, Y, batches), steps, mode, **kw)
        return out[0], out[1], out[2]
    # warm-up: kernels, allocator
    t0 = time.perf_counter(); iteration(0, min(steps, 2)); warm = time.perf_counter() - t0
    secs = []
    for i in range(iters):
        t0 = time.perf_counter(); loss, (gx, gy), glr = iteration(i + 1); secs.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(info, sec_per_iter=round(min(secs), 4), sec_mean=round(sum(secs) / len(secs), 4),
                warmup_sec=round(warm, 3), peak_rss_mb=round(peak, 1), loss=float(loss),
                grad_norm_images=float(gx.norm()))

def check(cfg, src, threads, iters, tiny):
    "In a fresh process: a few real `distill` iterations of a recipe's settings with the package importable from sys.path."
    import torch
    torch.set_num_threads(threads)
    from kdd_explore.models import build_model
    from kdd_explore.kd import Experts
    from kdd_explore.distill import DistillConfig, SyntheticSet, distill
    arch, n_syn, batch = (TINY if tiny else CONFIGS)[cfg]
    steps = 3 if tiny else OWN_STEPS[cfg]
    g = torch.Generator().manual_seed(1)
    trajs = []
    for k in range(2):  # random expert trajectories that move (the arithmetic is what is timed)
        p = {n: v.detach().clone() for n, v in build_model(arch, seed=k).named_parameters()}
        traj = [p]
        for e in range(3): traj.append({n: v + 0.01 * torch.randn(v.shape, generator=g) for n, v in traj[-1].items()})
        trajs.append(traj)
    ex = Experts(arch, trajs, dict(n_train=n_syn * 50, batch_size=256, lr=0.1, momentum=0.9))
    x = torch.randn(n_syn, arch['in_channels'], arch['im_size'], arch['im_size'], generator=g)
    y = torch.randn(n_syn, arch['out_dim'], generator=g)
    syn = SyntheticSet.from_real(x, y, torch.arange(n_syn), lr=0.1, meta={'arch': arch})
    cfg_ = DistillConfig(iterations=iters, syn_steps=steps, batch_syn=batch, expert_epochs=2,
                         max_start_epoch=2, lr_img=100., snapshot_every=1000, checkpoint_every=1000)
    t0 = time.perf_counter()
    res, hist = distill(ex, syn, cfg_, progress=False)
    total = time.perf_counter() - t0
    return dict(sec_per_iter=round(total / iters, 4), images=res.images.flatten().tolist()[:20000],
                targets=res.targets.flatten().tolist()[:20000], lr=float(res.lr), losses=hist.losses(),
                chose=getattr(hist, 'meta_grad', None) or None,
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))

def run_child(args, env_src, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if env_src: env['PYTHONPATH'] = str(env_src)
    r = subprocess.run([sys.executable, __file__] + args, capture_output=True, text=True, env=env)
    if r.returncode:
        return dict(error=r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f'exit {r.returncode}')
    return json.loads(r.stdout.strip().splitlines()[-1])

def cpu_name():
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.platform()

def uptime():
    try: return open('/proc/loadavg').read().split()[:3]
    except OSError: return None

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--configs', default='a,quickstart,fashion_mnist_2pct',
                    help=f"comma-separated: {', '.join(CONFIGS)}")
    ap.add_argument('--impls', default=','.join(IMPLS),
                    help=f"comma-separated: {', '.join(IMPLS)} ('today' needs --baseline)")
    ap.add_argument('--steps', default=','.join(map(str, STEPS)), help='syn_steps values')
    ap.add_argument('--iters', type=int, default=2, help='timed iterations per setting (after one warm-up)')
    ap.add_argument('--threads', type=int, default=2, help='torch CPU threads in each run')
    ap.add_argument('--budget', type=float, default=None, help="memory_budget_mb of 'auto' (default: the library's)")
    ap.add_argument('--baseline', default=None, help="a folder holding an older kdd_explore package: its 'bounded' "
                                                     "mode is the 'today' column")
    ap.add_argument('--check', action='store_true', help="also a few real distill iterations of the recipes, default "
                                                         "mode vs --baseline")
    ap.add_argument('--tiny', action='store_true', help='toy sizes, seconds in all (for the test)')
    ap.add_argument('--json', default='benchmarks/results/distill_speed.json', help='where to write the figures')
    ap.add_argument('--one', default=None, help=argparse.SUPPRESS)  # internal: cfg,impl,steps
    ap.add_argument('--check-one', default=None, help=argparse.SUPPRESS)  # internal: cfg
    a = ap.parse_args(argv)
    if a.one:
        cfg, impl, steps = a.one.split(',')
        print(json.dumps(one(cfg, impl, int(steps), a.iters, a.threads, a.tiny, a.budget))); return
    if a.check_one:
        print(json.dumps(check(a.check_one, None, a.threads, a.iters, a.tiny))); return
    configs = ['a'] if a.tiny else [c for c in a.configs.split(',') if c]
    bad = [c for c in configs if c not in CONFIGS]
    if bad: sys.exit(f"Unknown setting(s) {bad}. Known: {', '.join(CONFIGS)}.")
    impls = [i for i in a.impls.split(',') if i]
    bad = [i for i in impls if i not in IMPLS]
    if bad: sys.exit(f"Unknown implementation(s) {bad}. Known: {', '.join(IMPLS)}.")
    if 'today' in impls and not a.baseline: impls.remove('today')
    if a.baseline and not (Path(a.baseline)/'kdd_explore'/'distill.py').exists():
        sys.exit(f"--baseline {a.baseline}: no kdd_explore/distill.py there.")
    try: steps = [int(s) for s in a.steps.split(',')]
    except ValueError: sys.exit(f"--steps must be whole numbers separated by commas, got {a.steps!r}.")
    if a.tiny: steps = [s for s in steps if s <= 5] or [1, 2]
    here = Path(__file__).resolve().parents[2]  # the project folder
    out = dict(command=' '.join([Path(sys.executable).name, 'benchmarks/speed/distill_speed.py']
                                + (argv if argv is not None else sys.argv[1:])),
               machine=f"{os.cpu_count()}-core {platform.machine()} CPU ({cpu_name()})",
               date=time.strftime('%Y-%m-%d'), threads=a.threads, iters=a.iters, load_before=uptime(), rows=[],
               checks=[])
    t_all = time.time()
    for cfg in configs:
        for s in steps:
            for impl in impls:
                args = ['--one', f'{cfg},{impl},{s}', '--iters', str(a.iters), '--threads',
                        str(a.threads)] + (['--tiny'] if a.tiny else [])
                if a.budget: args += ['--budget', str(a.budget)]
                r = run_child(args, a.baseline if impl == 'today' else here, a.threads)
                row = dict(config=cfg, impl=impl, syn_steps=s, **r)
                out['rows'].append(row)
                say = (row.get('error') or row.get('skipped')
                       or f"{row['sec_per_iter']:.3f} s/iter (mean {row['sec_mean']:.3f}), peak "
                          f"{row['peak_rss_mb']:.0f} MB")
                plan = f"  [{row['plan']['chose']}, segment {row['plan']['segment']}]" if row.get('plan') else ''
                print(f"{cfg:18s} {impl:8s} syn_steps={s:3d}  {say}{plan}", flush=True)
    if a.check:
        for cfg in ([] if a.tiny else [c for c in configs if c in OWN_STEPS]) + (['a'] if a.tiny else []):
            args = ['--check-one', cfg, '--iters', str(1 if a.tiny else CHECK_ITERS[cfg]), '--threads',
                    str(a.threads)] + (['--tiny'] if a.tiny else [])
            new = run_child(args, here, a.threads)
            old = run_child(args, a.baseline, a.threads) if a.baseline else None
            c = dict(config=cfg, syn_steps=3 if a.tiny else OWN_STEPS[cfg], new_sec_per_iter=new.get('sec_per_iter'),
                     error=new.get('error'))
            if old and 'error' not in old and 'error' not in new:
                diff = lambda k: max((abs(p - q) for p, q in zip(new[k], old[k])),
                                     default=0.) / max(max(map(abs, old[k]), default=0.), 1e-30)
                c.update(today_sec_per_iter=old['sec_per_iter'],
                         speedup=round(old['sec_per_iter'] / new['sec_per_iter'], 2), images_rel_diff=diff('images'),
                         targets_rel_diff=diff('targets'), lr_diff=abs(new['lr'] - old['lr']),
                         loss_diff=max(abs(p - q) for p, q in zip(new['losses'], old['losses'])))
            elif old: c['today_error'] = old.get('error')
            out['checks'].append(c)
            print('check', json.dumps(c), flush=True)
    out['load_after'], out['seconds'] = uptime(), round(time.time() - t_all)
    print(table(out))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1))
        print(f"figures in {a.json} ({out['seconds']} s)")

def table(out):
    "The rows as a markdown table: one line per setting and syn_steps, s/iter and peak MB per implementation, and ratios to 'unrolled'."
    rows, lines = out['rows'], []
    impls = [i for i in IMPLS if any(r['impl'] == i for r in rows)]
    lines.append('| setting | syn_steps | ' + ' | '.join(impls) + ' | auto / unrolled (time, memory) |')
    lines.append('|---|---|' + '---|' * len(impls) + '---|')
    for cfg in dict.fromkeys(r['config'] for r in rows):
        for s in dict.fromkeys(r['syn_steps'] for r in rows if r['config'] == cfg):
            get = {r['impl']: r for r in rows if r['config'] == cfg and r['syn_steps'] == s}
            cell = lambda r: ('skipped' if r.get('skipped') else 'error' if r.get('error')
                              else f"{r['sec_per_iter']:.2f} s, {r['peak_rss_mb']:,.0f} MB")
            u, au = get.get('unrolled'), get.get('auto')
            ratio = (f"{au['sec_per_iter'] / u['sec_per_iter']:.2f}x, {au['peak_rss_mb'] / u['peak_rss_mb']:.2f}x"
                     if u and au and 'sec_per_iter' in u and 'sec_per_iter' in au else '')
            lines.append(f"| {cfg} | {s} | " + ' | '.join(cell(get[i]) if i in get else ''
                                                          for i in impls) + f" | {ratio} |")
    return '\n'.join(lines)

if __name__ == '__main__': main()
