"""Where does MKDT's gain come from? The protocol matrix: {student} x {probe protocol} x {labels} on the quickstart's scale.

For each student (today's depth-4 ConvNet, or the reference code's padded depth-3 one) the quickstart's stages run once
(experts, subsets, MKDT from high-loss images; the distilled baselines, transfer, ablation and variance are left out),
then every method's encoder is pre-trained once per seed and probed four ways: the standard or the reference probe, with
labels from the 5,000-image pool or from the full 60,000-image training split. Each setting reports its *headroom*
(full-data KD minus the random subset, in units of the larger std) in its own column: where it is small, no set can win.

    python benchmarks/studies/protocol_study.py --out runs/protocol_study              # about 15 minutes on 2 CPU threads
    python benchmarks/studies/protocol_study.py --out runs/ps_quick --quick            # toy size (the test)

Resumable: each student's run folder is reused, each (protocol, labels) result is a JSON file that a rerun reads back.
Writes OUT/protocol_study.json (every row) and OUT/protocol_study.md (the matrix).
"""
from __future__ import annotations
import argparse, dataclasses, functools, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
from benchmarks.provenance import provenance

STUDENTS = {'depth4': dict(depth=4, first_padding=1), 'padded3': dict(depth=3, first_padding='reference')}
PROBES = [('standard', 'pool'), ('standard', 'full'), ('reference', 'pool'), ('reference', 'full')]
METHODS = ['no_pretrain', 'random_subset', 'random_subset_at_learned_lr', 'high_loss_subset', 'mkdt_high_loss',
           'mkdt_initial_at_learned_lr', 'full_data_kd']

def study_config(student:str, quick:bool=False, seeds=(0, 1, 2), fractions=(0.01, 0.05)):
    "The quickstart's configuration (or `quick`'s) with the student's settings and only what the matrix needs."
    from kdd_explore.pipeline import get_config
    if student not in STUDENTS: raise SystemExit(f"Unknown student {student!r}. Known: {', '.join(STUDENTS)}.")
    return get_config('quick' if quick else 'quickstart', **STUDENTS[student], distilled_baselines=(),
                      transfer=None, ablation=False, variance=False, horizon_steps=None, seeds=tuple(seeds),
                      fractions=tuple(fractions), probe_labels='pool')

def matrix_rows(run, folder:Path, progress:bool=True, probes=PROBES) -> list[dict]:
    "Rows of `compare` for every (protocol, labels) of `probes`, each encoder pre-trained once; cached per setting in `folder`."
    from kdd_explore.core import load_json, save_json
    from kdd_explore.evaluate import compare
    from kdd_explore.pipeline import kd_eval_data, load_probe_data
    cfg = run.cfg
    methods = {m: functools.lru_cache(maxsize=None)(f) for m, f in run.methods().items() if m in METHODS}
    full = None
    kd = kd_eval_data(cfg, run.x.cpu(), run.reps.cpu())
    out = []
    for protocol, labels in probes:
        path = folder/f'study_{protocol}_{labels}.json'
        if not path.exists():
            if labels == 'full' and full is None:
                full = load_probe_data(dataclasses.replace(cfg, probe_labels='full'), run.data)
            data = run.data if labels == 'pool' else full
            t0 = time.time()
            rows = compare(methods, data, cfg.fractions, cfg.seeds, progress=progress, protocol=protocol, kd_data=kd)
            save_json(path, dict(rows=rows, seconds=round(time.time() - t0, 1)))
        out += [dict(r, protocol=protocol, labels=labels) for r in load_json(path)['rows']]
    return out

def matrix_markdown(rows:list[dict]) -> str:
    "One line per (student, protocol, labels, fraction): every method's mean ± std, the headroom and MKDT's gap in stds."
    from kdd_explore.evaluate import gap
    keys = list(dict.fromkeys((r['student'], r['protocol'], r['labels']) for r in rows))
    head = ['student', 'probe', 'labels', 'label %'] + METHODS + ['headroom: full KD - random (stds)',
                                                                  'MKDT - random (stds)',
                                                                  'MKDT - its initial set at the same lr (stds)']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for key in keys:
        rs = [r for r in rows if (r['student'], r['protocol'], r['labels']) == key]
        by = {(r['method'], r['label_fraction']): r for r in rs}
        gaps = {n: gap(rs, a, b) for n, (a, b) in dict(h=('full_data_kd', 'random_subset'),
                                                       m=('mkdt_high_loss', 'random_subset'),
                                                      i=('mkdt_high_loss', 'mkdt_initial_at_learned_lr')).items()}
        for f in sorted({r['label_fraction'] for r in rs}):
            cells = [f"{by[m, f]['acc_mean']:.1f} ± {by[m, f]['acc_std']:.1f}" if (m, f) in by else '' for m in METHODS]
            g = lambda n: (f"{gaps[n][f]['gap']:+.1f} "
                           f"({gaps[n][f]['in_stds'] if gaps[n][f]['in_stds'] is not None else '-'})")
            lines.append('| ' + ' | '.join(list(key) + [f'{f:.0%}'] + cells + [g('h'), g('m'), g('i')]) + ' |')
    return '\n'.join(lines)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default='runs/protocol_study', help='study folder (one run folder per student inside)')
    ap.add_argument('--students', default='depth4,padded3', help=f"comma-separated, of: {', '.join(STUDENTS)}")
    ap.add_argument('--seeds', default='0,1,2'); ap.add_argument('--fractions', default='0.01,0.05')
    ap.add_argument('--quick', action='store_true', help="the `quick` configuration's sizes (a check, not a result)")
    ap.add_argument('--probes', default=','.join(f'{p}/{l}' for p, l in PROBES),
                    help='comma-separated PROTOCOL/LABELS settings of the probe (default: all four)')
    ap.add_argument('--quiet', action='store_true')
    a = ap.parse_args(argv)
    from kdd_explore.core import save_json, atomic_write_bytes
    from kdd_explore.core import RunLock
    from kdd_explore.pipeline import prepare_run
    out, rows, timings, t_start = Path(a.out), [], {}, time.time()
    probes = [tuple(p.split('/')) for p in a.probes.split(',')]
    if bad := [p for p in probes if p not in PROBES]:
        raise SystemExit(f"Unknown probe settings {['/'.join(p) for p in bad]}. Known: "
                         f"{', '.join(f'{p}/{l}' for p, l in PROBES)}.")
    for student in a.students.split(','):
        cfg = study_config(student, a.quick, [int(s) for s in a.seeds.split(',')],
                           [float(f) for f in a.fractions.split(',')])
        t0 = time.time()
        with RunLock(out/student):
            run = prepare_run(cfg, out/student, progress=not a.quiet)
            rows += [dict(r, student=student) for r in matrix_rows(run, out/student,
                                                                   progress=not a.quiet, probes=probes)]
        timings[student] = dict(run.stages.timings, total=round(time.time() - t0, 1))
    md = matrix_markdown(rows)
    save_json(out/'protocol_study.json', dict(rows=rows, timings=timings,
                                              students={s: STUDENTS[s] for s in a.students.split(',')},
                                              provenance=provenance(__file__, argv, t0=t_start)))
    atomic_write_bytes(out/'protocol_study.md', (md + '\n').encode())
    print(md)
    return rows

if __name__ == '__main__': main()
