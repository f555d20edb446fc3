"""A teacher's linear probe: how good are its representations, and how much better than its own random initialisation?

The teacher (a `kdd-explore teacher` artifact or folder; while it is still training, its last checkpoint) and the same
architecture at its random initialisation are probed on the dataset's test split with 1%, 5% and 100% of the training
labels (the standard probe: standardised features, full-batch L-BFGS, L2 1e-3, stratified labelled subsets, seed 0).

    python benchmarks/studies/teacher_probe.py --teacher runs/teacher_cifar10_jpeg --dataset cifar10_jpeg
    python benchmarks/studies/teacher_probe.py --teacher runs/teacher_cifar10_jpeg --dataset cifar10_jpeg --record   # also into the artifact

`--record` writes the figures into the teacher artifact's metadata (`probe`), as the shipped teachers carry them.
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
from benchmarks.provenance import provenance

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--teacher', required=True, help='a teacher artifact, or the --out folder of `kdd-explore teacher` '
                                                     '(finished or training)')
    ap.add_argument('--dataset', required=True, help='the dataset to probe on (built-in or registered)')
    ap.add_argument('--fractions', default='0.01,0.05,1.0', help='labelled fractions of the training split')
    ap.add_argument('--record', action='store_true', help="write the figures into the teacher artifact's metadata")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from headroom_study import teacher_path
    from kdd_explore.core import load_artifact, save_artifact
    from kdd_explore.data import load_dataset
    from kdd_explore.probe import probe_accuracies
    from kdd_explore.ssl import init_model, load_teacher
    fractions = tuple(float(f) for f in a.fractions.split(','))
    path, epoch = teacher_path(a.teacher, Path(a.teacher) if Path(a.teacher).is_dir() else Path(a.teacher).parent)
    teacher = load_teacher(path)
    data = load_dataset(a.dataset)
    t0 = time.time()
    res = dict(teacher={f'{f * 100:g}%': round(v, 2) for f, v in probe_accuracies(teacher, data, fractions).items()},
               random_init_same_arch={f'{f * 100:g}%': round(v, 2) for f, v in probe_accuracies(
                   init_model(teacher.arch, 0).eval(), data, fractions).items()},
               protocol='linear probe on frozen features (kdd_explore.probe: standardised features, full-batch L-BFGS, '
                        f'L2 1e-3), trained on a stratified {", ".join(f"{f * 100:g}%" for f in fractions)} (seed 0) '
                        f'of the {len(data.y_train):,} training labels, top-1 % on the full {len(data.y_test):,}-image '
                        f'test split of {a.dataset}',
               teacher_epoch=epoch or teacher.teacher_meta.get('epochs'), seconds=round(time.time() - t0, 1),
               provenance=provenance(__file__, argv, t0=t0))
    print(json.dumps(res, indent=1))
    if a.record:
        t, m = load_artifact(path)
        save_artifact(path, t, dict(m, probe=res))
        print(f"recorded in {path}.json")
    return res

if __name__ == '__main__': main()
