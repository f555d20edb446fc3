"""Peak memory and seconds per iteration of the exact memory-bounded meta-gradient ('bounded') against backpropagation
through the whole unrolled graph ('full'), at syn_steps in {5, 10, 20, 40}.

    python benchmarks/speed/distill_memory.py            # table on the CPU (and on CUDA when present)
    python benchmarks/speed/distill_memory.py --json out.json

CPU memory is measured honestly: every (mode, syn_steps) runs in a fresh subprocess, and the figure is the process's
peak resident memory (getrusage ru_maxrss) minus its resident memory after setup (imports, inputs, expert parameters),
i.e. what the distillation iterations themselves added at their peak. The runs set MALLOC_MMAP_THRESHOLD_=131072: by default
glibc raises its mmap threshold after big frees and then keeps freed tensor memory in the heap, so RSS would follow the
allocator's history rather than the live tensors (noise of +-20 MB here); a fixed threshold returns big blocks to the OS. On CUDA it is torch.cuda.max_memory_allocated
minus the memory allocated before the first iteration. The configuration is CPU-sized: a ConvNet (width 32, depth 3)
on 1x28x28 images with a 128-d head, 64 synthetic images, minibatches of 64, one warm-up iteration then `--iters` timed ones.
"""
from __future__ import annotations
import argparse, json, os, resource, subprocess, sys, time

STEPS = (5, 10, 20, 40)

def one(mode, steps, device, iters, width, n_syn, threads):
    "Run in a fresh process: returns (peak MB above the post-setup baseline, seconds per timed iteration)."
    import torch
    torch.set_num_threads(threads)
    from kdd_explore.models import build_model
    from kdd_explore.distill import unroll_match, kd_step_loss, minibatch_schedule
    dev = torch.device(device)
    arch = dict(name='convnet', in_channels=1, im_size=28, width=width, depth=3, out_dim=128, norm='instance')
    model = build_model(arch, seed=0).to(dev)
    g = torch.Generator().manual_seed(0)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    target = {n: (v + 0.01 * torch.randn(v.shape, generator=g).to(dev)) for n, v in start.items()}
    X0 = torch.randn(n_syn, 1, 28, 28, generator=g).to(dev)
    Y0 = torch.randn(n_syn, 128, generator=g).to(dev)
    def iteration(i):
        X, Y = X0.clone().requires_grad_(True), Y0.clone().requires_grad_(True)
        lr = torch.tensor(0.1, device=dev, requires_grad=True)
        batches = minibatch_schedule(n_syn, 64, steps, torch.Generator().manual_seed(i))
        loss, grads, glr, _ = unroll_match(start, target, lr, [X, Y], kd_step_loss(model, X, Y, batches), steps, mode)
        float(glr)  # synchronise
    if dev.type == 'cuda':
        torch.cuda.synchronize(); base = torch.cuda.memory_allocated(); torch.cuda.reset_peak_memory_stats()
    else: base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    iteration(0)  # warm-up (allocator, kernels); its memory counts in the peak
    t0 = time.perf_counter()
    for i in range(iters): iteration(i + 1)
    if dev.type == 'cuda': torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / iters
    if dev.type == 'cuda': peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else: peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return peak, sec

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--json', default=None, help='also write {"rows": [...]} to this file')
    ap.add_argument('--devices', default=None, help="comma-separated, e.g. 'cpu,cuda' (default: cpu, plus cuda when "
                                                    "present)")
    ap.add_argument('--steps', default=','.join(map(str, STEPS)), help='syn_steps values')
    ap.add_argument('--iters', type=int, default=1, help='timed iterations per configuration (after one warm-up)')
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--n-syn', type=int, default=64)
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads in each run')
    ap.add_argument('--one', default=None, help=argparse.SUPPRESS)  # internal: mode,steps,device
    a = ap.parse_args(argv)
    if a.one:
        mode, steps, device = a.one.split(',')
        print(json.dumps(one(mode, int(steps), device, a.iters, a.width, a.n_syn, a.threads)))
        return
    import torch
    devices = a.devices.split(',') if a.devices else ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    rows, t_all = [], time.time()
    for device in devices:
        for steps in map(int, a.steps.split(',')):
            for mode in ('bounded', 'full'):
                cmd = [sys.executable, __file__, '--one', f'{mode},{steps},{device}', '--iters',
                       str(a.iters), '--width', str(a.width), '--n-syn', str(a.n_syn), '--threads', str(a.threads)]
                r = subprocess.run(cmd, capture_output=True, text=True,
                                   env=dict(os.environ, OMP_NUM_THREADS=str(a.threads),
                                            MALLOC_MMAP_THRESHOLD_="131072"))
                if r.returncode: sys.exit(f'{cmd} failed:\n{r.stderr[-3000:]}')
                peak, sec = json.loads(r.stdout.strip().splitlines()[-1])
                rows.append(dict(device=device, mode=mode, syn_steps=steps, peak_mem_mb=round(peak, 1),
                                 sec_per_iter=round(sec, 3)))
                print(f"{device:5s} {mode:8s} syn_steps={steps:3d}  peak {peak:8.1f} MB  {sec:7.3f} s/iter", flush=True)
    print(f"\n| device | syn_steps | bounded MB | full MB | bounded s/iter | full s/iter | mem full/bounded | time "
          f"bounded/full |")
    print("|---|---|---|---|---|---|---|---|")
    for device in devices:
        for steps in map(int, a.steps.split(',')):
            b = next(r for r in rows if r['device'] == device and r['syn_steps'] == steps and r['mode'] == 'bounded')
            f = next(r for r in rows if r['device'] == device and r['syn_steps'] == steps and r['mode'] == 'full')
            print(f"| {device} | {steps} | {b['peak_mem_mb']} | {f['peak_mem_mb']} | {b['sec_per_iter']} | "
                  f"{f['sec_per_iter']} | {f['peak_mem_mb'] / max(b['peak_mem_mb'], 1e-9):.1f}x | "
                  f"{b['sec_per_iter'] / f['sec_per_iter']:.2f}x |")
        s = sorted(map(int, a.steps.split(',')))
        b0 = next(r for r in rows if r['device'] == device and r['syn_steps'] == s[0] and r['mode'] == 'bounded')
        b1 = next(r for r in rows if r['device'] == device and r['syn_steps'] == s[-1] and r['mode'] == 'bounded')
        f1 = next(r for r in rows if r['device'] == device and r['syn_steps'] == s[-1] and r['mode'] == 'full')
        print(f"{device}: bounded peak grows {100 * (b1['peak_mem_mb'] / b0['peak_mem_mb'] - 1):+.0f}% from {s[0]} to "
              f"{s[-1]} steps (target < 20%); at {s[-1]} steps bounded/full memory = "
              f"{b1['peak_mem_mb'] / f1['peak_mem_mb']:.2f} (target <= 0.25), time = "
              f"{b1['sec_per_iter'] / f1['sec_per_iter']:.2f}x (target <= 1.5)")
    print(f"total {time.time() - t_all:.0f}s")
    if a.json:
        with open(a.json, 'w') as fh: json.dump({'rows': rows}, fh, indent=1)

if __name__ == '__main__': main()
