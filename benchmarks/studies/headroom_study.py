"""Headroom before distillation: can this setting tell a good 2% set from a random one at all?

For each setting tried (pool size, student, teacher...), the recipe's stages up to the subsets run once (data, teacher
representations, KD experts, the random 2% subset), then three encoders are probed with 1% and 5% of the full training
split's labels over seeds 0, 1, 2: no pre-training, the random subset (KD pre-trained on it) and full-data KD (the
experts' last epoch, i.e. KD on the whole pool). The *headroom* is full-data KD minus the random subset in units of the
larger std: under about 4 stds the comparison of distilled sets cannot decide much, whatever the method.

    python benchmarks/studies/headroom_study.py --dataset cifar10_jpeg --config cifar10_cpu --teacher runs/teacher_cifar10_jpeg \
        --try n_train=5000 --try n_train=10000 --try n_train=5000,width=64 --out runs/headroom_cifar
    python benchmarks/studies/headroom_study.py --dataset fake --config quick --try n_train=600 --out runs/headroom_toy   # toy size

`--teacher` takes a teacher artifact, or a `kdd-explore teacher` folder: while that teacher is still training, its last
checkpoint is used (the epoch is recorded in each row). Resumable: each setting's run folder and its rows are read back.
Writes OUT/headroom.json (every row) and OUT/headroom.md (the table).
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
from benchmarks.provenance import provenance

METHODS = ('no_pretrain', 'random_subset', 'full_data_kd')

def teacher_path(src:str, study:Path) -> tuple[str, int|None]:
    "A teacher artifact for `src`: itself, a finished job's `teacher`, or one made from a training job's last checkpoint."
    from kdd_explore.core import artifact_exists, load_artifact
    from kdd_explore.models import build_model
    from kdd_explore.ssl import save_teacher
    p = Path(src)
    if artifact_exists(p): return str(p), None
    if artifact_exists(p/'teacher'): return str(p/'teacher'), None
    if not artifact_exists(p/'checkpoint'):
        sys.exit(f"No teacher at {src}: pass a teacher artifact, or the --out folder of `kdd-explore teacher` "
                 "(finished or training).")
    t, m = load_artifact(p/'checkpoint', expect={'kind': 'teacher_checkpoint'})
    model = build_model(m['config']['arch'])
    model.load_state_dict({k[len('backbone.'):]: v for k, v in t.items() if k.startswith('backbone.')})
    model.arch = m['config']['arch']
    dest = study/f"teacher_epoch{m['epoch']}"
    if not artifact_exists(dest):
        save_teacher(dest, model, dict(dataset=m['config']['dataset'], method=m['config']['method'], epochs=m['epoch'],
                                       note=f"made from the training checkpoint {p/'checkpoint'} at epoch {m['epoch']} "
                                            f"of {m['epochs']}"))
    return str(dest), m['epoch']

def parse_try(text:str) -> dict:
    "'n_train=5000,width=64' -> {'n_train': 5000, 'width': 64} (values read as JSON where they parse)."
    out = {}
    for item in filter(None, text.split(',')):
        k, _, v = item.partition('=')
        try: out[k.strip()] = json.loads(v)
        except ValueError: out[k.strip()] = v
    return out

def slug(changes:dict) -> str:
    return '_'.join(f'{k}{v}' for k, v in changes.items()).replace('.', 'p').replace(' ', '') or 'recipe'

def headroom_rows(cfg, out:Path, progress:bool=True) -> list[dict]:
    "Rows of `compare` for `METHODS` on `cfg`'s stages up to the subsets (cached in `out/headroom_rows.json`)."
    from kdd_explore.core import RunLock, load_json, save_json
    from kdd_explore.data import dataset_info, load_dataset
    from kdd_explore.evaluate import PretrainSet, compare, expert_encoder, kd_method, kd_student
    from kdd_explore.kd import cached_representations
    from kdd_explore.pipeline import get_experts, get_subsets, get_teacher, kd_eval_data, load_probe_data
    from kdd_explore.recipes import open_run
    path = out/'headroom_rows.json'
    if path.exists(): return load_json(path)['rows']
    cfg = cfg.check(dataset_info(cfg.dataset, seed=cfg.seed, **cfg.dataset_options))
    with RunLock(out):
        open_run(out, cfg, False)
        t0 = time.time()
        data = load_dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed, **cfg.dataset_options)
        probe = load_probe_data(cfg, data)
        x = data.normalize(data.x_train)
        teacher = get_teacher(cfg, out, 'cpu', progress)
        reps = cached_representations(teacher, x, out/'representations', {'dataset': data.meta()}, progress=progress)
        arch = cfg.student(data.shape, reps.shape[1])
        experts = get_experts(cfg, arch, x, reps, out, 'cpu', progress, dict(dataset=data.meta(), arch=arch))
        subsets = get_subsets(cfg, experts, x, reps, out)
        r, D = subsets['random'], reps.shape[1]
        methods = {'no_pretrain': lambda s: kd_student(arch, D, s).eval().requires_grad_(False),
                   'random_subset': kd_method(arch, PretrainSet(x[r], reps[r]), epochs=cfg.eval_epochs,
                                              batch_size=cfg.eval_batch_size),
                   'full_data_kd': lambda s: expert_encoder(experts, s % experts.n_experts)}
        rows = compare(methods, probe, cfg.fractions, cfg.seeds, progress=progress, protocol=cfg.probe_protocol,
                       kd_data=kd_eval_data(cfg, x, reps))
        save_json(path, dict(rows=rows, seconds=round(time.time() - t0, 1), arch=arch, n_pool=len(x), n_subset=len(r)))
    return rows

def summarize(setting:dict, rows:list[dict], teacher_epoch) -> list[dict]:
    "One line per label fraction: the three methods' mean ± std and the headroom in stds."
    from kdd_explore.evaluate import gap
    by = {(r['method'], r['label_fraction']): r for r in rows}
    g = gap(rows, 'full_data_kd', 'random_subset')
    return [dict(setting=setting, teacher_epoch=teacher_epoch, label_fraction=f,
                 **{m: [round(by[m, f]['acc_mean'], 2), round(by[m, f]['acc_std'], 2)] for m in METHODS},
                 headroom_points=g[f]['gap'], headroom_stds=g[f]['in_stds']) for f in sorted(g)]

def markdown(lines:list[dict]) -> str:
    head = ['setting', 'teacher epoch', 'label %'] + list(METHODS) + ['headroom (points)', 'headroom (stds)']
    out = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for l in lines:
        out.append('| ' + ' | '.join([', '.join(f'{k}={v}' for k, v in l['setting'].items()) or 'the recipe',
                                      str(l['teacher_epoch'] or 'final'), f"{l['label_fraction'] * 100:g}"]
                                     + [f'{l[m][0]:.1f} ± {l[m][1]:.1f}' for m in METHODS]
                                     + [f"{l['headroom_points']:+.1f}", f"{l['headroom_stds']}"]) + ' |')
    return '\n'.join(out)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--dataset', required=True, help='a dataset name (built-in or registered with `kdd-explore '
                                                     'register`)')
    ap.add_argument('--config', default='quickstart', help='the recipe the settings start from')
    ap.add_argument('--teacher', default=None, help="a teacher artifact or a `kdd-explore teacher` folder (default: "
                                                    "the recipe's)")
    ap.add_argument('--try', dest='tries', action='append', default=None,
                    help="settings to try, 'KEY=VALUE,KEY=VALUE' (repeat)")
    ap.add_argument('--out', required=True, help='study folder (one run folder per setting inside)')
    ap.add_argument('--quiet', action='store_true')
    a = ap.parse_args(argv)
    from kdd_explore.core import KddError, atomic_write_bytes, save_json
    from kdd_explore.pipeline import get_config
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    teacher, epoch = teacher_path(a.teacher, out) if a.teacher else (None, None)
    lines, t0 = [], time.time()
    for text in a.tries or ['']:
        changes = parse_try(text)
        try:
            cfg = get_config(a.config, dataset=a.dataset, distilled_baselines=(), transfer=None,
                             ablation=False, variance=False, horizon_steps=None,
                             **({'teacher': teacher} if teacher else {}), **changes)
        except KddError as e: sys.exit(f"--try {text!r}: {e}")
        folder = out/(slug(changes) + (f'_t{epoch}' if epoch else ''))
        lines += summarize(changes, headroom_rows(cfg, folder, progress=not a.quiet), epoch)
        save_json(out/'headroom.json', dict(lines=lines, dataset=a.dataset, config=a.config, teacher=teacher,
                                            provenance=provenance(__file__, argv, t0=t0)))
    md = markdown(lines)
    atomic_write_bytes(out/'headroom.md', (md + '\n').encode())
    print(md)
    return lines

if __name__ == '__main__': main()
