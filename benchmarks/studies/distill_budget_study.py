"""Does distillation beat its own starting images, and after how many iterations? The study behind the README's
"what the quickstart does not show": MKDT is run from a finished run's high-loss (or random) subset, and at each
checkpoint the distilled set is pre-trained and probed next to its *initial* images at the *same* learned lr, so the
gain of the images and targets is separated from the gain of the learned learning rate.

    kdd-explore quickstart --out runs/quickstart                       # once: experts, representations, subsets
    python benchmarks/studies/distill_budget_study.py runs/quickstart --out runs/study --iterations 100,300,600
    python benchmarks/studies/distill_budget_study.py runs/quickstart --out runs/study_slow --experts 4,5,0.01   # slower experts
    python benchmarks/studies/distill_budget_study.py runs/quickstart --out runs/study_s20 --set syn_steps=20 max_start_epoch=1 expert_epochs=1

`--set` overrides fields of the run's `DistillConfig`; `--experts K,E,LR` records K fresh experts of E epochs at SGD
lr LR (batch: the run's `expert_batch_size`) into `OUT/experts` instead of using the run's. Distillation checkpoints
go to `OUT/distill`, so a longer `--iterations` list resumes where a shorter one stopped.
"""
from __future__ import annotations
import argparse, json, time
from pathlib import Path

def parse_sets(items:list[str]) -> dict:
    "`['lr_img=1e4', 'mode=full']` -> `{'lr_img': 10000.0, 'mode': 'full'}` (numbers parsed, the rest kept as text)."
    out = {}
    for it in items:
        if '=' not in it: raise SystemExit(f"--set takes FIELD=VALUE pairs, got {it!r}.")
        k, v = it.split('=', 1)
        try: out[k] = int(v)
        except ValueError:
            try: out[k] = float(v)
            except ValueError: out[k] = v
    return out

def load_finished_run(run:Path):
    "(config, data, normalised training images, teacher representations, student arch) of a finished run folder."
    from kdd_explore.core import load_json, load_artifact
    from kdd_explore.data import load_dataset
    from kdd_explore.pipeline import PipelineConfig
    if not (run/'subsets.json').exists():
        raise SystemExit(f"{run} holds no finished subsets stage: run `kdd-explore quickstart --out {run}` first.")
    cfg = PipelineConfig.from_dict(load_json(run/'config.json'))
    data = load_dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed, **cfg.dataset_options)
    x = data.normalize(data.x_train)
    reps = load_artifact(run/'representations', expect={'kind': 'representations', 'n': len(x)})[0]['representations']
    return cfg, data, x, reps, cfg.student(data.shape, reps.shape[1])

def checkpoint_entry(iterations:int, seconds:float, losses:list, lr:float, images, images0, **extra) -> dict:
    "What a checkpoint reports: mean matching loss of the first and last tenth of the iterations, lr, how far the images moved."
    q = max(1, len(losses) // 10)
    mean = lambda v: round(sum(v) / len(v), 4) if v else None
    moved = float((images - images0).norm() / images0.norm())
    return dict(iterations=iterations, seconds=round(seconds, 1), first_loss=mean(losses[:q]),
                last_loss=mean(losses[-q:]), lr=round(float(lr), 4), images_moved=round(moved, 4), **extra)

def side_by_side(arch:dict, cfg, data, name:str, images, targets, lr:float, images0, targets0, fractions:tuple) -> list:
    "Pre-train and probe a learned set and its initial images at the same lr, as the pipeline evaluates; print and return the rows."
    from kdd_explore.evaluate import PretrainSet, kd_method, compare, results_table
    kw = dict(epochs=cfg.eval_epochs, batch_size=cfg.eval_batch_size)
    methods = {name: kd_method(arch, PretrainSet(images, targets, lr), **kw),
               f"initial@{name.split('@')[-1]} (lr {lr:.3g})": kd_method(arch, PretrainSet(images0, targets0, lr),
                                                                         **kw)}
    rows = compare(methods, data, fractions, cfg.seeds, progress=False)
    print(results_table(rows), flush=True)
    return rows

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('run', help='a finished quickstart (or run) folder: config.json, representations, experts, '
                                'subsets.json')
    ap.add_argument('--out', required=True, help='folder for the distillation checkpoints (and fresh experts)')
    ap.add_argument('--iterations', default='100,300', help='comma-separated checkpoints at which to evaluate')
    ap.add_argument('--init', default='high_loss', choices=['high_loss', 'random'],
                    help='which of the run\'s subsets starts the set')
    ap.add_argument('--experts', default=None, help='K,E,LR: record fresh experts instead of using the run\'s')
    ap.add_argument('--set', nargs='*', default=[], help='DistillConfig overrides, FIELD=VALUE')
    ap.add_argument('--fractions', default='0.01,0.05', help='label fractions of the probe')
    ap.add_argument('--json', default=None, help='also write the rows to this JSON file')
    a = ap.parse_args(argv)
    import torch
    from kdd_explore.core import load_json, KddError
    from kdd_explore.kd import Experts, record_experts
    from kdd_explore.distill import SyntheticSet, distill

    run, out = Path(a.run), Path(a.out)
    cfg, data, x, reps, arch = load_finished_run(run)
    if a.experts:
        k, e, lr = a.experts.split(',')
        t0 = time.time()
        experts = record_experts(arch, x, reps, int(k), int(e), lr=float(lr), batch_size=cfg.expert_batch_size,
                                 seed=cfg.seed, out=out/'experts')
        print(f"experts {k} x {e} epochs at lr {lr}: {time.time() - t0:.0f} s", flush=True)
    else: experts = Experts.load(run/'experts'/'experts', arch=arch)
    idx = torch.tensor(load_json(run/'subsets.json')[a.init])
    base = cfg.distill_config(**parse_sets(a.set))
    syn0 = SyntheticSet.from_real(x, reps, idx, lr=base.lr_init)
    fractions = tuple(float(f) for f in a.fractions.split(','))
    rows, log = [], []
    for n in sorted(int(i) for i in a.iterations.split(',')):
        t0 = time.time()
        try: syn, hist = distill(experts, syn0, base.__class__(**dict(base.__dict__, iterations=n)), out=out/'distill')
        except KddError as err: raise SystemExit(f"Distillation stopped: {err}")
        entry = checkpoint_entry(n, time.time() - t0, hist.losses(), syn.lr, syn.images, syn0.images)
        print(entry, flush=True); log.append(entry)
        rows += side_by_side(arch, cfg, data, f'distilled@{n}', syn.images, syn.targets, float(syn.lr),
                             syn0.images, syn0.targets, fractions)
    if a.json:
        Path(a.json).write_text(json.dumps(dict(run=str(run), init=a.init, experts=a.experts, distill=base.__dict__,
                                                log=log, rows=rows), indent=1))

if __name__ == '__main__': main()
