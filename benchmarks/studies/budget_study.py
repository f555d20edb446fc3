"""The paper's budget: MKDT distilled for up to 5,000 iterations, every saved set evaluated as the main job does.

One run of a recipe's stages up to the subsets (data, teacher, representations, KD experts, the high-loss and random
subsets), then one MKDT distillation from the high-loss images, continued in segments and saved at each iteration of
`--saves` (default 100, 300, 1000, 3000, 5000). Each saved set is evaluated like the main job: mkdt_high_loss,
mkdt_initial_at_learned_lr and random_subset_at_learned_lr at that set's learned lr, beside random_subset,
high_loss_subset, no_pretrain and full_data_kd (which do not change with the iterations); seeds 0, 1, 2; the probe
with 1% and 5% of the full training split's labels; each encoder's pool KD loss; the set's matching loss (every expert
and start) and step budget.

**The headline iteration is chosen on a validation split, never on the test set.** The validation images are
labelled training images outside the pool and outside every probe's labelled subset (every seed, every fraction):
`--n-val` of them (default 5,000), drawn with the run's seed. The rule, fixed before any test number is computed:
*the saved iteration whose mkdt_high_loss has the highest validation accuracy, averaged over the label fractions and
seeds; a tie goes to the fewer iterations.* The test numbers of every saved iteration are reported (the curve), and the
headline row is the one at the chosen iteration.

    python benchmarks/studies/budget_study.py --dataset cifar10_jpeg --config cifar10_cpu --out runs/budget_cifar10_jpeg
    python benchmarks/studies/budget_study.py --dataset fashion_mnist --config quickstart --out runs/budget_fashion_mnist
    python benchmarks/studies/budget_study.py --dataset fake --config cifar10_cpu --tiny --saves 2,4 --n-val 200 --out runs/budget_toy  # toy size

Each saved set is evaluated as soon as it is saved, and the report is rewritten after each one (marked partial, with
the choice made among the iterations evaluated so far), so the curve can be read hours before the last save. Resumable:
the run folder's stages, the distillation's checkpoint and each saved set and its evaluation are read back, so an
interrupted study continues where it stopped (rerun the same command). `--no-distill` evaluates only the sets
already saved (an iteration the run never reached is refused). Writes OUT/budget_study.json (every number),
OUT/budget_study.md (the tables) and OUT/budget_study.html (the plotly figure: probe accuracy and matching loss against
the iterations).
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
from benchmarks.provenance import provenance

# the methods and the rule
from kdd_explore.report import BUDGET_FIXED as FIXED, BUDGET_PER_SET as PER_SET, BUDGET_RULE as RULE
from kdd_explore.report import budget_figure as figure, budget_table as tables, choose_iteration as choose

TINY = {'n_train': 300, 'n_test': 200, 'n_experts': 2, 'expert_epochs': 4, 'syn_fraction': 0.05,
        'high_loss_clusters': 5, 'eval_epochs': 2, 'seeds': [0, 1], 'teacher_epochs': 1, 'kd_eval_n': 200,
        'distill.syn_steps': 3, 'distill.batch_syn': 8, 'distill.snapshot_every': 2,
        'distill.checkpoint_every': 2}  # --tiny: the recipe at toy size (a check that the study runs, not a result)
# datasets this study is run on here that a machine may lack: the commands that provide them, and their full size
COPIES = {
    'cifar10_jpeg': dict(how="tar xzf cifar10_jpeg.tar.gz -C /tmp && kdd-explore register cifar10_jpeg "
                             "/tmp/cifar10_jpeg --size 32",
                         train=50000, test=10000),
}

def need_dataset(name:str, root=None):
    "Stop with one line when `name` is neither built in nor registered here, or is a known copy registered incomplete."
    from kdd_explore.core import KddError
    from kdd_explore.data import dataset_info
    copy = COPIES.get(name)
    try: info = dataset_info(name, root=root, download=False)
    except KddError as e:
        sys.exit(f"{name} is not available here: {copy['how']}" if copy
                 else f"{name} is not available here: {str(e).splitlines()[0]}")
    if copy and (sum(info.train_counts), sum(info.test_counts)) != (copy['train'], copy['test']):
        sys.exit(f"{name} is registered with {sum(info.train_counts):,} training and {sum(info.test_counts):,} test "
                 f"images, not {copy['train']:,} and {copy['test']:,} (a half-extracted copy?): {copy['how']}")

def study_config(config:str, dataset:str, first:int, changes:dict):
    "The recipe with the distillation stopping at the first save and only what the study needs."
    from kdd_explore.pipeline import get_config
    return get_config(config, **{'dataset': dataset, 'distilled_baselines': (), 'transfer': None,
                                 'ablation': False, 'variance': False, 'horizon_steps': None,
                                 'distill.iterations': first, **changes})

def validation_indices(cfg, full, n_val:int) -> 'torch.Tensor':
    "Training rows outside the pool and every probe's labelled subsets: `cfg`'s validation images (seeded)."
    import torch
    from kdd_explore.data import stratified_indices
    from kdd_explore.kd import random_indices
    from kdd_explore.probe import labelled_indices
    y = full.y_train
    used = torch.zeros(len(y), dtype=torch.bool)
    if cfg.n_train is not None: used[stratified_indices(y, cfg.n_train / len(y), seed=cfg.seed)] = True
    for s in cfg.seeds:
        for f in cfg.fractions: used[labelled_indices(y, f, s, cfg.probe_protocol)] = True
    free = (~used).nonzero().flatten()
    if len(free) < n_val:
        raise SystemExit(f"Only {len(free)} training images lie outside the pool and the "
                         f"probes' labelled subsets: pass --n-val {len(free)} or less.")
    return free[random_indices(len(free), n_val, seed=cfg.seed)]

def saved_set(folder:Path, t:int):
    "The set saved at iteration `t`, refusing an iteration the run never reached."
    from kdd_explore.distill import SyntheticSet
    from kdd_explore.core import artifact_exists
    p = folder/f'set_{t}'
    if not artifact_exists(p):
        have = sorted(int(q.stem[4:]) for q in folder.glob('set_*.json'))
        raise SystemExit(f"No set was saved at iteration {t}: this run saved {have or 'none'}. Run without "
                         f"--no-distill to continue it to {t}.")
    return SyntheticSet.load(p)

def distill_to(run, t:int, folder:Path, progress:bool) -> dict:
    "Continue the high-loss distillation to iteration `t` (resumable), saving the set and the seconds it took; returns every save's seconds."
    from kdd_explore.core import load_json, save_json, artifact_exists
    from kdd_explore.distill import SyntheticSet, distill
    cfg, timing = run.cfg, (load_json(folder/'timing.json') if (folder/'timing.json').exists() else {})
    if artifact_exists(folder/f'set_{t}'): return timing
    syn0 = SyntheticSet.from_real(run.x, run.reps, run.subsets['high_loss'], lr=cfg.distill_config().lr_init,
                                  meta=dict(dataset=run.data.meta(), arch=run.arch, init='high_loss'))
    t0 = time.time()
    syn, hist = distill(run.experts, syn0, cfg.distill_config(iterations=t), out=folder/'loop', progress=progress)
    syn.save(folder/f'set_{t}'); hist.save(folder/f'history_{t}')
    timing[str(t)] = round(time.time() - t0, 1)
    save_json(folder/'timing.json', timing)
    return timing

def methods_at(run, syn) -> dict:
    "Encoder factories of `PER_SET` for a saved set (or of `FIXED` when `syn` is None)."
    import torch
    from kdd_explore.evaluate import PretrainSet, expert_encoder, kd_method, kd_student
    cfg, arch, x, reps = run.cfg, run.arch, run.x.cpu(), run.reps.cpu()
    kw = dict(epochs=cfg.eval_epochs, batch_size=cfg.eval_batch_size)
    r, h = run.subsets['random'], run.subsets['high_loss']
    if syn is None:
        return {'no_pretrain': lambda s: kd_student(arch, reps.shape[1], s).eval().requires_grad_(False),
                'random_subset': kd_method(arch, PretrainSet(x[r], reps[r]), **kw),
                'high_loss_subset': kd_method(arch, PretrainSet(x[h], reps[h]), **kw),
                'full_data_kd': lambda s: expert_encoder(run.experts, s % run.experts.n_experts)}
    lr, init = float(syn.lr), torch.as_tensor(syn.meta['init_indices']).long()
    return {'mkdt_high_loss': kd_method(arch, PretrainSet(syn.images.cpu(), syn.targets.cpu(), lr), **kw),
            'mkdt_initial_at_learned_lr': kd_method(arch, PretrainSet(x[init], reps[init], lr), **kw),
            'random_subset_at_learned_lr': kd_method(arch, PretrainSet(x[r], reps[r], lr), **kw)}

def evaluate(run, name:str, methods:dict, test, val, folder:Path, progress:bool) -> dict:
    "Test and validation rows of `methods` (cached as `folder/eval_{name}.json`)."
    from kdd_explore.core import load_json, save_json
    from kdd_explore.evaluate import compare
    from kdd_explore.pipeline import kd_eval_data
    path = folder/f'eval_{name}.json'
    if path.exists(): return load_json(path)
    cfg, t0 = run.cfg, time.time()
    kd = kd_eval_data(cfg, run.x.cpu(), run.reps.cpu())
    res = dict(val=compare(methods, val, cfg.fractions, cfg.seeds, progress=progress, protocol=cfg.probe_protocol),
               test=compare(methods, test, cfg.fractions, cfg.seeds, progress=progress, protocol=cfg.probe_protocol,
                            kd_data=kd))
    res['seconds'] = round(time.time() - t0, 1)
    save_json(path, res)
    return res

def set_summary(run, syn, folder:Path, t:int) -> dict:
    "Matching loss (every expert and start) and step budget of the set saved at `t` (cached)."
    from kdd_explore.core import load_json, save_json
    from kdd_explore.distill import matching_loss, step_budget
    path = folder/f'summary_{t}.json'
    if path.exists(): return load_json(path)
    dc = run.cfg.distill_config()
    res = dict(iteration=t, lr=float(syn.lr), matching_loss=round(matching_loss(run.experts, syn, dc), 4),
               step_budget=step_budget(run.experts, dc, syn.lr))
    save_json(path, res)
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--dataset', required=True, help='a built-in dataset or one registered with `kdd-explore register`')
    ap.add_argument('--config', default='quickstart', help='the recipe (a `kdd-explore run --config` name)')
    ap.add_argument('--out', required=True, help='the study folder')
    ap.add_argument('--saves', default='100,300,1000,3000,5000',
                    help='iterations at which the set is saved and evaluated')
    ap.add_argument('--set', dest='settings', action='append', default=[], metavar='KEY=VALUE',
                    help='change a recipe setting (as `kdd-explore run --set`)')
    ap.add_argument('--teacher', default=None, help="a teacher artifact (default: the recipe's: the shipped one, else "
                                                    "trained in the run folder)")
    ap.add_argument('--n-val', type=int, default=5000,
                    help='validation images (training images outside the pool and the probes)')
    ap.add_argument('--no-distill', action='store_true', help='evaluate only the sets already saved')
    ap.add_argument('--tiny', action='store_true', help='the recipe at toy size (TINY), for a check that the study '
                                                        'runs; --set still wins')
    ap.add_argument('--quiet', action='store_true')
    a = ap.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # for the provenance
    import dataclasses
    from kdd_explore.core import KddError, RunLock
    from kdd_explore.pipeline import prepare_run
    from kdd_explore.recipes import parse_settings
    saves = sorted({int(s) for s in a.saves.split(',')})
    if not saves or saves[0] < 1: sys.exit(f"--saves takes iterations >= 1, got {a.saves!r}.")
    need_dataset(a.dataset)
    try:
        changes = {**(TINY if a.tiny else {}), **parse_settings(a.settings)}
        if a.teacher: changes['teacher'] = a.teacher
        cfg = study_config(a.config, a.dataset, saves[0], changes)
    except KddError as e: sys.exit(str(e))
    out, progress = Path(a.out), not a.quiet
    t0 = time.time()
    from kdd_explore.data import load_dataset
    # the whole training split (validation), before any work
    try: full = load_dataset(cfg.dataset, n_test=cfg.n_test, seed=cfg.seed, **cfg.dataset_options)
    except KddError as e:
        sys.exit(f"The study needs all of {cfg.dataset}'s training images (its validation split lies outside the "
                 f"pool): {e}")
    with RunLock(out/'run'):
        run = prepare_run(cfg, out/'run', progress=progress)
        cfg = run.cfg
        folder = out/'budget'; folder.mkdir(parents=True, exist_ok=True)
        full = dataclasses.replace(full, mean=run.data.mean, std=run.data.std)
        vi = validation_indices(cfg, full, a.n_val)
        val = dataclasses.replace(full, x_test=full.x_train[vi], y_test=full.y_train[vi])
        # refuse an iteration the run never reached before any work
        if a.no_distill: [saved_set(folder, t) for t in saves]
        fixed = evaluate(run, 'fixed', methods_at(run, None), full, val, folder, progress)
        its, timing = {}, {}
        # distil to each save, evaluate it, and write the report so far: the curve grows while the study runs
        for t in saves:
            if not a.no_distill: timing = distill_to(run, t, folder, progress)
            syn = saved_set(folder, t)
            its[str(t)] = dict(evaluate(run, f'iteration_{t}', methods_at(run, syn), full, val, folder, progress),
                               summary=set_summary(run, syn, folder, t))
            study = report(out, a, cfg, changes, saves, fixed, its, timing, run, len(syn), t0)
    print(tables(study))
    return study

def report(out:Path, a, cfg, changes:dict, saves:list, fixed:dict, its:dict, timing:dict, run,
           set_size:int, t0:float) -> dict:
    "The study so far (every saved iteration evaluated up to now), written as OUT/budget_study.{json,md,html}."
    from kdd_explore.core import atomic_write_bytes, save_json
    from kdd_explore.evaluate import gap
    done = [t for t in saves if str(t) in its]
    chosen = choose({t: its[str(t)]['val'] for t in done})  # validation only: the test rows play no part
    head = its[str(chosen)]['test'] + fixed['test']
    vs_r, vs_i = gap(head, 'mkdt_high_loss', 'random_subset'), gap(head, 'mkdt_high_loss', 'mkdt_initial_at_learned_lr')
    study = dict(dataset=a.dataset, config=a.config, settings=changes, saves=saves,
                 evaluated=done, complete=done == saves, fractions=list(cfg.fractions), seeds=list(cfg.seeds),
                 n_val=a.n_val, rule=RULE, chosen=chosen, fixed=fixed, iterations=its, distill_seconds=timing,
                 headline=dict(iteration=chosen, rows=head, vs_random_subset=vs_r, vs_initial=vs_i,
                                                       bar_met=all(g['beats']
                                                                   for g in [*vs_r.values(), *vs_i.values()])),
                 run_timings=run.stages.timings, wall_s=round(time.time() - t0, 1), pool=len(run.x), set_size=set_size,
                 provenance=provenance(__file__, a.argv, t0=t0))
    save_json(out/'budget_study.json', study)
    atomic_write_bytes(out/'budget_study.md', (tables(study) + '\n').encode())
    figure(study).write_html(str(out/'budget_study.html'), include_plotlyjs=True)
    return study

if __name__ == '__main__': main()
