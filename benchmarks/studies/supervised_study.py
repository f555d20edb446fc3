"""Supervised trajectory matching on this CPU: the published rows reproduced, and what the student and the settings do.

    python benchmarks/studies/supervised_study.py --out runs/supervised_study                      # every row (hours on one thread)
    python benchmarks/studies/supervised_study.py --out runs/supervised_study --rows base,depth4   # some rows
    python benchmarks/studies/supervised_study.py --out runs/sup_toy --tiny                         # toy size (what the tests run)
    python benchmarks/studies/supervised_study.py --out runs/supervised_study --rows 10ipc_pool55k --recipe-on-val  # the recipe on its images
    torchrun --standalone --nproc_per_node 2 benchmarks/studies/supervised_study.py --out runs/supervised_study \
        --rows c10_1ipc_width64 --experts-only   # only the row's experts, shared across 2 processes (then run the row)

Each row is one `kdd_explore.supervised.supervised_job` run (experts, distillation, tests) in OUT/<row>, resumable, and
the rows are collected into OUT/supervised_study.json (copied to benchmarks/results/ by hand when a study is shipped).
Rows with the same expert settings reuse one recording of the experts (copied into the row's folder once the folder
is opened for the row's recipe). The factor rows change one setting of `base`
(Fashion-MNIST, 1 image per class: the depth-3 student padded as the reference code, MTT's experts with DSA, 20 inner
steps, fixed labels) at a time, and are read at 300 iterations (the base row saves at 100, 300 and 500: 300 is where it
has settled, and it saves 40% of each row's time). Every Fashion-MNIST row is read on a validation split (5,000 training images outside the
5,000-image pool, which needs the full training files: `apt-get install dataset-fashion-mnist` on Debian, or
torchvision's download); the test split is reported beside it. A row with a larger pool holds out other validation
images (those outside its pool): for it (`CROSS_VAL`) the recipe's set is tested again on the row's validation images,
with the same seeds, so that its `val - recipe` compares the same images. The CIFAR-10 row reads the registered JPEG q75 copy
(`kdd-explore register cifar10_jpeg /tmp/cifar10_jpeg --size 32`).
"""
from __future__ import annotations
import argparse, dataclasses, json, platform, shutil, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
from benchmarks.provenance import cpu_name, provenance

