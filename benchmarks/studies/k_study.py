"""How many expert trajectories does MKDT need, and does the set memorise the ones it matches? (issue 36, item 2)

One run of a recipe up to its subsets (data, teacher, representations, the recipe's experts, the high-loss and random
subsets); then a pool of *short* KD experts (only the epochs the distillation reads: 0 to max_start_epoch - 1 +
expert_epochs) and a fixed set of *held-out* short experts recorded from another root seed, which matching never uses.
For each K of `--ks`, MKDT is distilled from the run's high-loss images on the first K short experts (expert k's
initialisation and minibatch order are the recipe's expert k's, so the first 4 are the recipe's own experts cut to the
epochs the loop reads), saved at each of `--saves`. At every save the set's matching loss is measured on the held-out
experts and on (at most 8 of) the experts it was fitted to: a held-out loss that stops falling while the fitted one
keeps falling is memorisation. The recipe's full-length experts stay the full-data KD ceiling.

Evaluation (`--eval`), with every random choice of a seed shared by every method (the student's initialisation, its
minibatch order, the labelled subset): each save's set on the validation split at `--val-seeds` seeds (the iteration is
chosen there: the highest mean validation accuracy over the label fractions, a tie to the fewer iterations), then the
chosen save's set, its initial images at its learned lr, and the random and high-loss subsets on the test split at
`--test-seeds` seeds. Findings are paired differences with 95% t intervals (`kdd_explore.paired`).

    python benchmarks/studies/k_study.py --dataset cifar10_jpeg --config cifar10_cpu --ks 1,4,16 --saves 100,300,1000 --out runs/k_study
    python benchmarks/studies/k_study.py --dataset cifar10_jpeg --config cifar10_cpu --ks 1,4,16 --saves 100,300,1000 --out runs/k_study --eval
    python benchmarks/studies/k_study.py --dataset fake --config cifar10_cpu --tiny --ks 1,2 --saves 2,4 --out runs/k_toy --eval   # toy size

Resumable: the run folder's stages, each expert, each distillation's checkpoint and set, and each evaluation job are
read back, so rerunning the same command continues (a larger --ks or --saves extends the study). Writes
OUT/k_study.json (every number, with its provenance; with `--label-draws D` above 1, OUT/k_study_drawsD.json from jobs
kept apart in OUT/eval_drawsD) and prints the tables. `--reference-run` adds the authors' loop's saves as an entry.
"""
from __future__ import annotations
import argparse, json, os, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other study scripts

HELD_OUT_SEED_KEY = 'held_out'  # the held-out experts' root seed is derive_seed(run seed, HELD_OUT_SEED_KEY)
TINY = {'n_train': 300, 'n_test': 200, 'n_experts': 2, 'expert_epochs': 4, 'syn_fraction': 0.05,
        'high_loss_clusters': 5, 'eval_epochs': 2, 'teacher_epochs': 1, 'kd_eval_n': 200,
        'distill.syn_steps': 3, 'distill.batch_syn': 8, 'distill.snapshot_every': 2, 'distill.checkpoint_every': 2}

def short_epochs(dc) -> int:
    "The last expert epoch the distillation reads: max_start_epoch - 1 + expert_epochs."
    return dc.max_start_epoch - 1 + dc.expert_epochs

def record_short(run, n:int, folder:Path, seed:int, progress:bool):
    "`n` short KD experts of the run's student and optimiser (resumable in `folder`), from root `seed`."
    from kdd_explore.kd import record_experts
    cfg = run.cfg
    return record_experts(run.arch, run.x, run.reps, n_experts=n, epochs=short_epochs(cfg.distill_config()),
                          lr=cfg.expert_lr, batch_size=cfg.expert_batch_size, momentum=cfg.expert_momentum,
                          weight_decay=cfg.expert_weight_decay, seed=seed, out=folder, progress=progress,
                          meta=dict(dataset=run.data.meta(), role=folder.name))

