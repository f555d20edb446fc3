"""Where does the noise of a paired comparison enter? (issue 36, item 1)

Two real subsets of one pool (the run's random and high-loss subsets, and 1,000-image ones at batch 256 as the
reference code runs its baselines) are each pre-trained at `--seeds` seeds, and every encoder is probed with the
labelled subsets of every seed, under both probe protocols. That gives, per protocol and label fraction, a matrix of
paired differences D[p][l] = acc_A(pre-training seed p, labels l) - acc_B(p, l), from which:

- `as_run`: the differences the evaluation uses today (seed s pre-trains and labels: D[s][s]),
- `labels_fixed`: only the pre-training varies (D[s][0]); `pretrain_fixed`: only the labels vary (D[0][s]),
- `draws_D`: each encoder's accuracy averaged over D labelled subsets (`compare(label_draws=D)`),
- a two-way decomposition of D's variance: the pre-training seed's share, the labels' share and their interaction.

The protocol and the number of draws with the smallest sd of the paired difference, per unit of cost, is what the
study's evaluations use. Resumable (each encoder's probe matrix is kept in OUT/jobs).

    python benchmarks/studies/paired_noise.py --dataset cifar10_jpeg --config cifar10_cpu --teacher kdd_explore/assets/teacher_cifar10 --run runs/k_study/run --out runs/paired_noise
    python benchmarks/studies/paired_noise.py --dataset fake --config cifar10_cpu --tiny --run runs/k_toy/run --out runs/noise_toy --seeds 0,1,2   # toy size
"""
from __future__ import annotations
import argparse, json, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other study scripts

def probe_matrix(enc, data, fractions, label_seeds, protocol) -> dict:
    "Accuracy of one frozen encoder for every labelled subset seed and fraction: {fraction: [acc per label seed]}."
    import torch
    from kdd_explore.probe import encode, labelled_indices, linear_probe
    idx = {(l, f): labelled_indices(data.y_train, f, l, protocol) for l in label_seeds for f in fractions}
    rows = torch.cat(list(idx.values())).unique()
    pos = torch.full((len(data.y_train),), -1, dtype=torch.long); pos[rows] = torch.arange(len(rows))
    ftr, fte = encode(enc, data.normalize(data.x_train[rows])), encode(enc, data.normalize(data.x_test))
    return {str(f): [linear_probe(ftr[pos[idx[l, f]]], data.y_train[idx[l, f]], fte, data.y_test,
                                  n_classes=data.n_classes, protocol=protocol, seed=l) for l in label_seeds]
            for f in fractions}

def decompose(D:list[list[float]]) -> dict:
    "Two-way (pre-training seed x label seed) decomposition of a square matrix of paired differences: the sd of each part."
    n = len(D)
    grand = statistics.fmean(v for r in D for v in r)
    rows = [statistics.fmean(r) for r in D]
    cols = [statistics.fmean(D[p][l] for p in range(n)) for l in range(n)]
    resid = [D[p][l] - rows[p] - cols[l] + grand for p in range(n) for l in range(n)]
    sd = lambda v, dof: (sum(x * x for x in v) / dof) ** 0.5
    return dict(pretrain_sd=round(sd([r - grand for r in rows], n - 1), 3),
                labels_sd=round(sd([c - grand for c in cols], n - 1), 3),
                interaction_sd=round(sd(resid, (n - 1) ** 2), 3), mean=round(grand, 3))