# the factor rows: read on validation, at 300 iterations (the base row saves at 100, 300 and 500)
V = dict(n_val=5000, saves=(300,))
B = dict(n_val=5000)  # the published rows: saves at 100, 300, 500
ROWS = {  # name -> (recipe, changes, what the row changes from `base`)
    'base': ('fashion_mnist_1ipc', dict(B), 'the row that works: depth 3 padded, MTT experts (lr 0.01, no momentum), '
                                            '20 steps, fixed labels, DSA'),
    'depth4': ('fashion_mnist_1ipc', dict(V, depth=4, first_padding=1),
               "the quickstart's student: depth 4, no padding (a 1x1 map of 32 features)"),
    'experts_momentum': ('fashion_mnist_1ipc', dict(V, expert_momentum=0.9), 'experts with momentum 0.9 (lr 0.01)'),
    'experts_lr0.1': ('fashion_mnist_1ipc', dict(V, expert_lr=0.1, distill={'lr_init': 0.1}),
                      'experts at lr 0.1 without momentum (inner lr starts at 0.1)'),
    'experts_kd_recipe': ('fashion_mnist_1ipc', dict(V, expert_lr=0.1, expert_momentum=0.9, expert_weight_decay=1e-4,
                                                     distill={'lr_init': 0.1}),
                          "the KD recipe's experts: lr 0.1, momentum 0.9, weight decay 1e-4 (inner lr starts at 0.1)"),
    'steps10': ('fashion_mnist_1ipc', dict(V, distill={'syn_steps': 10}), '10 inner steps'),
    'steps50': ('fashion_mnist_1ipc', dict(V, distill={'syn_steps': 50}), '50 inner steps'),
    'learned_labels': ('fashion_mnist_1ipc', dict(V, distill={'learn_labels': True, 'lr_targets': 1.0}),
                       'learned labels (lr 1)'),
    'no_dsa': ('fashion_mnist_1ipc', dict(V, augment=None), 'no DSA anywhere (experts, inner steps, test)'),
    'fashion_mnist_10ipc': ('fashion_mnist_10ipc', dict(B), '10 images per class'),
    'cifar10_1ipc': ('cifar10_1ipc', dict(dataset='cifar10_jpeg'), 'CIFAR-10 (JPEG q75 copy), 1 image per class, ZCA'),
    # factor rows at 10 images per class (issue 38): one change from fashion_mnist_10ipc each, read at 300 iterations
    '10ipc_lr_img1e5': ('fashion_mnist_10ipc', dict(V, distill={'lr_img': 1e5}),
                        '10 images per class: lr_img 1e5 (1e4 in the recipe; MTT raises it as the set grows)'),
    '10ipc_start5': ('fashion_mnist_10ipc', dict(V, distill={'max_start_epoch': 5}),
                     '10 images per class: max_start_epoch 5 (10 in the recipe): only the experts\' early epochs'),
    '10ipc_steps10': ('fashion_mnist_10ipc', dict(V, distill={'syn_steps': 10}),
                      '10 images per class: 10 inner steps (20 in the recipe)'),
    '10ipc_lr_img3e4': ('fashion_mnist_10ipc', dict(V, distill={'lr_img': 3e4}),
                        '10 images per class: lr_img 3e4 (1e4 in the recipe; 1e5 diverged)'),
    '10ipc_experts32': ('fashion_mnist_10ipc', dict(V, n_experts=32),
                        '10 images per class: 32 experts (8 in the recipe; MTT records 100)'),
    '10ipc_start20': ('fashion_mnist_10ipc', dict(V, expert_epochs=22, distill={'max_start_epoch': 20}),
                      "10 images per class: max_start_epoch 20 (10 in the recipe; the experts record 22 epochs): "
                      "later, longer stretches of the experts' training"),
    '10ipc_pool55k': ('fashion_mnist_10ipc', dict(V, n_train=55000),
                      '10 images per class: the experts train on 55,000 images (5,000 in the recipe; the papers use '
                      'all 60,000, less the 5,000 held out here for validation, so its validation images differ '
                      "from the recipe's: the recipe's set is tested again on them)"),
    '10ipc_width64': ('fashion_mnist_10ipc', dict(V, width=64),
                      '10 images per class: width 64 (32 in the recipe; the papers: 128), experts, set and tests'),
    # CIFAR-10 at 1 per class (issue 38 item 2): no validation split (the pool is the whole training split), so each
    # row's headline is fixed in advance: its last save. The 500 save repeats the published row's last one.
    'c10_1ipc_it2000': ('cifar10_1ipc', dict(dataset='cifar10_jpeg', saves=(500, 1000, 2000)),
                        'CIFAR-10 1 per class: 2,000 iterations (500 in the recipe); headline: the last save'),
    'c10_1ipc_experts32': ('cifar10_1ipc', dict(dataset='cifar10_jpeg', saves=(500, 1000, 2000), n_experts=32),
                           'CIFAR-10 1 per class: 32 experts and 2,000 iterations (8 and 500 in the recipe)'),
    'c10_1ipc_width64': ('cifar10_1ipc', dict(dataset='cifar10_jpeg', width=64),
                         'CIFAR-10 1 per class: width 64 (32 in the recipe; MTT: 128), experts, set and tests; '
                         'headline: the last save (500)'),
}
# rows whose validation split is not their recipe's (a larger pool leaves other images outside it): the recipe's set at
# the row's save is tested again on the row's validation images, so that `val - recipe` compares the same images
CROSS_VAL = {'10ipc_pool55k': 'fashion_mnist_10ipc'}
TINY = dict(n_train=400, n_val=0, n_test=500, n_experts=2, expert_epochs=3, saves=(4,), eval_epochs=20,
            eval_seeds=(0, 1), distill={'syn_steps': 4})