def last_tenth(losses:list) -> float:
    "Mean of the last tenth of the loop's matching losses (the stretches it drew), rolled-back NaNs left out."
    tail = [v for v in losses[-max(1, len(losses) // 10):] if v == v]
    return round(sum(tail) / len(tail), 4) if tail else float('nan')

def first_k(experts, k:int):
    "The first `k` trajectories of `experts` as an `Experts` of their own."
    from kdd_explore.kd import Experts
    return Experts(experts.arch, experts.trajectories[:k], dict(experts.meta, n_used=k))

def distill_k(run, experts, k:int, saves:list, folder:Path, held_out, progress:bool) -> dict:
    "MKDT from the run's high-loss images on `experts`' first `k`, saved at each of `saves`; per save: seconds, lr, matching loss fitted / held out."
    from kdd_explore.core import artifact_exists, load_json, save_json
    from kdd_explore.distill import SyntheticSet, distill, matching_loss, step_budget
    cfg, ex, out = run.cfg, first_k(experts, k), folder/f'K{k}'
    out.mkdir(parents=True, exist_ok=True)
    fitted = first_k(ex, min(k, 8))  # the matching loss on the fitted experts: at most 8 of them (cost)
    summary = load_json(out/'summary.json') if (out/'summary.json').exists() else {}
    syn0 = SyntheticSet.from_real(run.x, run.reps, run.subsets['high_loss'], lr=cfg.distill_config().lr_init,
                                  meta=dict(dataset=run.data.meta(), arch=run.arch, init='high_loss', n_experts=k))
    dc0 = cfg.distill_config()
    if '0' not in summary:
        summary['0'] = dict(iteration=0, lr=float(syn0.lr), fitted=round(matching_loss(fitted, syn0, dc0), 4),
                            held_out=round(matching_loss(held_out, syn0, dc0), 4))
    for t in saves:
        if str(t) in summary and artifact_exists(out/f'set_{t}'): continue
        t0 = time.time()
        syn, hist = distill(ex, syn0, cfg.distill_config(iterations=t), out=out/'loop', progress=progress)
        syn.save(out/f'set_{t}')
        seconds = round(time.time() - t0, 1)
        summary[str(t)] = dict(iteration=t, seconds=seconds, lr=round(float(syn.lr), 5),
                               fitted=round(matching_loss(fitted, syn, dc0), 4),
                               held_out=round(matching_loss(held_out, syn, dc0), 4),
                               ratio=round(step_budget(ex, dc0, syn.lr)['ratio'], 4),
                               loop_loss_last_tenth=last_tenth(hist.losses()))
        save_json(out/'summary.json', summary)
        print(f"K={k} it {t}: lr {summary[str(t)]['lr']}, matching loss fitted {summary[str(t)]['fitted']} / held out "
              f"{summary[str(t)]['held_out']} ({seconds} s)", flush=True)
    return summary

REFERENCE = 'reference'  # the sets folder and results key of the authors' loop's run (`--reference-run`)

def import_reference(run, ref:Path, saves:list, folder:Path, held_out, pool) -> dict:
    "The saves of `benchmarks/reference_loop.py --run` (the authors' loop) as this study's sets, with their matching losses."
    from kdd_explore.core import load_json, save_json
    from kdd_explore.distill import SyntheticSet, matching_loss
    info, out, dc0 = load_json(ref/'reference_run.json'), folder/REFERENCE, run.cfg.distill_config()
    out.mkdir(parents=True, exist_ok=True)
    # their loop reads one replay-buffer file (their shuffle picks which): expert j of the run, whose recorded prefix is
    # the pool's short expert j
    import re
    used = sorted({int(m.group(1)) for f in info.get('loaded_files') or [] if (m := re.search(r'_(\d+)\.pt$', f))})
    from kdd_explore.kd import Experts
    fitted = Experts(pool.arch, [pool.trajectories[j] for j in used or [0]], dict(pool.meta, n_used=len(used or [0])))
    save_json(out/'source.json', dict(reference_run=str(ref), loaded_files=info.get('loaded_files'), fitted_experts=used,
                                      minibatches=info.get('minibatches'), patches=info.get('patches')))
    summary = {}  # iteration -> matching losses, as each K's summary
    for t in saves:
        src = ref/'saves'/f'iter_{t}'/'synthetic_set'
        if not src.with_suffix('.json').exists(): continue
        syn = SyntheticSet.load(src)
        syn.save(out/f'set_{t}')
        summary[str(t)] = dict(iteration=t, lr=round(float(syn.lr), 5), fitted=round(matching_loss(fitted, syn, dc0), 4),
                               held_out=round(matching_loss(held_out, syn, dc0), 4))
    save_json(out/'summary.json', summary)
    return summary

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--dataset', required=True)
    ap.add_argument('--config', default='cifar10_cpu')
    ap.add_argument('--out', required=True)
    ap.add_argument('--ks', default='1,4,16', help='numbers of expert trajectories to distil from')
    ap.add_argument('--saves', default='100,300,1000', help='iterations at which each set is saved')
    ap.add_argument('--held-out', type=int, default=4, help='held-out short experts (never matched)')
    ap.add_argument('--set', dest='settings', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--teacher', default=None)
    ap.add_argument('--eval', action='store_true', help='evaluate the saved sets (paired seeds) instead of distilling')
    ap.add_argument('--val-seeds', default='0,1,2')
    ap.add_argument('--test-seeds', default='0,1,2,3,4,5,6,7,8,9')
    ap.add_argument('--n-val', type=int, default=5000)
    ap.add_argument('--label-draws', type=int, default=1, help='labelled subsets averaged per encoder (see paired_noise.py)')
    ap.add_argument('--reference-run', default=None, help="with --eval: also evaluate the saves of the authors' loop "
                    "(the OUT of `benchmarks/reference_loop.py --run`), as the entry 'reference'")
    ap.add_argument('--tiny', action='store_true')
    ap.add_argument('--quiet', action='store_true')
    a = ap.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # for the provenance
    from budget_study import need_dataset, study_config
    from kdd_explore.core import KddError, RunLock, derive_seed, save_json
    from kdd_explore.pipeline import prepare_run
    from kdd_explore.recipes import parse_settings
    ks, saves = sorted({int(k) for k in a.ks.split(',')}), sorted({int(s) for s in a.saves.split(',')})
    need_dataset(a.dataset)
    try:
        changes = {**(TINY if a.tiny else {}), **parse_settings(a.settings)}
        if a.teacher: changes['teacher'] = a.teacher
        cfg = study_config(a.config, a.dataset, 1, changes)
    except KddError as e: sys.exit(str(e))
    out, progress, t0 = Path(a.out), not a.quiet, time.time()
    with RunLock(out/'run'):
        run = prepare_run(cfg, out/'run', progress=progress)
        held = record_short(run, a.held_out, out/'held_out', derive_seed(run.cfg.seed, HELD_OUT_SEED_KEY), progress)
        if a.eval:
            from k_study_eval import evaluate_study
            from kdd_explore.kd import Experts
            names = list(ks)
            if a.reference_run:
                import_reference(run, Path(a.reference_run), saves, out/'sets', held,
                                 Experts.load(out/'experts'/'experts'))
                names.append(REFERENCE)
            return evaluate_study(run, a, names, saves, out, progress)
        pool = record_short(run, max(ks), out/'experts', run.cfg.seed, progress)
        res = {}
        for k in ks: res[str(k)] = distill_k(run, pool, k, saves, out/'sets', held, progress)
    study = dict(kind='k_study', dataset=a.dataset, config=a.config, settings=changes, ks=ks, saves=saves,
                 held_out=a.held_out, short_epochs=short_epochs(run.cfg.distill_config()), distill=res,
                 wall_s=round(time.time() - t0, 1))
    save_json(out/'k_distill.json', study)
    for k, s in res.items():
        print(f"K={k}: " + '; '.join(f"{t}: fitted {v['fitted']} held out {v['held_out']} lr {v['lr']}"
                                     for t, v in s.items()))
    return study

if __name__ == '__main__': main()
