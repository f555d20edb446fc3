"""Supervised trajectory matching at MTT's own CIFAR-10 setting (1 image per class), once, on a GPU, inside a time budget.

    python benchmarks/studies/supervised_gpu.py --data cifar10_jpeg.tar.gz --json $OUT/supervised_gpu.json --budget-s 330   # a GPU machine
    python benchmarks/studies/supervised_gpu.py --tiny --device cpu --json /tmp/sup_tiny.json                              # toy size (the tests)

MTT's setting (Cazenavette et al., CVPR 2022, its hyperparameter table for CIFAR-10 at 1 image per class), as
`kdd_explore.supervised.SUPERVISED_PRESETS['mtt_cifar10_1ipc']` holds it: ConvNet width 128, depth 3, instance norm;
ZCA-whitened images (eps 0.1); experts trained with cross-entropy, SGD lr 0.01, no momentum, batch 256, DSA; 50 inner
steps on the whole set (10 images), matching 2 expert epochs from a start epoch 0 or 1; lr_img 1,000, lr_lr 1e-7, the
step size initialised at 0.01; evaluation: 1,000 epochs, SGD momentum 0.9, weight decay 5e-4, lr decayed x0.1
half-way, DSA, 5 seeds, top-1 on the 10,000 test images.

Where it differs from MTT, for the time a lent GPU gives (all said in the JSON): `--experts` experts (MTT: 100) of 4
epochs (all that max_start_epoch 2 + 2 expert epochs reads; MTT records 50), and as many distillation iterations as
`--budget-s` seconds allow (MTT: 5,000). The data is the CIFAR-10 JPEG q75 copy (`--data`, a .tar.gz of
`cifar10_jpeg/{train,test}/<class>/*.jpg`), not the original pixels. Only torch, torchvision and Pillow are needed.
"""
from __future__ import annotations
import argparse, dataclasses, io, json, platform, sys, tarfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)

CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']

def _decode(blob):
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(blob)).convert('RGB'), dtype=np.uint8)

def load_jpeg_tar(path:str, workers:int=16):
    "(x_train, y_train, x_test, y_test) as float tensors in [0, 1] and int64 labels, from the JPEG copy's tarball."
    import numpy as np, torch
    from concurrent.futures import ProcessPoolExecutor
    files = {'train': ([], []), 'test': ([], [])}
    with tarfile.open(path) as tf:
        for m in tf:
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) < 4 or parts[-3] not in files or not m.name.endswith('.jpg'): continue
            files[parts[-3]][0].append(tf.extractfile(m).read()); files[parts[-3]][1].append(CLASSES.index(parts[-2]))
    out = []
    with ProcessPoolExecutor(workers) as ex:
        for split in ('train', 'test'):
            blobs, labels = files[split]
            arr = np.stack(list(ex.map(_decode, blobs, chunksize=500)))
            out += [torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255), torch.tensor(labels)]
    return out