EXPERT_KEYS = ('dataset', 'n_train', 'width', 'depth', 'first_padding', 'n_experts', 'expert_epochs',
               'expert_lr', 'expert_momentum', 'expert_weight_decay', 'expert_batch_size', 'augment', 'zca', 'seed')

def row_recipe(name:str, tiny:bool=False):
    "The recipe of row `name` (at toy size with `tiny`)."
    from kdd_explore.supervised import supervised_recipe
    base, changes, _ = ROWS[name]
    changes = dict(changes)
    if tiny:
        changes = dict(changes, **{k: v for k, v in TINY.items() if k != 'distill'},
                       distill=dict(changes.get('distill', {}), **TINY['distill']))
        if changes.get('dataset') == 'cifar10_jpeg': changes['dataset'] = 'fake'
        if supervised_recipe(base, **ROWS[name][1]).config().max_start_epoch > 2:  # the toy experts record 3 epochs
            changes['distill'] = dict(changes['distill'], max_start_epoch=2)
    return supervised_recipe(base, **changes)

def find_experts(out:Path, name:str, recipe) -> tuple|None:
    "(row, experts it holds) of another row's finished recording of the same experts as `recipe`'s (the first of them, or more), or None."
    same = [k for k in EXPERT_KEYS if k != 'n_experts']
    key = json.loads(json.dumps({k: getattr(recipe, k) for k in same}))
    # expert k derives from the root seed, so a recording's first experts are any shorter one's: the most useful
    # (up to the K needed), then the smallest to copy; the job keeps the first K of a larger one
    best = None  # ((experts it gives, -experts it holds), row)
    for other in ROWS:
        src = out/other/'experts'
        # a finished recording (experts.json is written once every expert is), and the recipe its folder holds: the
        # run's results, or the folder's claim (config.json) where only --experts-only ran there
        got = [f for f in (out/other/'results.json', out/other/'config.json') if f.exists()]
        if other == name or not (src/'experts.json').exists() or not got: continue
        theirs = json.loads(got[0].read_text())
        theirs = theirs['recipe'] if got[0].name == 'results.json' else theirs
        n = theirs.get('n_experts', 0)
        score = (min(n, recipe.n_experts), -n)
        if {k: theirs.get(k) for k in same} == key and (best is None or score > best[0]): best = (score, other)
    return None if best is None else (best[1], -best[0][1])

def reuse_experts(out:Path, name:str, recipe, dest:Path|None=None):
    "Copy a finished recording of the same experts (`find_experts`) from another row's folder into `dest` (default: the row's `experts`), so that none is recorded twice."
    dest = dest or out/name/'experts'
    if (dest/'experts.json').exists(): return
    found = find_experts(out, name, recipe)
    if found is None: return
    other, n = found
    dest.mkdir(parents=True, exist_ok=True)
    for f in ('experts.json', 'experts.safetensors'): shutil.copy2(out/other/'experts'/f, dest/f)
    print(f"{name}: experts reused from {other}" + (f" (the first {n} of {recipe.n_experts}; the rest are "
                                                   "recorded)" if n < recipe.n_experts else
                                                   f" (the first {recipe.n_experts} of its {n})"
                                                   if n > recipe.n_experts else ''), flush=True)

