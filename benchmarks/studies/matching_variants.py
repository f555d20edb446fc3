"""Variants of the matching objective that the library's `distill` does not offer, run from a finished run's subset and
probed beside the initial images at the same learned lr (as `distill_budget_study.py` does): which layers the loss
weighs, SGD momentum in the inner loop, and long inner loops that mimic the evaluation itself. The study behind the
README's "what the matching loss looks at".

    python benchmarks/studies/matching_variants.py runs/quickstart --loss layer --iterations 50,100
    python benchmarks/studies/matching_variants.py runs/quickstart --loss encoder --iterations 100
    python benchmarks/studies/matching_variants.py runs/quickstart --steps 80 --expert_epochs 4 --max_start_epoch 1 \\
        --momentum 0.9 --weight_decay 1e-4 --iterations 30,60          # match the evaluation: init -> epoch 4

Losses: 'global' is MKDT's ||theta_N - theta*||^2 / ||theta_0 - theta*||^2 over every parameter; 'layer' is the mean of
that ratio over layers (each layer weighs the same); 'encoder' is the global ratio without the head, the part the
linear probe never reads. The inner loop is unrolled in full (memory grows with --steps), and the outer updates are
the paper's: SGD with momentum 0.5 on the images, targets and lr, a non-finite iteration is skipped.
"""
from __future__ import annotations
import argparse, json, time
from pathlib import Path

def matching(loss:str, theta:dict, start:dict, target:dict):
    "The matching loss `loss` ('global', 'layer' or 'encoder') of parameters `theta` against the expert's `start` -> `target`."
    def ratio(keys):
        return sum((theta[k] - target[k]).pow(2).sum()
                   for k in keys) / sum((start[k] - target[k]).pow(2).sum() for k in keys)
    if loss == 'global': return ratio(list(theta))
    if loss == 'encoder': return ratio([k for k in theta if not k.startswith('head.')])
    layers = {}
    for k in theta: layers.setdefault(k.rsplit('.', 1)[0], []).append(k)
    return sum(ratio(ks) for ks in layers.values()) / len(layers)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('run', help='a finished quickstart (or run) folder: config.json, representations, experts, '
                                'subsets.json')
    ap.add_argument('--loss', default='global', choices=['global', 'layer', 'encoder'])
    ap.add_argument('--iterations', default='50,100', help='comma-separated checkpoints at which to evaluate')
    ap.add_argument('--steps', type=int, default=10, help='inner steps')
    ap.add_argument('--expert_epochs', type=int, default=2); ap.add_argument('--max_start_epoch', type=int, default=3)
    ap.add_argument('--momentum', type=float, default=0.0,
                    help='SGD momentum of the inner loop (the evaluation uses 0.9)')
    ap.add_argument('--weight_decay', type=float, default=0.0,
                    help='weight decay of the inner loop (the evaluation uses 1e-4)')
    ap.add_argument('--batch', type=int, default=32); ap.add_argument('--lr_img', type=float, default=1e3)
    ap.add_argument('--lr_targets', type=float, default=1.0); ap.add_argument('--lr_lr', type=float, default=1e-3)
    ap.add_argument('--lr_init', type=float, default=0.1); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--init', default='high_loss', choices=['high_loss', 'random'])
    ap.add_argument('--fractions', default='0.01,0.05'); ap.add_argument('--json', default=None)
    a = ap.parse_args(argv)
    import torch
    from kdd_explore.core import load_json, make_generator, derive_seed
    from kdd_explore.kd import Experts, kd_loss
    from kdd_explore.models import build_model, fcall
    from kdd_explore.distill import expert_schedule, minibatch_schedule
    from distill_budget_study import load_finished_run, checkpoint_entry, side_by_side  # its neighbour in benchmarks/

    run = Path(a.run)
    cfg, data, x, reps, arch = load_finished_run(run)
    experts = Experts.load(run/'experts'/'experts', arch=arch)
    if a.max_start_epoch - 1 + a.expert_epochs > experts.n_epochs:
        raise SystemExit(f"max_start_epoch {a.max_start_epoch} - 1 + expert_epochs {a.expert_epochs} passes the "
                         f"experts' {experts.n_epochs} epochs.")
    idx = torch.tensor(load_json(run/'subsets.json')[a.init])
    model = build_model(arch)
    X0, Y0 = x[idx].clone(), reps[idx].clone()
    state = dict(images=X0.clone(), targets=Y0.clone(), lr=torch.tensor(a.lr_init))
    bufs = {k: torch.zeros_like(v) for k, v in state.items()}
    lrs = dict(images=a.lr_img, targets=a.lr_targets, lr=a.lr_lr)
    fractions = tuple(float(f) for f in a.fractions.split(','))
    checkpoints = sorted(int(i) for i in a.iterations.split(','))
    rows, log, losses, skipped, t0 = [], [], [], 0, time.time()
    for it in range(checkpoints[-1]):
        g = make_generator(derive_seed(a.seed, 'variant', it))
        k = expert_schedule(it, experts.n_experts, a.seed)
        s = int(torch.randint(0, a.max_start_epoch, (1,), generator=g))
        start, target = experts.params(k, s), experts.params(k, s + a.expert_epochs)
        X, Y, lr = (state[n].clone().requires_grad_(True) for n in ('images', 'targets', 'lr'))
        theta = {n: v.clone().requires_grad_(True) for n, v in start.items()}
        vel = {n: torch.zeros_like(v) for n, v in start.items()}
        for b in minibatch_schedule(len(X), a.batch, a.steps, g):
            grads = torch.autograd.grad(kd_loss(fcall(model, theta, X[b]), Y[b]),
                                        list(theta.values()), create_graph=True)
            vel = {n: a.momentum * vel[n] + gn + a.weight_decay * theta[n] for n, gn in zip(theta, grads)}
            theta = {n: theta[n] - lr * vel[n] for n in theta}
        loss = matching(a.loss, theta, start, target)
        gx, gy, glr = torch.autograd.grad(loss, [X, Y, lr])
        if all(bool(torch.isfinite(t).all()) for t in (loss, gx, gy, glr)):
            for n, gr in zip(('images', 'targets', 'lr'), (gx, gy, glr)):
                bufs[n] = 0.5 * bufs[n] + gr
                state[n] = (state[n] - lrs[n] * bufs[n]).detach()
            state['lr'] = state['lr'].clamp_min(1e-4)
            losses.append(float(loss.detach()))
        else: skipped += 1
        if it + 1 in checkpoints:
            entry = checkpoint_entry(it + 1, time.time() - t0, losses, state['lr'],
                                     state['images'], X0, skipped=skipped)
            print(entry, flush=True); log.append(entry)
            rows += side_by_side(arch, cfg, data, f'{a.loss}@{it + 1}', state['images'].clone(),
                                 state['targets'].clone(), float(state['lr']), X0, Y0, fractions)
    if a.json: Path(a.json).write_text(json.dumps(dict(run=str(run), settings=vars(a), log=log, rows=rows), indent=1))

if __name__ == '__main__': main()
