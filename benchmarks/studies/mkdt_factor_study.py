"""MKDT with what makes supervised matching work: the experts' optimiser, the inner steps and the student, one factor at a time.

    python benchmarks/studies/mkdt_factor_study.py --dataset fashion_mnist --out runs/mkdt_factors_fm                 # the quickstart's rows
    python benchmarks/studies/mkdt_factor_study.py --dataset cifar10_jpeg --out runs/mkdt_factors_c10                 # cifar10_cpu's rows
    python benchmarks/studies/mkdt_factor_study.py --dataset fake --out runs/mkdt_factors_toy --tiny --rows today,experts_mtt   # toy size

Each row is one budget study (`benchmarks/studies/budget_study.py`: the recipe's stages, MKDT distilled from the high-loss
images and saved at `--saves`, every saved set evaluated like the main job, seeds 0-2, the probe at 1% and 5% of the
full training split's labels) with one change of the recipe, in OUT/<row>. The headline iteration of each row is chosen
on the validation split (5,000 training images outside the pool and the probes' labels) by the budget study's rule; the
test numbers are reported beside it. Rows are collected into OUT/mkdt_factor_study.json.

The rows (each the recipe as it stands, `today`, with one change; `supervised_best` carries over all the settings that
make supervised trajectory matching work here: MTT's experts, 20 inner steps and, on Fashion-MNIST, the padded
depth-3 student):
"""
from __future__ import annotations
import argparse, json, platform, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)

MTT = {'expert_lr': 0.01, 'expert_momentum': 0.0, 'expert_weight_decay': 0.0,
       'distill.lr_init': 0.01, 'distill.lr_lr': 1e-4}
# name -> (changes to the recipe, what the row asks); lr_lr scales with the initial lr (the recipe: 1e-3 at 0.1)
ROWS = {
    'today': ({}, "the recipe as it stands: the reference's experts (lr 0.1, momentum 0.9, weight decay 1e-4), 10 "
                  "inner steps"),
    'experts_mtt': (dict(MTT), "MTT's experts: lr 0.01, no momentum, no weight decay (inner lr starts at 0.01, "
                               "lr_lr 1e-4)"),
    'experts_no_momentum': ({'expert_momentum': 0.0}, 'experts at lr 0.1 without momentum (a tenth of the step budget '
                                                      'of today)'),
    'steps20': ({'distill.syn_steps': 20}, '20 inner steps'),
    'steps40': ({'distill.syn_steps': 40}, "40 inner steps (the paper's)"),
    'experts16': ({'n_experts': 16}, '16 experts instead of 4'),
    'depth3_padded': ({'depth': 3, 'first_padding': 'reference'},
                      "the reference code's student on 28x28: depth 3, first conv padded by 3"),
    'supervised_best': (dict(MTT, **{'distill.syn_steps': 20}),
                        "what makes supervised matching work: MTT's experts and 20 inner steps"),
}
DATASETS = {  # dataset -> (recipe, rows run by default, extra changes of supervised_best)
    'fashion_mnist': ('quickstart', ['today', 'experts_mtt', 'experts_no_momentum', 'steps20',
                                     'depth3_padded', 'supervised_best'],
                      {'depth': 3, 'first_padding': 'reference'}),
    'cifar10_jpeg': ('cifar10_cpu', ['today', 'experts_mtt', 'steps20', 'supervised_best'], {}),
    'fake': ('cifar10_cpu', ['today', 'experts_mtt'], {}),
}
__doc__ += ''.join(f"\n    {k:20s} {v[1]}" for k, v in ROWS.items())

def settings_of(row:str, dataset:str) -> dict:
    "The recipe changes of `row` on `dataset`."
    changes = dict(ROWS[row][0])
    if row == 'supervised_best': changes.update(DATASETS[dataset][2])
    return changes