def record_row_experts(out:Path, # the study folder
                       name:str, # a row
                       recipe, # its recipe
                       device:str='cpu', # where to compute
                      ):
    "Only row `name`'s experts, recorded into its folder as its run records them (under torchrun: shared across the ranks, so that they take 1/N of the time), for the row's run to read back."
    from kdd_explore.core import save_json
    from kdd_explore.distributed import barrier, dist_info, init_distributed, is_main, running
    from kdd_explore.supervised import _split, open_supervised_run, record_supervised_experts, supervised_arch
    t, dev = time.time(), init_distributed(device)
    if is_main():  # the folder is claimed for the row's recipe, as its run claims it, before any expert is written
        open_supervised_run(out/name, recipe)
        reuse_experts(out, name, recipe)
    barrier()
    (x, y), _, _, info = _split(recipe, False)
    data = info['data']
    # the arguments of the run's experts stage (`supervised_job`): the run reads these experts back only when their
    # recorded settings equal its own, and refuses them (saying which differ) otherwise
    arch = supervised_arch(data.shape, data.n_classes, recipe.width, recipe.depth, recipe.first_padding)
    ex = record_supervised_experts(arch, x.to(dev), y.to(dev), recipe.n_experts, recipe.expert_epochs,
                                   recipe.expert_lr, recipe.expert_batch_size, recipe.expert_momentum,
                                   recipe.expert_weight_decay, recipe.augment, recipe.zca, recipe.seed,
                                   out=out/name/'experts', progress=False, meta={'dataset': data.meta()})
    if is_main():  # the run reads them back and does not count them: its page adds each call's time (times processes)
        # each finished call adds its wall time (a call cut short records none: its experts are kept, its time not)
        calls = (experts_only(out, name) or {}).get('calls', [])
        call = dict(seconds=round(time.time() - t, 1), processes=dist_info().world_size if running() else 1)
        save_json(out/name/'experts_only.json', dict(calls=calls + [call]))
    return ex

def experts_only(out:Path, name:str) -> dict|None:
    "What `record_row_experts` recorded of row `name`'s experts (each call's wall time and processes), or None."
    f = out/name/'experts_only.json'
    return json.loads(f.read_text()) if f.exists() else None

def recipe_on_row_val(out:Path, # the study folder
                      name:str, # a row of `CROSS_VAL`
                      row, # its recipe
                      base, # the recipe it changes one setting of (`CROSS_VAL[name]`'s)
                      device:str='cpu', # where to compute
                     ) -> dict:
    "The recipe's set at the row's save tested again with the same seeds, on the row's validation images (in the recipe's own normalisation): the other half of the row's paired `val - recipe`; cached in the row's folder."
    import torch
    from kdd_explore.core import save_json
    from kdd_explore.distill import SyntheticSet
    from kdd_explore.supervised import _split, evaluate_set, open_supervised_run, supervised_job
    f = out/name/'recipe_on_val.json'
    if f.exists(): return json.loads(f.read_text())
    at = max(row.saves)
    base = dataclasses.replace(base, saves=(at,))
    # the recipe's row folder when it holds that save, else the recipe distilled again (to the row's save) in the row's
    folder = out/CROSS_VAL[name] if name in CROSS_VAL else None
    if folder is None or not (folder/f'set_{at}.json').exists() or not (folder/'results.json').exists():
        folder = out/name/'recipe_set'
        open_supervised_run(folder, base)
        reuse_experts(out, name, base, dest=folder/'experts')
        print(f"{name}: the recipe's set distilled again to {at} iterations in {folder}", flush=True)
        supervised_job(base, folder, device=device, progress=False)
    done = json.loads((folder/'results.json').read_text())
    _, _, (xt, yt), binfo = _split(base, False)
    _, val, _, rinfo = _split(row, False)
    if val is None: sys.exit(f"Row {name} has no validation split (n_val=0): there is nothing to test the recipe on.")
    def raw(x, info):  # the images in [0, 1], as the dataset stores them
        return info['data'].denormalize(info['zca'].inverse(x) if info['zca'] is not None else x)
    xv = binfo['data'].normalize(raw(val[0], rinfo))
    if binfo['zca'] is not None: xv = binfo['zca'](xv)
    # the row's validation images must lie outside the recipe's pool too (its experts never saw them)
    key = lambda x: {bytes(im) for im in (x * 255).round().to(torch.uint8).flatten(1).numpy()}
    shared = len(key(raw(val[0], rinfo)) & key(binfo['data'].x_train))
    syn = SyntheticSet.load(folder/f'set_{at}', device=device)
    ev = evaluate_set(syn.images, syn.targets, syn.lr, done['arch'], xt.to(device), yt, base.eval_seeds,
                      base.eval_epochs, augment=base.augment, val=(xv.to(device), val[1]))
    got = dict(save=str(at), folder=str(folder), lr=ev['lr'], val=ev['val'],
               # the same test networks as the recipe's published run: the page compares them seed for seed
               test={k: ev[k] for k in ('accuracies', 'mean', 'std')},
               val_images=len(val[1]), val_images_in_recipe_pool=shared)
    save_json(f, got)
    print(f"{name}: the recipe's set on the row's validation images: {got['val']['mean']:.2f} ± {got['val']['std']:.2f} "
          f"(test {got['test']['mean']:.2f})", flush=True)
    return got

