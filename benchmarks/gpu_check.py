"""One prepared device check: is the CUDA path right, and how long would the paper's CIFAR-10 2% setting take?

    python benchmarks/gpu_check.py --json $OUT/gpu_check.json      # on a GPU machine (a few minutes on an H100)
    python benchmarks/gpu_check.py --device cpu --tiny             # the same code at toy size (what the tests run)

1. Correctness: the exact memory-bounded meta-gradient and the full unrolled one, computed on the device in float32
   (TF32 off), agree with a float64 CPU reference (loss, image, target and lr gradients; relative error). The timings
   below run with PyTorch's defaults, as a user's run would.
2. Scale: with the paper's student (ConvNet width 128, depth 3, 512-d head) on 3x32x32 images (the `fake` dataset, so
   no download is needed), the seconds of one KD expert epoch over 50,000 images at batch 256, and the seconds and peak
   memory of one distillation iteration of the `cifar10_2pct` preset (1,000 synthetic images, batch 256, 40 inner
   steps) in both modes; from them, the hours that 100 experts x 20 epochs and 5,000 iterations would take.
Only torch, torchvision, safetensors and tqdm are needed (no notebooks, plotting or widgets), run from the repo root.
"""
from __future__ import annotations
import argparse, json, platform, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def rel_err(a, b) -> float:
    "Relative error of `a` against the reference `b` (both moved to the CPU in float64)."
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))

def gradients(mode, model, start, target, X, Y, lr, steps, batch, seed):
    "(loss, d/d images, d/d targets, d/d lr) of the matching loss after `steps` inner steps."
    import torch
    from kdd_explore.distill import unroll_match, kd_step_loss, minibatch_schedule
    X, Y, lr = X.clone().requires_grad_(True), Y.clone().requires_grad_(True), lr.clone().requires_grad_(True)
    batches = minibatch_schedule(len(X), batch, steps, torch.Generator().manual_seed(seed))
    loss, (gx, gy), glr, _ = unroll_match(start, target, lr, [X, Y], kd_step_loss(model, X, Y, batches), steps, mode)
    return loss, gx, gy, glr

def check_gradients(device, arch, n_syn, steps, batch) -> dict:
    "Worst relative error of each mode's float32 device gradients against a float64 CPU reference."
    import torch
    from kdd_explore.models import build_model
    g = torch.Generator().manual_seed(0)
    model = build_model(arch, seed=0).double()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    target = {n: v + 0.02 * torch.randn(v.shape, generator=g, dtype=v.dtype) for n, v in start.items()}
    c, s = arch['in_channels'], arch['im_size']
    X = torch.randn(n_syn, c, s, s, generator=g, dtype=torch.float64)
    Y = torch.randn(n_syn, arch['out_dim'], generator=g, dtype=torch.float64)
    lr = torch.tensor(0.05, dtype=torch.float64)
    ref = gradients('full', model, start, target, X, Y, lr, steps, batch, 1)
    dev = torch.device(device)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # exact float32, not TF32
    m32 = build_model(arch, seed=0).to(dev)
    to = lambda t: t.float().to(dev)
    out = {}
    for mode in ('bounded', 'full'):
        got = gradients(mode, m32, {k: to(v) for k, v in start.items()}, {k: to(v) for k, v in target.items()},
                        to(X), to(Y), to(lr), steps, batch, 1)
        out[mode] = {name: rel_err(a, b) for name, a, b in zip(('loss', 'images', 'targets', 'lr'), got, ref)}
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return out

def sync(device):
    import torch
    if torch.device(device).type == 'cuda': torch.cuda.synchronize()

def time_expert_epoch(device, arch, n_images, batch) -> float:
    "Seconds of one KD epoch (SGD momentum 0.9) over `n_images` random 3x32x32 images, after a warm-up step."
    import torch
    from kdd_explore.kd import train_kd
    from kdd_explore.models import build_model
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_images, arch['in_channels'], arch['im_size'], arch['im_size'], generator=g).to(dev)
    y = torch.randn(n_images, arch['out_dim'], generator=g).to(dev)
    model = build_model(arch, seed=0).to(dev)
    train_kd(model, x[:batch], y[:batch], epochs=1, batch_size=batch, progress=False); sync(device)
    t0 = time.time(); train_kd(model, x, y, epochs=1, batch_size=batch, progress=False); sync(device)
    return time.time() - t0

