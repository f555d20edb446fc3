"""The authors' distillation loop beside ours (issue 36, item 3).

`--reference PATH` is a local clone of the paper's code (https://github.com/jiayini1119/MKDT), a work tree or a git
directory without one; it is never copied into this project. Its files are copied (or `git archive`d) into a
temporary folder, small find/replace patches are applied there at run time (each listed, with why, in the output and
the results file), and their own `distill.py` runs through its script entry: their ReparamModule, their network, their
loss, their three SGD optimisers, every numeric choice theirs.

Check mode (the default): ONE outer iteration of their loop and of ours (`kdd_explore.distill.distill`, unmodified)
from the same state: the same expert stretch (start and target parameters), synthetic images, targets, learned lr
and the same minibatch indices at every inner step (ours, fed into theirs), in float64 on the CPU; then a second
iteration (the first SGD step's momentum buffer is the gradient itself; the second is where momentum 0.5 shows).
It compares the updated images, targets, lr and the matching loss, writes the figures to
`benchmarks/results/reference_equivalence.json` and their updated tensors to
`benchmarks/results/reference_equivalence.safetensors`, which `tests/test_reference_loop.py` holds our loop to without
the clone. The state is regenerated from `SEED` and `SETTINGS` (nothing else is stored).

Run mode (`--run`): their loop for N iterations on OUR experts and initial set at a recipe's settings
(`get_config(--config).distill_config()`, default `cifar10_cpu`), the experts exported in their replay-buffer format
(one trajectory per `replay_buffer_{k}.pt`, as their `buffer.py` records them; `--one-file` puts all K in one file),
their minibatch draws their own (split-and-pop), seeded; each save is written as our `SyntheticSet` artifact
(`OUT/synthetic_set`, and `OUT/saves/iter_{k}/synthetic_set`) so our evaluation reads it, with their per-iteration
losses, start epochs and the replay-buffer files their loop actually loaded.

    python benchmarks/reference_loop.py --reference /path/to/MKDT                 # check mode: writes the results files
    python benchmarks/reference_loop.py --reference /path/to/MKDT --no-write      # check mode, print only
    python benchmarks/reference_loop.py --reference /path/to/MKDT --run --experts runs/k_study/run/experts/experts \\
        --run-dir runs/k_study/run --iterations 1000 --save-every 100 --out runs/reference_run
    python benchmarks/reference_loop.py --reference /path/to/MKDT --run --experts runs/k_study/run/experts/experts \\
        --run-dir runs/k_study/run --iterations 1000 --save-every 100 --our-batches --out runs/reference_run_ours_batches
    python benchmarks/reference_loop.py --reference /path/to/MKDT --run --experts runs/k_study/run/experts/experts \\
        --run-dir runs/k_study/run --iterations 1000 --save-every 100 --one-file --out runs/reference_run_all_k
    python benchmarks/reference_loop.py --reference /path/to/MKDT --run --experts EXPERTS --init SYNSET \\
        --iterations 4 --out /tmp/ref_toy                                          # toy size (see the tests)

(`--our-batches`: their loop with our equal minibatches, isolating the one way their draws differ; `--one-file`: all
K experts in one buffer file, so their loop rotates through them, unlike the published runs.)

Run it with OMP_NUM_THREADS set (e.g. 1) on a shared machine. Check mode takes about 25 seconds on one core. Run mode
at cifar10_cpu's settings (100 images, width 32, syn_steps 10, batch_syn 32) takes about 1.8 s per iteration of their
loop on one shared core (measured on the k_study run's 4 experts, 5 iterations): 1,000 iterations in about half an hour.
Its set is read by our evaluation like any `SyntheticSet` (it keeps the starting set's `init_indices`).

Check mode's size is not the suggested 3x32x32 at width 8-16: their `ConvNet` at its own width 128 (no patch of their
network) on 3x16x16 images (their ConvNet takes `im_size`), so that their updated tensors, stored in float64, stay under
200 KB.
"""
from __future__ import annotations
import argparse, datetime, io, json, math, os, pickle, platform, shutil, subprocess, sys, tarfile, tempfile
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # kdd_explore without an install

REPO_URL = 'https://github.com/jiayini1119/MKDT'
REQUIRED = ('distill.py', 'reparam_module.py', 'networks.py', 'utils.py', 'buffer.py')
RESULTS = ROOT/'benchmarks'/'results'/'reference_equivalence.json'
TENSORS = RESULTS.with_suffix('.safetensors')

# check mode: the state both loops start from is regenerated from these (see `make_state`)
SEED = 36
SETTINGS = dict(n_images=20, image_shape=[3, 16, 16], target_dim=32, width=128, depth=3, expert_epochs_recorded=2,
                expert_steps_per_epoch=4, expert_lr=0.1, expert_noise=0.002,
                iterations=2, syn_steps=5, expert_epochs=2, max_start_epoch=1, batch_syn=8,
                lr_img=1000.0, lr_targets=1.0, lr_lr=1e-4, lr_init=0.1, momentum=0.5)