def set_png(folder:Path, recipe, res:dict) -> dict:
    "The distilled images at the chosen save and the random real images they started from, as base64 PNG grids (one row per class), to show."
    import base64, io
    import torch
    from PIL import Image
    from kdd_explore.distill import SyntheticSet
    from kdd_explore.supervised import _split, set_labels
    (x, y), _, _, info = _split(recipe, False)
    syn = SyntheticSet.load(folder/f"set_{res['chosen']}")
    init = torch.as_tensor(syn.meta['init_indices']).long()
    def show(im):  # back to pixel space, each image stretched to [0, 1] (distilled pixels leave the data's range)
        im = info['data'].denormalize(info['zca'].inverse(im) if info['zca'] is not None else im)
        lo, hi = im.flatten(1).min(1).values.view(-1, 1, 1, 1), im.flatten(1).max(1).values.view(-1, 1, 1, 1)
        return (im - lo) / (hi - lo).clamp_min(1e-8)
    def grid(images):
        lab, ipc = set_labels(syn), min(recipe.ipc, 10)
        # C x (ipc H) x W per class
        cols = [torch.cat(list(images[lab == c][:ipc]), 1) for c in range(int(lab.max()) + 1)]
        g = (torch.cat(cols, 2) * 255).round().byte()  # C x (ipc H) x (classes W): one column per class
        img = Image.fromarray(g[0].numpy() if g.shape[0] == 1 else g.permute(1, 2, 0).numpy())
        img = img.resize((img.width * 3, img.height * 3), Image.NEAREST)
        buf = io.BytesIO(); img.save(buf, format='PNG')
        return base64.b64encode(buf.getvalue()).decode()
    return dict(distilled=grid(show(syn.images.cpu())), initial=grid(show(x[init])), classes=list(info['data'].classes),
                iteration=int(res['chosen']), layout='one column per class (in class order), the first 10 images of '
                                                     'each class below each other, each stretched to its own range, 3x '
                                                     'enlarged')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', required=True, help='the study folder (one sub-folder per row; resumable)')
    ap.add_argument('--rows', default=','.join(ROWS), help=f"comma-separated rows (default: all): {', '.join(ROWS)}")
    ap.add_argument('--tiny', action='store_true',
                    help='every row at toy size (a check that the study runs, not a result)')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--machine', default=None, help='how to name the machine in the results (default: the CPU model '
                                                    'and cores)')
    ap.add_argument('--collect', action='store_true', help="only collect the rows' finished folders into "
                                                           "OUT/supervised_study.json (images included)")
    ap.add_argument('--recipe-on-val', action='store_true',
                    help="only test the recipe's set on the rows' own validation images (rows with a larger pool: "
                         f"{', '.join(CROSS_VAL)}), without running the rows; the row's run does it too when it ends")
    ap.add_argument('--experts-only', action='store_true',
                    help="only record the rows' experts (under torchrun --nproc_per_node N: shared across N processes); "
                         "the row's run then reads them back")
    a = ap.parse_args(argv)
    import torch
    from kdd_explore.supervised import supervised_job, open_supervised_run
    names = [r.strip() for r in a.rows.split(',') if r.strip()]
    bad = [r for r in names if r not in ROWS]
    if bad: sys.exit(f"Unknown rows {bad}. Known: {', '.join(ROWS)}.")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    study_file = out/'supervised_study.json'
    study = json.loads(study_file.read_text()) if study_file.exists() else {}
    study.update(kind='supervised_study', machine=dict(platform=platform.platform(),
                                                       processor=cpu_name(), torch=torch.__version__,
                                                       threads=torch.get_num_threads()), tiny=a.tiny)
    study['provenance'] = dict(provenance(__file__, argv),
                               note="the rows run one at a time with --rows ROW (each row's command is under rows); "
                                    "--collect gathers them")
    if a.machine: study['provenance']['machine'] = a.machine
    study.setdefault('rows', {})
    if a.experts_only:
        from kdd_explore.distributed import is_main
        for name in names:
            ex = record_row_experts(out, name, row_recipe(name, a.tiny), a.device)
            if is_main(): print(f"{name}: {len(ex.trajectories)} experts in {out/name/'experts'}", flush=True)
        return study
    if a.recipe_on_val:
        for name in names:
            if name not in CROSS_VAL: print(f"{name}: validated on the recipe's own images, nothing to do"); continue
            recipe = row_recipe(name, a.tiny)
            if recipe.n_val: recipe_on_row_val(out, name, recipe, row_recipe(CROSS_VAL[name], a.tiny), a.device)
            else: print(f"{name}: no validation split at this size (n_val=0), nothing to do")
        return study
    if a.collect:  # no run: each finished row's results.json, with its images
        from kdd_explore.core import save_json
        for name in names:
            f = out/name/'results.json'
            if not f.exists() or not json.loads(f.read_text()).get('complete'):
                print(f"{name}: not finished, left out"); continue
            res, old = json.loads(f.read_text()), study['rows'].get(name, {})
            if (out/name/'recipe_on_val.json').exists():
                old = dict(old, recipe_on_val=json.loads((out/name/'recipe_on_val.json').read_text()))
            if pre := experts_only(out, name): old = dict(old, experts_only=pre)
            study['rows'][name] = dict(old, what=ROWS[name][2], recipe_name=ROWS[name][0], results=res,
                                       images=set_png(out/name, row_recipe(name, a.tiny), res),
                                       command=old.get('command',
                                                       f"python benchmarks/studies/supervised_study.py --out {a.out} "
                                                       f"--rows {name}"),
                                       date=old.get('date', time.strftime('%Y-%m-%d',
                                                                          time.localtime(f.stat().st_mtime))))
        save_json(study_file, study); return study
    for name in names:
        recipe = row_recipe(name, a.tiny)
        # the row's folder is claimed for its recipe (another recipe's run there is refused, and nothing is copied
        # into it) before experts are copied in
        open_supervised_run(out/name, recipe)
        reuse_experts(out, name, recipe)
        t = time.time()
        print(f"== {name}: {ROWS[name][2]}", flush=True)
        res = supervised_job(recipe, out/name, device=a.device, progress=False)
        study['rows'][name] = dict(what=ROWS[name][2], recipe_name=ROWS[name][0], results=res,
                                   wall_seconds=round(time.time() - t, 1), images=set_png(out/name, recipe, res),
                                   threads=torch.get_num_threads(),
                                   command=f"python benchmarks/studies/supervised_study.py --out {a.out} --rows {name}"
                                   + (' --tiny' if a.tiny else ''),
                                   date=time.strftime('%Y-%m-%d'))
        if pre := experts_only(out, name): study['rows'][name]['experts_only'] = pre  # recorded before the run
        if name in CROSS_VAL and recipe.n_val:
            study['rows'][name]['recipe_on_val'] = recipe_on_row_val(out, name, recipe, row_recipe(CROSS_VAL[name], a.tiny),
                                                                     a.device)
        from kdd_explore.core import save_json
        save_json(study_file, study)
        last = res['saves'][res['chosen']]
        print(f"{name}: random real {res['random_real']['test']['mean']:.1f}, distilled {last['test']['mean']:.1f} ± "
              f"{last['test']['std']:.1f} (val {last.get('val', {}).get('mean', float('nan')):.1f}), lr "
              f"{last['learned_lr']}, matching loss {res['matching_loss_start']} -> {last['matching_loss']}, "
              f"{time.time() - t:.0f} s", flush=True)

if __name__ == '__main__': main()