def time_iteration(device, arch, mode, n_syn, steps, batch, iters) -> dict:
    "Seconds per distillation iteration (after one warm-up) and, on CUDA, the peak memory it added (MB)."
    import torch
    from kdd_explore.models import build_model
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    model = build_model(arch, seed=0).to(dev)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    target = {n: v + 0.01 * torch.randn(v.shape, generator=g).to(dev) for n, v in start.items()}
    X = torch.randn(n_syn, arch['in_channels'], arch['im_size'], arch['im_size'], generator=g).to(dev)
    Y = torch.randn(n_syn, arch['out_dim'], generator=g).to(dev)
    lr = torch.tensor(0.1, device=dev)
    gradients(mode, model, start, target, X, Y, lr, steps, batch, 0); sync(device)
    cuda = dev.type == 'cuda'
    if cuda: torch.cuda.reset_peak_memory_stats(dev); base = torch.cuda.memory_allocated(dev)
    t0 = time.time()
    for i in range(iters): gradients(mode, model, start, target, X, Y, lr, steps, batch, i + 1)
    sync(device)
    res = dict(seconds_per_iteration=round((time.time() - t0) / iters, 4))
    if cuda: res['peak_mb'] = round((torch.cuda.max_memory_allocated(dev) - base) / 2**20, 1)
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='cuda', help="'cuda' (default) or 'cpu'")
    ap.add_argument('--tiny', action='store_true', help='toy sizes, to check the script itself on a CPU')
    ap.add_argument('--json', default=None, help='also write the figures to this JSON file')
    a = ap.parse_args(argv)
    import torch
    if a.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit("No CUDA device here: run this on a GPU machine, or pass --device cpu --tiny to check the script.")
    if a.tiny: width, n_img, n_syn, steps, batch, iters, tol = 8, 512, 32, 4, 16, 1, 1e-3
    else: width, n_img, n_syn, steps, batch, iters, tol = 128, 50_000, 1000, 40, 256, 3, 1e-3
    arch = dict(name='convnet', in_channels=3, im_size=32, width=width, depth=3, out_dim=512, norm='instance')
    small = dict(arch, width=min(width, 32), out_dim=64)
    fig = dict(device=a.device, tiny=a.tiny, torch=torch.__version__, platform=platform.platform())
    if a.device.startswith('cuda'): fig['gpu'] = torch.cuda.get_device_name(torch.device(a.device))
    t0 = time.time()
    fig['gradient_rel_error'] = check_gradients(a.device, small, n_syn=24, steps=6, batch=8)
    worst = max(v for m in fig['gradient_rel_error'].values() for v in m.values())
    fig['gradients_agree'] = worst < tol
    print(f"meta-gradients on {a.device} in float32 against float64 on the CPU: worst relative error {worst:.2e} "
          f"({'ok' if worst < tol else 'TOO LARGE'}, tolerance {tol:g})", flush=True)
    epoch = time_expert_epoch(a.device, arch, n_img, 256 if not a.tiny else 64)
    fig['expert_epoch_seconds'] = round(epoch, 2)
    print(f"one KD expert epoch over {n_img} images: {epoch:.2f} s -> 100 experts x 20 epochs: "
          f"{epoch * 2000 / 3600:.2f} h", flush=True)
    for mode in ('bounded', 'full'):
        r = time_iteration(a.device, arch, mode, n_syn, steps, batch, iters)
        r['hours_for_5000'] = round(r['seconds_per_iteration'] * 5000 / 3600, 2)
        fig[f'iteration_{mode}'] = r
        print(f"distillation iteration ({mode}, {steps} steps of {batch} of {n_syn} images): {r}", flush=True)
    fig['seconds'] = round(time.time() - t0, 1)
    if a.json: Path(a.json).write_text(json.dumps(fig, indent=1))
    if not fig['gradients_agree']: sys.exit(1)

if __name__ == '__main__': main()