# float64 round-off: relative differences of the updates (new - old) well under this are equivalence
TOLERANCE = 1e-9
STORED_IMAGES_2 = 8  # images stored after iteration 2 (all 20 after iteration 1)


def die(msg:str):
    "Stop with one line naming what to do."
    raise SystemExit(f"reference_loop.py: {msg}")

# --- the reference clone -------------------------------------------------------------------------------------------

def _git(path, *args) -> str|None:
    try: r = subprocess.run(['git', '-C', str(path), *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired): return None
    return r.stdout.decode() if r.returncode == 0 else None

def check_reference(path) -> dict:
    "What `--reference` is: {'path', 'kind' ('tree' or 'git'), 'commit', 'dirty'}; stops with one line when it is missing or not the authors' repository."
    fix = f"pass the folder of `git clone {REPO_URL}`"
    if path is None: die(f"--reference PATH is required: {fix}.")
    p = Path(path).expanduser()
    if not p.exists(): die(f"--reference {p} does not exist: clone the authors' code first (git clone {REPO_URL} {p}) "
                           "and pass that path.")
    if not p.is_dir(): die(f"--reference {p} is a file, not a clone of jiayini1119/MKDT: {fix}.")
    if all((p/f).is_file() for f in REQUIRED): kind, read = 'tree', lambda f: (p/f).read_text(errors='replace')
    else:
        listing = _git(p, 'ls-tree', '--name-only', 'HEAD')
        have = set(listing.split()) if listing else set()
        if not all(f in have for f in REQUIRED):
            missing = [f for f in REQUIRED if not (p/f).is_file() and f not in have]
            die(f"--reference {p} is not a clone of jiayini1119/MKDT (it lacks {', '.join(missing)}): {fix}.")
        kind, read = 'git', lambda f: _git(p, 'show', f'HEAD:{f}') or ''
    src = read('distill.py')
    if 'project="MKDT"' not in src or 'ReparamModule' not in src or 'syn_lr' not in src:
        die(f"--reference {p} has a distill.py, but not the one of jiayini1119/MKDT (no wandb project \"MKDT\", "
            f"ReparamModule and syn_lr): {fix}.")
    commit = (_git(p, 'rev-parse', 'HEAD') or '').strip() or None
    dirty = bool((_git(p, 'status', '--porcelain') or '').strip()) if kind == 'tree' and commit else False
    return dict(path=str(p), kind=kind, commit=commit, dirty=dirty)

def copy_reference(ref:dict, dest:Path) -> Path:
    "Their files in `dest` (a work tree is copied without .git; a bare git directory is `git archive`d at HEAD)."
    dest.mkdir(parents=True, exist_ok=True)
    if ref['kind'] == 'tree':
        shutil.copytree(ref['path'], dest, ignore=shutil.ignore_patterns('.git'), dirs_exist_ok=True)
    else:
        r = subprocess.run(['git', '-C', ref['path'], 'archive', 'HEAD'], capture_output=True, timeout=300)
        if r.returncode: die(f"git archive failed in {ref['path']}: {r.stderr.decode()[-300:]}")
        with tarfile.open(fileobj=io.BytesIO(r.stdout)) as t: t.extractall(dest, filter='data')
    return dest

# --- the patches (find/replace in the temporary copy; every numeric choice stays theirs) ---------------------------

WANDB_STUB = '''"""kdd_explore patch: a stand-in for wandb (not installed here; the run logs nowhere)."""
class _Config:
    _items = {}
config = _Config()
def init(*args, config=None, **kwargs):
    globals()['config']._items = dict(vars(config)) if config is not None else {}
def log(*args, **kwargs): pass
def finish(*args, **kwargs): pass
'''

_DUMP = ("        if (it + 1) % int(os.environ['KDD_DUMP_EVERY']) == 0 or it + 1 == args.iters: "
         "torch.save(dict(images=image_syn.detach().clone(), labels=label_syn.detach().clone(), "
         "lr=syn_lr.detach().clone(), loss=grand_loss.detach().clone(), iteration=it + 1), "
         "os.path.join(os.environ['KDD_DUMP_DIR'], 'state_{}.pt'.format(it + 1)))  # kdd patch\n"
         "        open(os.path.join(os.environ['KDD_DUMP_DIR'], 'losses.txt'), 'a').write('{} {} {!r} {!r}\\n'.format("
         "it + 1, start_epoch, grand_loss.item(), syn_lr.item()))  # kdd patch\n")

PATCHES = [
    dict(name='wandb_stub', file='wandb.py', add=WANDB_STUB, modes=('check', 'run'),
         why="wandb is not installed and the run must log nowhere: an added wandb.py whose init(config=args) keeps "
             "the argparse values as wandb.config._items (which distill.py reads back into args); log/finish do "
             "nothing"),
    dict(name='no_pandas', file='utils.py', find='import pandas as pd\n', replace='', modes=('check', 'run'),
         why="pandas is not installed; only utils.ImageNet (a dataset class never used here) needs it"),
    dict(name='no_more_datasets', file='utils.py', find='from more_dataset import Aircraft, Cub2011, Dogs\n',
         replace='', modes=('check', 'run'),
         why="more_dataset imports pandas, filelock and download helpers for Aircraft/CUB/Dogs, used only by "
             "get_dataset, which the patched distill.py no longer calls"),
    dict(name='data_from_toolkit', file='distill.py',
         find='channel, im_size, _, dst_train, _ = get_dataset(dataset=args.dataset, data_path=args.data_path)',
         replace="_kdd_data = torch.load(os.path.join(args.data_path, 'kdd_train.pt')); channel, im_size = "
                 "_kdd_data['channel'], tuple(_kdd_data['im_size']); dst_train = [(x, 0) for x in "
                 "_kdd_data['images']]  # kdd patch",
         modes=('check', 'run'),
         why="no dataset download: their 'training set' is the toolkit's images (the starting set itself, so "
             "--image_init_idx_path holds 0..n-1 and --train_labels_path the starting targets), loaded from a file "
             "in --data_path; the loop builds images_all, image_syn and label_syn from it as before"),
    dict(name='no_cuda_save', file='distill.py', find='image_save = image_syn.cuda()',
         replace='image_save = image_syn.detach().clone()  # kdd patch', modes=('check', 'run'),
         why="the iteration-0 image save calls .cuda(), which fails without a GPU"),
    dict(name='float64', file='distill.py', find='from datetime import datetime\n',
         replace='from datetime import datetime\ntorch.set_default_dtype(torch.float64)  # kdd patch\n',
         modes=('check',),
         why="float64 everywhere: their network (hence ReparamModule's flat parameters), syn_lr = "
             "torch.tensor(lr_teacher) and the loss accumulators param_loss/param_dist = torch.tensor(0.0) are made "
             "in the default dtype (an in-place += into a float32 accumulator would round the loss to float32)"),
    dict(name='load_our_minibatches', file='distill.py', find='from datetime import datetime\n',
         replace="from datetime import datetime\n_KDD_BATCHES = torch.load(os.environ['KDD_BATCHES'])  # kdd patch\n",
         modes=('check', 'our_batches'),
         why="reads the minibatch indices our loop draws at every (iteration, inner step), once"),
    dict(name='our_minibatches', file='distill.py', find='these_indices = indices_chunks.pop()',
         replace="these_indices = _KDD_BATCHES[it][step]  # kdd patch", modes=('check', 'our_batches'),
         why="the same minibatch at every inner step: the indices our loop draws for (iteration, step) replace "
             "their indices_chunks.pop(); their randperm/split still runs, its chunks unused"),
    dict(name='seeded', file='distill.py', find='from datetime import datetime\n',
         replace="from datetime import datetime\n_kdd_seed = int(os.environ['KDD_SEED']); random.seed(_kdd_seed); "
                 "np.random.seed(_kdd_seed); torch.manual_seed(_kdd_seed)  # kdd patch\n",
         modes=('run',),
         why="a seeded run: their code never seeds random (file order, buffer order), numpy (start epochs) or torch "
             "(minibatch permutations)"),
    dict(name='no_clock_reseed', file='utils.py', find='torch.random.manual_seed(int(time.time() * 1000) % 100000)',
         replace='pass  # kdd patch: no clock reseed', modes=('run',),
         why="get_network reseeds torch's global generator from the clock on every iteration (utils.py, "
             "get_network, `if not fix_net`), which would make the minibatch permutations unrepeatable; the network "
             "it builds is never used (its parameters are replaced by the expert's flat parameters)"),
    dict(name='log_loaded_buffers', file='distill.py',
         find='buffer = torch.load(expert_files[file_idx], map_location="cpu")\n',
         replace='buffer = torch.load(expert_files[file_idx], map_location="cpu")\n'
                 "    open(os.path.join(os.environ['KDD_DUMP_DIR'], 'loaded_files.txt'), 'a').write("
                 "expert_files[file_idx] + '\\n')  # kdd patch\n",
         modes=('check', 'run'),
         why="records each replay-buffer file the loop loads (it loads one, before the loop)"),
    dict(name='dump_state', file='distill.py', find='        optimizer_lr.step()\n',
         replace='        optimizer_lr.step()\n' + _DUMP, modes=('check', 'run'),
         why="their updated images, targets (label_syn), lr and matching loss after the outer step, saved every "
             "KDD_DUMP_EVERY iterations and at the last (their own saves happen before an iteration's update, so "
             "images_{k}.pt holds the state after k-1 updates and the final update is never saved), and each "
             "iteration's loss, start epoch and lr in losses.txt"),
]

def apply_patches(dest:Path, *modes:str) -> list[dict]:
    "Apply the patches of `modes` to the copy in `dest`; stop if one no longer applies (their code changed)."
    done = []
    for p in PATCHES:
        if not set(modes) & set(p['modes']): continue
        f = dest/p['file']
        if 'add' in p:
            if f.exists(): die(f"patch {p['name']}: {p['file']} already exists in the reference copy.")
            f.write_text(p['add'])
        else:
            text = f.read_text()
            n = text.count(p['find'])
            if n != 1:
                die(f"patch {p['name']} no longer applies: {p['find']!r} occurs {n} times in {p['file']} (the reference "
                    "changed): update PATCHES in benchmarks/reference_loop.py.")
            f.write_text(text.replace(p['find'], p['replace']))
        done.append({k: p[k] for k in ('name', 'file', 'why')}
                    | ({'added': 'whole file (a stub)'} if 'add' in p else {'find': p['find'], 'replace': p['replace']}))
    return done

def run_reference(dest:Path, args:list, env:dict, log:Path) -> None:
    "Run their distill.py in `dest` with `args`; stop with the tail of its output when it fails."
    e = dict(os.environ, **env)
    e.pop('PYTHONPATH', None)  # their modules, not ours, from their folder
    e.setdefault('OMP_NUM_THREADS', '1')
    with open(log, 'w') as fh:
        r = subprocess.run([sys.executable, 'distill.py', *args], cwd=dest, env=e, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode:
        die(f"their distill.py failed (exit {r.returncode}); the end of its output: "
            + ' | '.join(log.read_text().strip().splitlines()[-6:]))

def reference_model(arch:dict) -> str:
    "Their `--model` for our student `arch`; stops when they have none that matches."
    from kdd_explore.kd import reference_padding
    c, h = arch['in_channels'], arch['im_size']
    if arch.get('name') != 'convnet' or arch.get('norm', 'instance') != 'instance':
        die(f"their loop has no model for {arch}: it needs an instance-norm ConvNet.")
    if arch.get('first_padding', 1) != reference_padding((c, h, h)):
        die(f"the student's first padding is {arch.get('first_padding', 1)}, their ConvNet uses "
            f"{reference_padding((c, h, h))} for {c}x{h}x{h} images: record experts with first_padding='reference'.")
    w, d = arch['width'], arch['depth']
    if w == 128 and d in (3, 4): return 'ConvNet' if d == 3 else 'ConvNetD4'
    if d == 3 and h == 32 and w in (32, 64, 256, 512, 1024): return f'ConvNetW{w}'  # these ignore im_size: 32x32 only
    die(f"their get_network has no ConvNet of width {w} and depth {d} for {h}x{h} images (ConvNet: 128 x 3, "
        "ConvNetD4: 128 x 4, ConvNetW32..W1024: depth 3 at 32x32).")

def write_inputs(folder:Path, images, targets, trajectories:list, names:list, one_file:bool=True) -> dict:
    "Their inputs in `folder`: data/kdd_train.pt, idx.pkl (0..n-1), labels.pt, experts/replay_buffer_{k}.pt."
    import torch
    (folder/'data').mkdir(parents=True, exist_ok=True); (folder/'experts').mkdir(exist_ok=True)
    torch.save(dict(images=images.detach().clone(), channel=int(images.shape[1]), im_size=list(images.shape[2:])),
               folder/'data'/'kdd_train.pt')
    with open(folder/'idx.pkl', 'wb') as f: pickle.dump(list(range(len(images))), f)
    torch.save(targets.detach().clone(), folder/'labels.pt')
    # their format: a file holds a list of trajectories, each a list of epochs, each a list of parameter tensors in
    # the network's parameters() order (ours: the same order, checked by name below); buffer.py writes one per file
    as_lists = [[[ep[n].detach().clone() for n in names] for ep in traj] for traj in trajectories]
    groups = [as_lists] if one_file else [[t] for t in as_lists]
    for k, g in enumerate(groups): torch.save(g, folder/'experts'/f'replay_buffer_{k}.pt')
    return dict(data=str(folder/'data'), idx=str(folder/'idx.pkl'), labels=str(folder/'labels.pt'),
                experts=str(folder/'experts'), files=len(groups))

def their_args(inp:dict, model:str, s:dict, iterations:int, lr_init:float) -> list:
    return ['--dataset', 'KDD', '--model', model, '--iters', str(iterations), '--eval_it', str(max(iterations, 1)),
            '--lr_img', repr(float(s['lr_img'])), '--lr_lr', repr(float(s['lr_lr'])), '--lr_teacher', repr(float(lr_init)),
            '--batch_syn', str(s['batch_syn']), '--data_path', inp['data'], '--expert_epochs', str(s['expert_epochs']),
            '--syn_steps', str(s['syn_steps']), '--max_start_epoch', str(s['max_start_epoch']),
            '--lr_labels', repr(float(s['lr_targets'])), '--image_init_idx_path', inp['idx'],
            '--train_labels_path', inp['labels'], '--run_id', 'kdd', '--expert_dir', inp['experts'],
            '--criterion', 'mse']

def check_names(arch:dict, names:list):
    "Our parameter order must be their ReparamModule's (named_parameters order of the same layers)."
    from kdd_explore.models import build_model
    ours = [n for n, _ in build_model(arch).named_parameters()]
    if ours != list(names): die(f"parameter order {list(names)} is not the model's {ours}.")
    convs = [n for n in ours if n.endswith('.weight') and n.startswith('body.')]
    # body.{4d} conv, body.{4d+1} norm: their features.{4d}, features.{4d+1} (conv, norm, act, pool per block)
    if any(int(n.split('.')[1]) % 4 not in (0, 1) for n in convs): die(f"unexpected layer layout {ours}.")

# --- check mode ----------------------------------------------------------------------------------------------------

def make_state(seed:int=SEED, s:dict=SETTINGS):
    "The state both loops start from: a float64 expert trajectory (KD SGD steps on the images from a seeded init, with a little noise), images, targets, lr."
    import torch
    from kdd_explore.core import derive_seed, make_generator
    from kdd_explore.kd import student_arch, Experts, kd_loss
    from kdd_explore.models import build_model, param_dict
    from kdd_explore.metagrad import model_forward
    from kdd_explore.distill import SyntheticSet
    g = make_generator(derive_seed(seed, 'reference_state'))
    n, shape, D = s['n_images'], tuple(s['image_shape']), s['target_dim']
    arch = student_arch(shape, D, width=s['width'], depth=s['depth'])
    model = build_model(arch, seed=derive_seed(seed, 'reference_init'))
    images = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    targets = 0.5 * torch.randn(n, D, generator=g, dtype=torch.float64)
    f = model_forward(model)
    theta = {k: v.detach().double().clone() for k, v in param_dict(model).items()}
    traj = [theta]
    for _ in range(s['expert_epochs_recorded']):
        for _ in range(s['expert_steps_per_epoch']):
            th = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
            gr = torch.autograd.grad(kd_loss(f(th, images), targets), list(th.values()))
            theta = {k: (v - s['expert_lr'] * gk).detach() for (k, v), gk in zip(th.items(), gr)}
        theta = {k: v + s['expert_noise'] * torch.randn(v.shape, generator=g, dtype=torch.float64)
                 for k, v in theta.items()}
        traj.append(theta)
    experts = Experts(arch, [traj], dict(objective='kd', source='reference_loop.make_state', seed=seed))
    syn = SyntheticSet(images, targets, torch.tensor(s['lr_init'], dtype=torch.float64), dict(arch=arch))
    return experts, syn

def our_config(s:dict=SETTINGS, iterations:int|None=None, mode:str='auto'):
    from kdd_explore.distill import DistillConfig
    return DistillConfig(iterations=iterations or s['iterations'], syn_steps=s['syn_steps'],
                         expert_epochs=s['expert_epochs'], max_start_epoch=s['max_start_epoch'],
                         batch_syn=s['batch_syn'], lr_img=s['lr_img'], lr_targets=s['lr_targets'], lr_lr=s['lr_lr'],
                         lr_init=s['lr_init'], momentum=s['momentum'], mode=mode, seed=SEED)

def our_batches(experts, syn, config, any_stretch:bool=False) -> list:
    "The minibatch indices our loop uses at every (iteration, inner step), drawn as `_distill_loop` draws them."
    from kdd_explore.distill import _stretch
    from kdd_explore.metagrad import minibatch_schedule
    out = []
    for j in range(config.iterations):
        g, k, s = _stretch(experts, config, j)
        if (k, s) != (0, 0) and not any_stretch:
            die(f"our iteration {j} draws expert {k}, start epoch {s}; the check needs 0, 0.")
        out.append(minibatch_schedule(len(syn), config.batch_syn, config.syn_steps, g))
    return out

def run_ours(experts, syn, iterations:int, mode:str='auto') -> dict:
    "Our loop (`distill`, unmodified) for `iterations` iterations: the set and the last iteration's loss."
    from kdd_explore.distill import distill
    res, hist = distill(experts, syn, our_config(iterations=iterations, mode=mode), progress=False)
    return dict(images=res.images, labels=res.targets, lr=res.lr, loss=hist.records[-1]['loss'],
                rolled_back=hist.records[-1]['rolled_back'])

def differences(ours:dict, theirs:dict, start) -> dict:
    "Max abs and relative differences of each updated tensor, of its update (new - start), and of the loss."
    import torch
    out = {}
    for k in ('images', 'labels', 'lr'):
        a, b, s0 = ours[k].double(), theirs[k].double(), start[k].double()
        d = (a - b).abs().max().item()
        du, ub = ((a - s0) - (b - s0)).abs().max().item(), (b - s0).abs().max().item()
        out[k] = dict(max_abs=d, max_rel=d / max(b.abs().max().item(), 1e-300), update_max_abs=ub,
                      update_max_rel=du / max(ub, 1e-300))
    la, lb = float(ours['loss']), float(theirs['loss'])
    out['loss'] = dict(ours=la, theirs=lb, abs=abs(la - lb), rel=abs(la - lb) / max(abs(lb), 1e-300))
    return out

def machine() -> dict:
    import torch
    return dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                python=platform.python_version(), torch=torch.__version__,
                threads=torch.get_num_threads())

def check(ref:dict, write:bool, keep:Path|None) -> dict:
    import torch
    from safetensors.torch import save_file
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    s = SETTINGS
    experts, syn = make_state()
    names = experts.names; check_names(experts.arch, names)
    model = reference_model(experts.arch)
    batches = our_batches(experts, syn, our_config())
    tmp = Path(tempfile.mkdtemp(prefix='mkdt_ref_'))
    try:
        dest = copy_reference(ref, tmp/'MKDT')
        patches = apply_patches(dest, 'check')
        inp = write_inputs(tmp/'inputs', syn.images, syn.targets, experts.trajectories, names)
        torch.save(batches, tmp/'inputs'/'batches.pt')
        (tmp/'dump').mkdir()
        run_reference(dest, their_args(inp, model, s, s['iterations'], s['lr_init']),
                      dict(KDD_BATCHES=str(tmp/'inputs'/'batches.pt'), KDD_DUMP_DIR=str(tmp/'dump'),
                           KDD_DUMP_EVERY='1'), tmp/'reference.log')
        theirs = {t: torch.load(tmp/'dump'/f'state_{t}.pt') for t in range(1, s['iterations'] + 1)}
        loaded = (tmp/'dump'/'loaded_files.txt').read_text().split()
        losses_txt = (tmp/'dump'/'losses.txt').read_text().splitlines()
    finally:
        if keep is not None: shutil.copytree(tmp, keep, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    start = dict(images=syn.images, labels=syn.targets, lr=syn.lr)
    rows = {}
    for t in range(1, s['iterations'] + 1):
        ours = run_ours(experts, syn, t)
        rows[f'after_{t}'] = differences(ours, theirs[t], start)
    worst = max(max(r[k]['update_max_rel'] for k in ('images', 'labels', 'lr')) for r in rows.values())
    worst_loss = max(r['loss']['rel'] for r in rows.values())
    result = dict(
        what="One (then a second) outer iteration of the authors' MKDT distillation loop (their distill.py, patched "
             "only as listed) and of ours (kdd_explore.distill.distill) from the same state, float64 on the CPU",
        command='python benchmarks/reference_loop.py --reference PATH_TO_MKDT_CLONE',
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'), machine=machine(),
        reference=dict(repository=REPO_URL, commit=ref['commit'], dirty=ref['dirty'], model=model),
        seed=SEED, settings=s,
        state=("regenerated by benchmarks/reference_loop.make_state(seed, settings): a seeded float64 student "
               "(kdd_explore.models.build_model(student_arch(...), seed=derive_seed(seed, 'reference_init'))), "
               "expert epochs 1..2 = expert_steps_per_epoch full-batch KD SGD steps on the images + expert_noise "
               "Gaussian noise; images ~ N(0,1), targets ~ 0.5 N(0,1) from derive_seed(seed, 'reference_state'); the "
               "stretch is epochs 0 -> 2 in both loops (max_start_epoch 1); the minibatches are ours "
               "(kdd_explore.metagrad.minibatch_schedule after _stretch's start-epoch draw) fed into theirs"),
        minibatches=[[b.tolist() for b in it] for it in batches],
        patches=patches,
        their_loaded_files=[Path(f).name for f in loaded], their_losses=losses_txt,
        differences=rows, worst_update_rel=worst, worst_loss_rel=worst_loss, tolerance=TOLERANCE,
        equivalent=bool(worst < TOLERANCE and worst_loss < TOLERANCE),
        tensors=TENSORS.name,
        stored=(f"{TENSORS.name}: their tensors after iteration 1 (all {s['n_images']} images, targets, lr, loss) and "
                f"after iteration 2 (targets, lr, loss, the first {STORED_IMAGES_2} images), float64"),
        notes=["momentum: their optimisers are torch.optim.SGD(momentum=0.5) on image_syn (lr_img), label_syn "
               "(lr_labels) and syn_lr (lr_lr), stepped every iteration (distill.py lines 77-79, 209-211); ours "
               "keeps buf = 0.5 buf + grad and steps x - lr buf, the same rule (torch's first step sets buf = grad); "
               "iteration 2 is where the momentum term enters",
               "minibatches differ in how they are DRAWN, not in the check (ours are fed into theirs): theirs split a "
               "permutation with torch.split(indices, batch_syn) and pop() from the END, so when batch_syn does not "
               "divide n the short remainder batch comes first in every pass (n=100, batch_syn=32 at cifar10_cpu: "
               "steps of 4, 32, 32, 32 images); ours cut each permutation into ceil(n/batch_syn) batches whose sizes "
               "differ by at most one (4 x 25), taken in order. With the mean-reduced MSE a 4-image batch gives 4 "
               "images the step's whole weight",
               "one trajectory: their buffer.py writes each expert to its own replay_buffer_{n}.pt (buffer.py lines "
               "37-71: `trajectories` is reset after every save), and their distill.py loads one file before the loop "
               "(distill.py line 102) and never again: when the one-trajectory buffer is used up it moves file_idx and "
               "reshuffles expert_files and the buffer it already has (lines 138-147; the MTT reload is gone, only its "
               "commented print is left at line 146), so every iteration matches buffer[0] of the first file, from "
               "start epoch np.random.randint(0, max_start_epoch) (line 149); their_loaded_files shows the one load, "
               "and run mode records it for K files",
               "their own saves (images_k.pt, labels_k.pt, synlr_k.pt) are written at the START of iteration k-1, "
               "before its update: images_k.pt holds the state after k-1 updates, and the final update is never "
               "saved (distill.py lines 117-126)"])
    print(json.dumps({k: result[k] for k in ('reference', 'differences', 'worst_update_rel', 'worst_loss_rel',
                                            'equivalent', 'their_loaded_files')}, indent=1))
    print('patches applied to their code (in a temporary copy):')
    for p in patches: print(f"  {p['name']} ({p['file']}): {p['why']}")
    if write:
        from kdd_explore.core import save_json
        save_json(RESULTS, result)
        # < 200 KB: every tensor after iteration 1; after iteration 2 the targets, lr, loss and the first
        # STORED_IMAGES_2 images (the second update is where momentum enters)
        flat = {f'after_{t}.{k}': theirs[t][k].detach().double().reshape(-1 if k in ('lr', 'loss') else
                                                                          theirs[t][k].shape).contiguous()
                for t in theirs for k in ('images', 'labels', 'lr', 'loss')}
        for t in theirs:
            if t > 1: flat[f'after_{t}.images'] = flat[f'after_{t}.images'][:STORED_IMAGES_2].contiguous()
        save_file(flat, str(TENSORS), metadata=dict(reference_commit=str(ref['commit']), seed=str(SEED)))
        os.chmod(TENSORS, 0o644)
        print(f"wrote {RESULTS.relative_to(ROOT)} and {TENSORS.relative_to(ROOT)}")
    return result

# --- run mode ------------------------------------------------------------------------------------------------------

def initial_from_run(run_dir:Path, dc, root=None):
    "The starting set our distillation of a pipeline run used: the high-loss images of RUN/subsets.json with their representations, lr = lr_init."
    import torch
    from kdd_explore.core import load_json, load_artifact
    from kdd_explore.data import load_dataset
    from kdd_explore.distill import SyntheticSet
    cfg = load_json(run_dir/'config.json')
    data = load_dataset(cfg['dataset'], root=root, n_train=cfg['n_train'], n_test=cfg['n_test'], seed=cfg['seed'],
                        **cfg.get('dataset_options', {}))
    x = data.normalize(data.x_train)
    reps = load_artifact(run_dir/'representations', expect={'kind': 'representations', 'n': len(x)})[0]['representations']
    idx = torch.tensor(load_json(run_dir/'subsets.json')['high_loss'])
    return SyntheticSet.from_real(x, reps, idx, lr=dc.lr_init, meta=dict(dataset=data.meta(), init='high_loss',
                                                                        run=str(run_dir)))

def run(ref:dict, a) -> dict:
    import torch
    from kdd_explore.core import save_json
    from kdd_explore.kd import Experts
    from kdd_explore.distill import SyntheticSet
    from kdd_explore.pipeline import get_config
    dc = get_config(a.config).distill_config()
    if a.iterations: dc.iterations = a.iterations
    if dc.momentum != 0.5: die(f"their loop's momentum is 0.5 (fixed); {a.config} has {dc.momentum}.")
    if dc.experts_per_iteration != 1: die("their loop matches one stretch per iteration; experts_per_iteration must be 1.")
    if not a.experts: die("--run needs --experts PATH (an experts artifact, e.g. RUN/experts/experts).")
    ex = Experts.load(a.experts)
    if a.init: syn = SyntheticSet.load(a.init)
    elif a.run_dir: syn = initial_from_run(Path(a.run_dir), dc, a.root)
    else: die("--run needs the starting set: --init SYNTHETIC_SET (an artifact) or --run-dir RUN (a pipeline run).")
    if syn.meta.get('arch') is not None: ex.check_arch(syn.meta['arch'], "starting set's student")
    last = dc.max_start_epoch - 1 + dc.expert_epochs
    if last > ex.n_epochs:
        die(f"their loop reads expert epochs up to {last} (max_start_epoch - 1 + expert_epochs); the experts have "
            f"0..{ex.n_epochs}.")
    names = ex.names; check_names(ex.arch, names)
    model = reference_model(ex.arch)
    s = dict(syn_steps=dc.syn_steps, expert_epochs=dc.expert_epochs, max_start_epoch=dc.max_start_epoch,
             batch_syn=dc.batch_syn, lr_img=dc.lr_img, lr_targets=dc.lr_targets, lr_lr=dc.lr_lr)
    out = Path(a.out).resolve(); out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix='mkdt_ref_run_'))
    try:
        dest = copy_reference(ref, work/'MKDT')
        patches = apply_patches(dest, 'run', *(['our_batches'] if a.our_batches else []))
        images, targets = syn.images.float().cpu(), syn.targets.float().cpu()
        inp = write_inputs(work/'inputs', images, targets, [[{n: v.float().cpu() for n, v in ep.items()} for ep in t]
                                                            for t in ex.trajectories], names, one_file=a.one_file)
        dump = out/'reference_dump'; shutil.rmtree(dump, ignore_errors=True); dump.mkdir()
        every = a.save_every or dc.iterations
        env = dict(KDD_SEED=str(a.seed), KDD_DUMP_DIR=str(dump), KDD_DUMP_EVERY=str(every))
        if a.our_batches:  # the minibatches our loop would draw with this seed (the start epochs stay their draws)
            import dataclasses
            ours = dataclasses.replace(dc, seed=a.seed)
            torch.save(our_batches(ex, syn, ours, any_stretch=True), work/'inputs'/'batches.pt')
            env['KDD_BATCHES'] = str(work/'inputs'/'batches.pt')
        run_reference(dest, their_args(inp, model, s, dc.iterations, float(syn.lr)), env, out/'reference.log')
    finally:
        shutil.rmtree(work, ignore_errors=True)
    losses = [l.split() for l in (dump/'losses.txt').read_text().splitlines()]
    loaded = [Path(f).name for f in (dump/'loaded_files.txt').read_text().split()]
    info = dict(what="the authors' distillation loop (their distill.py, patched only as listed) on our experts and "
                     "starting set", reference=dict(repository=REPO_URL, commit=ref['commit'], dirty=ref['dirty'],
                                                     model=model),
                config=a.config, settings=dict(s, iterations=dc.iterations, lr_init=float(syn.lr), seed=a.seed),
                experts=str(a.experts), n_experts=ex.n_experts, buffer_files=inp['files'],
                one_trajectory_per_file=not a.one_file, loaded_files=loaded,
                minibatches='ours (equal batches, fed in)' if a.our_batches else 'theirs (split and pop)',
                patches=[{k: p[k] for k in ('name', 'file', 'why')} for p in patches],
                date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'), machine=machine())
    saves = sorted(int(p.stem.split('_')[1]) for p in dump.glob('state_*.pt'))
    for k in saves:
        st = torch.load(dump/f'state_{k}.pt')
        res = SyntheticSet(st['images'].float(), st['labels'].float(), st['lr'].float(),
                           dict(syn.meta, arch=ex.arch, distilled='reference', iteration=k,
                                reference_commit=ref['commit'], config=dict(info['settings'], config=a.config)))
        res.save(out/'saves'/f'iter_{k}'/'synthetic_set')
        if k == saves[-1]: res.save(out/'synthetic_set')
    info.update(saves=saves, losses=[float(l[2]) for l in losses], start_epochs=[int(l[1]) for l in losses],
                lrs=[float(l[3]) for l in losses], synthetic_set=str(out/'synthetic_set'))
    save_json(out/'reference_run.json', info)
    print(f"their loop: {dc.iterations} iterations, loaded {loaded} of {inp['files']} buffer file(s); loss "
          f"{info['losses'][0]:.4f} -> {info['losses'][-1]:.4f}, lr {info['lrs'][-1]:.4g}; wrote {out/'synthetic_set'} "
          f"and {out/'reference_run.json'}")
    return info

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--reference', help=f"a local clone of {REPO_URL} (work tree or git directory)")
    p.add_argument('--no-write', action='store_true', help="check mode: print, do not write the results files")
    p.add_argument('--keep', help="check mode: copy the temporary folder (their patched code, inputs, dumps) here")
    p.add_argument('--run', action='store_true', help="run their loop for N iterations on our experts and set")
    p.add_argument('--experts', help="run mode: our experts artifact")
    p.add_argument('--init', help="run mode: the starting set (a synthetic_set artifact)")
    p.add_argument('--run-dir', help="run mode: or a pipeline run whose high-loss subset starts the set")
    p.add_argument('--root', help="run mode with --run-dir: the dataset folder")
    p.add_argument('--config', default='cifar10_cpu', help="run mode: the recipe whose distill settings to use")
    p.add_argument('--iterations', type=int, help="run mode: override the recipe's iterations")
    p.add_argument('--save-every', type=int, help="run mode: also save the set every this many iterations")
    p.add_argument('--seed', type=int, default=0, help="run mode: the seed of their random draws")
    p.add_argument('--one-file', action='store_true',
                   help="run mode: all experts in one replay-buffer file (their loop then rotates through all K; "
                        "default: one per file, as their buffer.py records, so their loop uses one trajectory)")
    p.add_argument('--our-batches', action='store_true',
                   help="run mode: feed their loop the minibatches our loop draws (equal batches) in place of their "
                        "split-and-pop draws, to isolate that difference (their start epochs and expert stay theirs)")
    p.add_argument('--out', help="run mode: output folder")
    a = p.parse_args(argv)
    ref = check_reference(a.reference)
    if a.run:
        if not a.out: die("--run needs --out FOLDER.")
        return run(ref, a)
    return check(ref, not a.no_write, Path(a.keep) if a.keep else None)

if __name__ == '__main__':
    main()
