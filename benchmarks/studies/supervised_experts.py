"""How much the experts themselves know: the test accuracy of a supervised row's experts at the epochs its distillation
matches, beside what the distilled set reaches.

    python benchmarks/studies/supervised_experts.py --out runs/supervised_study --rows fashion_mnist_10ipc,10ipc_pool55k,c10_1ipc_it2000
    python benchmarks/studies/supervised_experts.py --out runs/sup_toy --rows 10ipc_start5 --tiny --json out.json

Trajectory matching teaches the set to move a student the way an expert moved between two of its recorded epochs: the
targets are the experts at epochs expert_epochs .. max_start_epoch - 1 + expert_epochs. A classifier with an expert's
parameters at those epochs is one reading of what the matched stretches hold (the set is tested differently: a fresh
network trained on it for 300 epochs). Each row's first experts (--experts, 2 by default: expert k is the same network in
every row of the same expert settings) are scored on the whole test split, prepared as the row's pool (its
normalisation, and ZCA where the row whitens), at the first and last target epoch and the last recorded one. A row whose
experts are still being recorded is read from the experts it has; a row whose folder is gone, from another row's
recording of the same experts. The file is written after every row, and a call into
an existing file keeps the rows it holds for the same experts and epochs.
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
from benchmarks.provenance import provenance

def expert_epochs_to_read(recipe) -> list:
    "The epochs to score: the first and the last target of the matched stretches, and the last recorded epoch."
    cfg = recipe.config()
    return sorted({cfg.expert_epochs, cfg.max_start_epoch - 1 + cfg.expert_epochs, recipe.expert_epochs})

def load_first_experts(folder:Path, # a row's `experts` folder: the whole recording, or the experts finished so far
                       n:int, # how many to read (fewer when fewer are recorded)
                      ) -> list:
    "The first `n` recorded experts' trajectories (each a list of parameter dicts, epoch 0 first) and their architecture."
    from kdd_explore.core import artifact_exists
    from kdd_explore.kd import Experts
    if artifact_exists(folder/'experts'):
        ex = Experts.load(folder/'experts')
        return ex.trajectories[:n], ex.arch
    parts = [folder/f'expert_{k:03d}' for k in range(n) if artifact_exists(folder/f'expert_{k:03d}')]
    if not parts: sys.exit(f"{folder} holds no recorded expert yet: run the row first (supervised_study.py --rows ...).")
    got = [Experts.load(p) for p in parts]
    return [e.trajectories[0] for e in got], got[0].arch

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', required=True, help="the supervised study's folder (one sub-folder per row)")
    ap.add_argument('--rows', required=True, help='comma-separated rows of supervised_study.py')
    ap.add_argument('--experts', type=int, default=2, help="the row's first experts to score (default 2)")
    ap.add_argument('--tiny', action='store_true', help='rows at toy size, as supervised_study.py --tiny ran them')
    ap.add_argument('--json', default='benchmarks/results/supervised_experts.json', help='where to write the results')
    a = ap.parse_args(argv)
    t0, argv = time.time(), sys.argv[1:] if argv is None else argv
    from benchmarks.studies.supervised_study import ROWS, find_experts, row_recipe
    from kdd_explore.core import load_json, save_json
    from kdd_explore.models import build_model
    from kdd_explore.supervised import _split, accuracy
    names = [r.strip() for r in a.rows.split(',') if r.strip()]
    bad = [r for r in names if r not in ROWS]
    if bad: sys.exit(f"Unknown rows {bad}. Known: {', '.join(ROWS)}.")
    if a.experts < 1: sys.exit(f"--experts must be at least 1, got {a.experts}.")
    dest = Path(a.json)
    out = load_json(dest) if dest.exists() else {}
    out.update(kind='supervised_experts', rows=out.get('rows', {}))
    for name in names:
        folder, recipe = Path(a.out)/name/'experts', row_recipe(name, a.tiny)
        if not folder.is_dir():  # a row whose folder is gone: the same experts recorded by another row
            found = find_experts(Path(a.out), name, recipe)
            if found is None: sys.exit(f"{folder} does not exist and no other row in {a.out} recorded the same experts: "
                                       f"run the row first (supervised_study.py --rows {name}).")
            folder = Path(a.out)/found[0]/'experts'
            print(f"{name}: its experts are read from {found[0]}")
        trajs, arch = load_first_experts(folder, a.experts)
        epochs = expert_epochs_to_read(recipe)
        old = out['rows'].get(name, {})
        if old.get('experts') == len(trajs) and old.get('epochs') == epochs:
            print(f"{name}: already in {dest}"); continue
        t = time.time()
        _, _, (xt, yt), _ = _split(recipe, False)
        model = build_model(arch, seed=0)  # every parameter is then an expert's (no buffers: instance norm)
        acc = {}
        for e in epochs:
            accs = []
            for traj in trajs:
                model.load_state_dict(traj[e])
                accs.append(round(accuracy(model, xt, yt), 2))
            acc[str(e)] = dict(accuracies=accs, mean=round(sum(accs) / len(accs), 2))
        cfg = recipe.config()
        out['rows'][name] = dict(experts=len(trajs), read_from=folder.parent.name, epochs=epochs, test=acc, n_test=len(yt), dataset=recipe.dataset,
                                 pool=recipe.n_train, width=recipe.width, expert_lr=recipe.expert_lr,
                                 recorded_epochs=recipe.expert_epochs,
                                 targets=[cfg.expert_epochs, cfg.max_start_epoch - 1 + cfg.expert_epochs],
                                 seconds=round(time.time() - t, 1))
        out['rows'] = {k: out['rows'][k] for k in sorted(out['rows'], key=lambda k: list(ROWS).index(k))}
        out['provenance'] = provenance(__file__, argv, t0=t0)
        save_json(dest, out)  # after every row
        print(f"{name}: " + ', '.join(f"epoch {e} {v['mean']:.1f}%" for e, v in acc.items())
              + f" ({len(trajs)} experts, {time.time() - t:.0f} s)", flush=True)
    return out

if __name__ == '__main__': main()