def summarise(mat:dict, pair:tuple, fractions, seeds, draws_list) -> dict:
    "Per fraction: the sd of the paired difference under each way of running the evaluation, and the decomposition."
    from kdd_explore.evaluate import t_interval
    a, b = pair
    out = {}
    for f in map(str, fractions):
        D = [[mat[a][p][f][l] - mat[b][p][f][l] for l in range(len(seeds))] for p in range(len(seeds))]
        ways = {'as_run': [D[s][s] for s in range(len(seeds))],
                'labels_fixed': [D[s][0] for s in range(len(seeds))],
                'pretrain_fixed': [D[0][s] for s in range(len(seeds))]}
        for k in draws_list:  # encoder s averaged over k labelled subsets (its own first, then the next ones)
            ways[f'draws_{k}'] = [statistics.fmean(D[s][(s + j) % len(seeds)] for j in range(k))
                                  for s in range(len(seeds))]
        out[f] = dict(ways={w: dict(sd=round(statistics.stdev(d), 3), **dict(zip(('mean', 'lo', 'hi'),
                                                                                   (round(v, 3) for v in t_interval(d)))),
                                    diffs=[round(v, 3) for v in d]) for w, d in ways.items()},
                      decomposition=decompose(D))
    return out

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--dataset', required=True)
    ap.add_argument('--config', default='cifar10_cpu')
    ap.add_argument('--run', required=True, help="a run folder prepared by the recipe (k_study.py's OUT/run)")
    ap.add_argument('--out', required=True)
    ap.add_argument('--teacher', default=None)
    ap.add_argument('--seeds', default='0,1,2,3,4,5,6,7,8,9')
    ap.add_argument('--big', type=int, default=1000, help='size of the reference-style subsets (0: skip them)')
    ap.add_argument('--tiny', action='store_true')
    ap.add_argument('--set', dest='settings', action='append', default=[], metavar='KEY=VALUE')
    a = ap.parse_args(argv)
    import dataclasses
    from budget_study import need_dataset, study_config
    from benchmarks.provenance import provenance
    from k_study import TINY
    from kdd_explore.core import save_json, load_json
    from kdd_explore.data import load_dataset
    from kdd_explore.evaluate import PretrainSet, pretrain_kd
    from kdd_explore.kd import high_loss_indices, random_indices
    from kdd_explore.pipeline import prepare_run
    from kdd_explore.recipes import parse_settings
    need_dataset(a.dataset)
    changes = {**(TINY if a.tiny else {}), **parse_settings(a.settings)}
    if a.teacher: changes['teacher'] = a.teacher
    cfg = study_config(a.config, a.dataset, 1, changes)
    seeds = [int(s) for s in a.seeds.split(',')]
    out, t0 = Path(a.out), time.time()
    (out/'jobs').mkdir(parents=True, exist_ok=True)
    # the run's stages are read back (k_study.py made them; it may still hold the folder's lock while it distils)
    run = prepare_run(cfg, Path(a.run), progress=False)
    cfg, x, reps = run.cfg, run.x.cpu(), run.reps.cpu()
    full = load_dataset(cfg.dataset, n_test=cfg.n_test, seed=cfg.seed, **cfg.dataset_options)
    full = dataclasses.replace(full, mean=run.data.mean, std=run.data.std)
    sets = {'random': (run.subsets['random'], cfg.eval_batch_size), 'high_loss': (run.subsets['high_loss'],
                                                                                 cfg.eval_batch_size)}
    if a.big:  # the reference's baselines: 1,000 images at batch 256 (4 steps an epoch, 20 epochs)
        sets['random_big'] = (random_indices(len(x), a.big, seed=cfg.seed), 256)
        sets['high_loss_big'] = (high_loss_indices(run.experts, x, reps, size=a.big, seed=cfg.seed), 256)
    mat = {p: {} for p in ('standard', 'reference')}
    for name, (idx, bs) in sets.items():
        pset = PretrainSet(x[idx], reps[idx])
        for p in mat: mat[p][name] = []
        for s in seeds:
            job = out/'jobs'/f'{name}__seed{s}.json'
            if job.exists(): kept = load_json(job)
            else:
                t = time.time()
                enc = pretrain_kd(run.arch, pset, seed=s, epochs=cfg.eval_epochs, batch_size=bs)
                kept = {p: probe_matrix(enc, full, cfg.fractions, seeds, p) for p in mat}
                kept['seconds'] = round(time.time() - t, 1)
                save_json(job, kept)
                print(f"{name} seed {s}: {kept['seconds']} s", flush=True)
            for p in mat: mat[p][name].append(kept[p])
    pairs = {'high_loss - random (100 images, batch 32)': ('high_loss', 'random')}
    if a.big: pairs[f'high_loss - random ({a.big} images, batch 256)'] = ('high_loss_big', 'random_big')
    draws = [d for d in (3, 5, len(seeds)) if d <= len(seeds)]
    res = {p: {k: summarise(mat[p], pair, cfg.fractions, seeds, draws) for k, pair in pairs.items()} for p in mat}
    prov = provenance(__file__, argv, t0=t0)
    study = dict(kind='paired_noise', dataset=a.dataset, config=a.config, settings=changes, seeds=seeds,
                 fractions=list(cfg.fractions), pool=len(x), sets={k: dict(size=len(v[0]), batch=v[1])
                                                                    for k, v in sets.items()},
                 results=res, accuracies=mat, wall_s=prov['wall_s'], provenance=prov)
    save_json(out/'paired_noise.json', study)
    for p, by in res.items():
        for k, fr in by.items():
            for f, r in fr.items():
                print(f"{p:9s} {k} {float(f):.0%}: " + ', '.join(f"{w} sd {v['sd']}" for w, v in r['ways'].items())
                      + f" | parts: {r['decomposition']}")
    return study

if __name__ == '__main__': main()