def fake_data(n_train=400, n_test=200, size=8):
    "Random coloured images with a class-dependent mean (toy size, for the tests)."
    import torch
    g = torch.Generator().manual_seed(0)
    def make(n):
        y = torch.arange(n) % 10
        x = (torch.rand(n, 3, size, size, generator=g) * 0.5 + y.view(-1, 1, 1, 1) / 20).clamp(0, 1)
        return x, y
    return (*make(n_train), *make(n_test))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=None, help='the CIFAR-10 JPEG copy as .tar.gz (not needed with --tiny)')
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--experts', type=int, default=10, help='expert trajectories (MTT: 100)')
    ap.add_argument('--budget-s', type=float, default=330., help='seconds of distillation at most')
    ap.add_argument('--iterations', type=int, default=5000, help='distillation iterations at most (MTT: 5,000)')
    ap.add_argument('--eval-epochs', type=int, default=1000)
    ap.add_argument('--tiny', action='store_true', help='toy size on fake data, to check the script')
    ap.add_argument('--json', default=None)
    ap.add_argument('--out', default='/tmp/supervised_gpu',
                    help='folder for the experts and the distillation checkpoints')
    a = ap.parse_args(argv)
    import torch
    from kdd_explore.augment import ZCA
    from kdd_explore.distill import SyntheticSet
    from kdd_explore.supervised import (SupervisedConfig, supervised_arch, record_supervised_experts,
                                        per_class_indices, one_hot_targets, distill_supervised, evaluate_set,
                                        supervised_matching_loss)
    if a.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit("No CUDA device here: pass --device cpu --tiny to check the script.")
    torch.backends.cudnn.benchmark = True
    fig = dict(device=a.device, tiny=a.tiny, torch=torch.__version__, platform=platform.platform(),
               setting='mtt_cifar10_1ipc')
    if a.device.startswith('cuda'): fig['gpu'] = torch.cuda.get_device_name(torch.device(a.device))
    t0 = time.time()
    def save():  # after every stage: a run stopped by a timeout still leaves what it measured
        if a.json: Path(a.json).write_text(json.dumps(dict(fig, seconds=round(time.time() - t0, 1)), indent=1))
    if a.tiny: xtr, ytr, xte, yte = fake_data(); width, n_exp, eval_epochs, seeds = 8, 2, 20, (0, 1)
    else:
        if not a.data or not Path(a.data).exists(): sys.exit(f"--data {a.data}: the CIFAR-10 JPEG tarball is missing.")
        xtr, ytr, xte, yte = load_jpeg_tar(a.data)
        width, n_exp, eval_epochs, seeds = 128, a.experts, a.eval_epochs, (0, 1, 2, 3, 4)
    fig['data_seconds'] = round(time.time() - t0, 1); fig['n_train'], fig['n_test'] = len(xtr), len(xte)
    dev = torch.device(a.device)
    mean, std = xtr.mean((0, 2, 3)).view(1, -1, 1, 1), xtr.std((0, 2, 3)).view(1, -1, 1, 1)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    t = time.time(); zca = ZCA(0.1).fit(xtr); xtr, xte = zca(xtr).to(dev), zca(xte).to(dev)
    fig['zca_seconds'] = round(time.time() - t, 1)
    ytr, yte = ytr.to(dev), yte.to(dev)
    arch = supervised_arch(tuple(xtr.shape[1:]), 10, width=width, depth=3 if not a.tiny else 2)
    out = Path(a.out)
    t = time.time()
    ex = record_supervised_experts(arch, xtr, ytr, n_exp, 4, lr=0.01, batch_size=256, augment='dsa', zca=True,
                                   out=out/'experts', progress=False)
    fig['experts'] = dict(n=n_exp, epochs=4, seconds=round(time.time() - t, 1))
    print(f"experts: {fig['experts']}", flush=True)
    save()
    cfg = SupervisedConfig.preset('mtt_cifar10_1ipc', snapshot_every=100, checkpoint_every=10**9,
                                  **({'syn_steps': 5} if a.tiny else {}))
    if a.tiny: a.iterations = min(a.iterations, 6)
    idx = per_class_indices(ytr.cpu(), 1, 10, seed=0)
    syn0 = SyntheticSet.from_real(xtr, one_hot_targets(ytr.cpu(), 10).to(dev), idx.to(dev), lr=cfg.lr_init,
                                  meta={'arch': arch, 'init': 'random_per_class'})
    ev = lambda s, lr, aug='dsa': evaluate_set(s.images, s.targets, lr, arch, xte, yte.cpu(), seeds=seeds,
                                               epochs=eval_epochs, augment=aug)
    t = time.time(); fig['random_real'] = ev(syn0, 0.01); fig['random_real']['seconds'] = round(time.time() - t, 1)
    print(f"random real: {fig['random_real']}", flush=True)
    save()
    fig['matching_loss_start'] = round(supervised_matching_loss(ex, syn0, cfg), 4)
    t, first = time.time(), (20 if not a.tiny else 3)
    run = lambda n: distill_supervised(ex, syn0, dataclasses.replace(cfg, iterations=n),
                                       out=out/'distill', progress=False)
    # a first segment times an iteration; the second one resumes from its checkpoint
    syn, hist = run(min(first, a.iterations))
    per = (time.time() - t) / min(first, a.iterations)
    done = max(min(first, a.iterations), min(a.iterations, int(a.budget_s / per)))
    if done > first: syn, hist = run(done)
    fig['distill'] = dict(iterations=done, of=5000, seconds=round(time.time() - t, 1),
                          seconds_per_iteration=round((time.time() - t) / max(done, 1), 4),
                          learned_lr=round(float(syn.lr), 6),
                          loss_first_50=round(sum(hist.losses()[:50]) / len(hist.losses()[:50]), 4),
                          loss_last_50=round(sum(hist.losses()[-50:]) / len(hist.losses()[-50:]), 4))
    fig['matching_loss_end'] = round(supervised_matching_loss(ex, syn, cfg), 4)
    print(f"distill: {fig['distill']}", flush=True)
    save()
    t = time.time(); fig['distilled'] = ev(syn, syn.lr); fig['distilled']['seconds'] = round(time.time() - t, 1)
    fig['random_real_at_learned_lr'] = ev(syn0, syn.lr)
    print(f"distilled: {fig['distilled']}\nrandom real at the learned lr: {fig['random_real_at_learned_lr']}",
          flush=True)
    fig['complete'] = True
    save()
    if a.json:
        torch.save({'images_zca': syn.images.cpu(), 'images': zca.inverse(syn.images.cpu()) * std + mean,
                    'targets': syn.targets.cpu(), 'lr': syn.lr.cpu()},
                   Path(a.json).with_suffix('.pt'))

if __name__ == '__main__': main()