def summary(study:dict) -> dict:
    "The headline of a row: the chosen iteration, its test and validation rows, the gaps, the learned lr, matching loss and step budget."
    t = str(study['chosen'])
    it = study['iterations'][t]
    mean = lambda rows, m: {str(r['label_fraction']): (round(r['acc_mean'], 2), round(r['acc_std'], 2))
                            for r in rows if r['method'] == m}
    methods = ('mkdt_high_loss', 'mkdt_initial_at_learned_lr', 'random_subset_at_learned_lr')
    fixed = ('random_subset', 'high_loss_subset', 'no_pretrain', 'full_data_kd')
    return dict(chosen=int(t), test={m: mean(it['test'], m)
                                     for m in methods} | {m: mean(study['fixed']['test'], m) for m in fixed},
                val={m: mean(it['val'], m) for m in methods} | {m: mean(study['fixed']['val'], m) for m in fixed},
                bar_met=study['headline']['bar_met'], lr=it['summary']['lr'],
                matching_loss=it['summary']['matching_loss'], step_budget=it['summary']['step_budget'],
                per_iteration={k: dict(lr=v['summary']['lr'], matching_loss=v['summary']['matching_loss'],
                                       test=mean(v['test'], 'mkdt_high_loss'), val=mean(v['val'], 'mkdt_high_loss'))
                               for k, v in study['iterations'].items()},
                distill_seconds=study['distill_seconds'], run_timings=study['run_timings'], wall_s=study['wall_s'])

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--dataset', required=True, choices=list(DATASETS))
    ap.add_argument('--out', required=True)
    ap.add_argument('--rows', default=None, help=f"comma-separated rows (default: the dataset's): {', '.join(ROWS)}")
    ap.add_argument('--saves', default='100,300,1000')
    ap.add_argument('--tiny', action='store_true', help='toy size (a check that the study runs, not a result)')
    ap.add_argument('--adopt', action='append', default=[], metavar='ROW=FILE',
                    help="take a row from a finished budget study's budget_study.json instead of running it (e.g. "
                         "today=kdd_explore/assets/budget_study_cifar10_jpeg.json)")
    ap.add_argument('--machine', default=None, help='how to name the machine in the results')
    ap.add_argument('--teacher', default=None, help="a teacher artifact (default: the recipe's; for cifar10_jpeg the shipped "
                                                    "CIFAR-10 teacher, as the shipped budget study used)")
    a = ap.parse_args(argv)
    import torch
    import budget_study
    from benchmarks.provenance import provenance
    from kdd_explore.core import save_json
    recipe, default_rows, _ = DATASETS[a.dataset]
    teacher = a.teacher
    if teacher is None and a.dataset == 'cifar10_jpeg':
        from kdd_explore.ssl import shipped_teacher
        teacher = shipped_teacher('cifar10')
    rows = [r.strip() for r in a.rows.split(',')] if a.rows else default_rows
    bad = [r for r in rows if r not in ROWS]
    if bad: sys.exit(f"Unknown rows {bad}. Known: {', '.join(ROWS)}.")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    path = out/'mkdt_factor_study.json'
    study = json.loads(path.read_text()) if path.exists() else {}
    study.update(kind='mkdt_factor_study', dataset=a.dataset, recipe=recipe, saves=a.saves,
                 tiny=a.tiny, rule=budget_study.RULE, machine=dict(platform=platform.platform(),
                                                                   torch=torch.__version__,
                                                                   threads=torch.get_num_threads()))
    study.setdefault('rows', {})
    study['provenance'] = dict(provenance(__file__, argv),
                               note="each row is its own budget study: its command (under rows) reruns that row alone")
    if a.machine: study['provenance']['machine'] = a.machine
    for item in a.adopt:  # a row measured before, by the same budget study script
        row, _, f = item.partition('=')
        if row not in ROWS or not Path(f).exists():
            sys.exit(f"--adopt {item!r}: need ROW=FILE with a known row and an existing budget_study.json.")
        res = json.loads(Path(f).read_text())
        prov = res.get('provenance', f)  # a dict (older files: the command as text)
        study['rows'][row] = dict(what=ROWS[row][1], changes=settings_of(row, a.dataset), summary=summary(res),
                                  wall_seconds=res['wall_s'],
                                  command=prov.get('command', f) if isinstance(prov, dict) else str(prov),
                                  date=time.strftime('%Y-%m-%d', time.localtime(Path(f).stat().st_mtime)),
                                  adopted_from=f)
        rows = [r for r in rows if r != row]
    save_json(path, study)
    for row in rows:
        t0 = time.time()
        changes = settings_of(row, a.dataset)
        argv_row = ['--dataset', a.dataset, '--config', recipe, '--out', str(out/row), '--saves', a.saves, '--quiet']
        if teacher: argv_row += ['--teacher', str(teacher)]
        argv_row += [x for k, v in changes.items() for x in ('--set',
                                                             f'{k}={json.dumps(v) if not isinstance(v, str) else v}')]
        if a.tiny: argv_row += ['--tiny', '--n-val', '200']
        print(f"== {row}: {ROWS[row][1]}", flush=True)
        res = budget_study.main(argv_row)
        study['rows'][row] = dict(what=ROWS[row][1], changes=changes, summary=summary(res),
                                  wall_seconds=round(time.time() - t0, 1),
                                  command=f"python benchmarks/studies/budget_study.py {' '.join(argv_row)}",
                                  date=time.strftime('%Y-%m-%d'))
        save_json(path, study)
    return study

if __name__ == '__main__': main()
