"""MKDT's payoff at the paper's width on one GPU, inside one command's time (issue 36, item 5). Not yet run on a GPU.

    kdd-explore register cifar10_jpeg DIR --size 32        # once per machine (DIR: {train,test}/<class>/*.jpg)
    python benchmarks/gpu_payoff.py --json $OUT/gpu_payoff.json                      # a GPU machine: 520 s
    python benchmarks/gpu_payoff.py --device cpu --tiny --json /tmp/gpu_payoff.json  # toy size, CPU (the test)

On a lent machine (no network) the copy travels as `cifar10_jpeg.tar.gz`, as for `studies/supervised_gpu.py`:
`tar xzf cifar10_jpeg.tar.gz -C /tmp && kdd-explore register cifar10_jpeg /tmp/cifar10_jpeg --size 32` first, in its
own command (registering decodes the 60,000 JPEGs, outside this script's budget). Without the copy and without --tiny
the script stops with that instruction before any work. Run from the repo root, after `pip install -e .` or as is (the
script puts the repo and benchmarks/studies on sys.path).

The setting: the `cifar10_2pct` recipe (ConvNet width 128, depth 3; all 50,000 training images of the CIFAR-10 JPEG
q75 copy, `cifar10_jpeg`; a 1,000-image (2%) set started from the high-loss images; 40 inner steps of 256 images,
lr_img 1e3, lr_lr 1e-4), the shipped CIFAR teacher (`kdd_explore/assets/teacher_cifar10`), and
`distill.max_start_epoch=3` (as `cifar10_cpu`), so that each expert is the issue's four-epoch one: only the epochs the
loop reads (`k_study.record_short`). The stages, each stopped by its share of `--budget-s` (`--shares`: cumulative
deadlines from the script's start, so a stage that ends early hands its time on):

1. setup and representations (to 8%): data, teacher, its representations of the 50,000 images (one call, not
   stoppable: an overrun is said, `over_share`, and comes out of the later stages);
2. experts (to 48%): one pool expert is recorded and timed; from its seconds, as many of the `--experts` (100) pool
   experts and of the held-out ones (10% of the pool, at least 2; never matched) as the share holds; then the
   high-loss subset (`pipeline.get_subsets`, over every pool expert). K = 100 does not fit 520 s: gpu_check measured
   0.95 s a KD expert epoch over 50,000 images at width 128 on an H200 (benchmarks/results/gpu_check_h200.json), so
   100 x 4 epochs are ~380 s alone. Fewer are recorded, and `skipped` says how many;
3. distillation (to 72%): the matching loss on (at most 8 of) the fitted experts and on the held-out ones, then MKDT
   from the high-loss images in resumable segments (`kdd_explore.distill.distill`): the first times an iteration, the
   next ones take as many as fit; then the matching losses again. At most `--max-iterations` (the paper's 5,000);
4. evaluation (to the end): MKDT (the last iteration's set at its learned lr) against the random and the high-loss
   subsets of the same size, one seed at a time, every random choice of a seed shared by the three (the student's
   initialisation and minibatch order, the labelled subset); `--seeds` (10) as time allows. Findings: the paired
   differences with 95% Student-t intervals (`kdd_explore.evaluate.gap`, `gap_text`) at 1% and 5% labels; fewer than
   10 seeds is said (`powered`: false).

The evaluation's pre-training runs on the device (`pretrain_kd`'s steps, the student moved there); the probe is the
library's (`compare`: features on the device, the probe on the CPU). `--json` (default $OUT/gpu_payoff.json when $OUT
is set, else WORK/gpu_payoff.json) is rewritten atomically after every stage: each stage's seconds and deadline, what
was skipped, the findings and the provenance (command, device, torch, date, wall seconds); the distilled set is saved
beside it. The working files (representations, experts: ~11 MB an expert at width 128) go to `--work` (default: a new
folder in /tmp).
"""
from __future__ import annotations
import argparse, json, math, os, platform, sys, tempfile, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # kdd_explore without an install
sys.path.insert(0, str(ROOT/'benchmarks'/'studies'))  # the study scripts it reuses

STAGES = ('representations', 'experts', 'distillation', 'evaluation')
SHARES = (0.08, 0.48, 0.72)  # where the first three stages end, as shares of --budget-s (the evaluation ends at 1)
REGISTER = ("cifar10_jpeg (the CIFAR-10 JPEG q75 copy) is not registered here: register it first with "
            "`kdd-explore register cifar10_jpeg DIR --size 32` (DIR holds train/<class>/*.jpg and "
            "test/<class>/*.jpg), "
            "or pass --tiny for the toy run on fake data")
TINY = {'n_train': 300, 'n_test': 200, 'width': 8, 'syn_fraction': 0.05, 'expert_batch_size': 32,
        'eval_epochs': 2, 'eval_batch_size': 8, 'distill.syn_steps': 3, 'distill.batch_syn': 8}
FIXED = {'distill.max_start_epoch': 3,  # start epochs 0, 1, 2 + 2 expert epochs: the four-epoch experts
         'distill.checkpoint_every': 10**6, 'distill.snapshot_every': 100}  # a checkpoint at each segment's end
GPU_GRAPH_MB = 40_000  # keep the whole unrolled graph (29 GB here on the H200): 'full', ~10% faster than 'bounded'
MARGIN_S = 3.0  # left at the end for the last JSON
NOTES = ["one set, at the last iteration reached: no validation split chooses the iteration (k_study's rule needs "
         "several saves evaluated at validation seeds, which one command does not hold)",
         "the random and high-loss subsets pre-train at lr 0.1 and MKDT at its learned lr; the lr control "
         "(mkdt_initial_at_learned_lr, in k_study) is left out for time",
         "the first expert's and the first segment's seconds include the device's warm-up: the plans they make err "
         "towards fewer experts and iterations, and what a stage leaves goes to the next one"]

def prior_estimate(k:int, epochs:int) -> dict|None:
    "What gpu_check measured (benchmarks/results/gpu_check*.json: a KD expert epoch, 50,000 images, width 128), for `k` x `epochs`."
    for p in sorted((ROOT/'benchmarks'/'results').glob('gpu_check*.json')):
        f = json.loads(p.read_text())
        if 'expert_epoch_seconds' in f and not f.get('tiny'):
            return dict(source=str(p.relative_to(ROOT)), gpu=f.get('gpu'),
                        expert_epoch_seconds=f['expert_epoch_seconds'],
                        seconds_per_iteration=f.get('iteration_bounded', {}).get('seconds_per_iteration'),
                        experts_seconds=round(k * epochs * f['expert_epoch_seconds'], 1))
    return None

def plan_experts(n_fit:int, want:int, held_want:int|None) -> tuple[int, int]:
    "(pool experts K, held out H), K + H <= n_fit where it can: K up to `want`, H 10% of K, at least 2 (or `held_want`)."
    held = lambda k: held_want if held_want is not None else max(2, math.ceil(k / 10))
    k = want
    while k > 1 and k + held(k) > n_fit: k -= 1
    return k, held(k)

def kd_on(dev, arch, pset, epochs:int, batch_size:int):
    "An encoder factory as `evaluate.kd_method` (the same initialisation and minibatch order per seed), trained on `dev`."
    from kdd_explore.evaluate import kd_student
    from kdd_explore.kd import train_kd
    def make(seed):
        model = kd_student(arch, pset.targets.shape[1], seed).to(dev)
        train_kd(model, pset.images.to(dev), pset.targets.to(dev), epochs=epochs, lr=pset.lr, batch_size=batch_size,
                 seed=seed, progress=False)
        return model.eval().requires_grad_(False)
    return make

def main(argv=None):
    t0 = time.time()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--budget-s', type=float, default=520., help='seconds for everything, split by stage (default 520)')
    ap.add_argument('--json', default=None, help='where the results go (default $OUT/gpu_payoff.json when $OUT is set)')
    ap.add_argument('--device', default=None, help='default: cuda when available, else cpu')
    ap.add_argument('--tiny', action='store_true', help='fake 3x32x32 data, tiny widths and sizes: checks the script')
    ap.add_argument('--dataset', default='cifar10_jpeg')
    ap.add_argument('--teacher', default=str(ROOT/'kdd_explore'/'assets'/'teacher_cifar10'))
    ap.add_argument('--experts', type=int, default=None, help='pool experts wanted (default 100; --tiny 3)')
    ap.add_argument('--held-out', type=int, default=None,
                    help='held-out experts (default 10%% of the pool, at least 2)')
    ap.add_argument('--seeds', type=int, default=None, help='paired evaluation seeds wanted (default 10; --tiny 2)')
    ap.add_argument('--label-draws', type=int, default=1,
                    help='labelled subsets averaged per encoder (benchmarks/studies/paired_noise.py; as k_study)')
    ap.add_argument('--max-iterations', type=int, default=None, help="at most (default the preset's 5,000; --tiny 4)")
    ap.add_argument('--shares', default=','.join(map(str, SHARES)),
                    help='where representations, experts and distillation end, as shares of --budget-s (default '
                         f"{','.join(map(str, SHARES))}; the evaluation takes the rest)")
    ap.add_argument('--set', dest='settings', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--work', default=None, help='an empty or new folder for the working files (default: new in /tmp)')
    ap.add_argument('--quiet', action='store_true')
    a = ap.parse_args(argv)
    out_env = os.environ.get('OUT')
    want_k = a.experts or (3 if a.tiny else 100)
    want_seeds = a.seeds or (2 if a.tiny else 10)
    dataset = 'fake' if a.tiny else a.dataset
    from budget_study import need_dataset, study_config
    if not a.tiny:
        try: need_dataset(dataset)
        except SystemExit as e:
            sys.exit(f"{REGISTER}. ({e})" if dataset == 'cifar10_jpeg' else str(e))
    import torch
    from benchmarks.provenance import provenance
    from kdd_explore.core import KddError, derive_seed, get_device, save_json
    from kdd_explore.data import dataset_info, load_dataset
    from kdd_explore.distill import SyntheticSet, distill, matching_loss
    from kdd_explore.evaluate import PretrainSet, compare, gap, gap_text
    from kdd_explore.kd import cached_representations
    from kdd_explore.models import build_model
    from kdd_explore.pipeline import Run, get_config, get_subsets, get_teacher, load_probe_data
    from kdd_explore.recipes import Stages, parse_settings
    from k_study import HELD_OUT_SEED_KEY, first_k, last_tenth, record_short, short_epochs
    try:
        dev = get_device(a.device)
        gpu = {} if a.tiny or dev.type != 'cuda' else {'distill.memory_budget_mb': GPU_GRAPH_MB}
        changes = {**(TINY if a.tiny else {}), **FIXED, **gpu, 'teacher': a.teacher, **parse_settings(a.settings)}
        # distill.iterations: the most the time may give, the paper's 5,000 (--max-iterations)
        most = a.max_iterations or (4 if a.tiny else get_config('cifar10_2pct').distill['iterations'])
        cfg = study_config('cifar10_2pct', dataset, most, changes)
        cfg = cfg.check(dataset_info(cfg.dataset, seed=cfg.seed, **cfg.dataset_options))
    except KddError as e: sys.exit(str(e))
    dc = cfg.distill_config()
    max_it = dc.iterations
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix='gpu_payoff_'))
    if work.exists() and any(work.iterdir()): sys.exit(f"--work {work} is not empty: give an empty or new folder.")
    work.mkdir(parents=True, exist_ok=True)
    json_path = Path(a.json) if a.json else (Path(out_env)/'gpu_payoff.json' if out_env else work/'gpu_payoff.json')
    progress = not a.quiet
    say = lambda s: print(s, flush=True) if progress else None
    B = a.budget_s
    shares = [float(v) for v in a.shares.split(',')] + [1.0]
    if len(shares) != 4 or not all(p < q for p, q in zip([0.] + shares, shares)):
        sys.exit(f"--shares takes three increasing numbers between 0 and 1, got {a.shares!r}.")
    deadline = {name: t0 + share * B - (MARGIN_S if share == 1.0 else 0.) for name, share in zip(STAGES, shares)}
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = True
    E = short_epochs(dc)
    res = dict(kind='gpu_payoff', tiny=a.tiny, complete=False, dataset=dataset, config='cifar10_2pct',
               settings=changes, budget_s=B, budget_split={n: s for n, s in zip(STAGES, shares)},
               wanted=dict(experts=want_k, expert_epochs=E, seeds=want_seeds, iterations=max_it),
               prior_estimate=prior_estimate(want_k, E), stages={}, skipped=[], notes=NOTES,
               provenance=dict(provenance(__file__, argv),
                               device=str(dev), device_name=(torch.cuda.get_device_name(dev) if dev.type == 'cuda'
                                                             else platform.processor() or platform.machine()),
                               torch=torch.__version__, threads=torch.get_num_threads(), platform=platform.platform(),
                               cudnn_benchmark=dev.type == 'cuda',
                               started=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t0)), work=str(work)))
    def stage(name, seconds, **kw):
        end = deadline.get(name, deadline['representations'])  # setup counts in the representations' share
        res['stages'][name] = dict(seconds=round(seconds, 2), share_ends_at_s=round(end - t0, 1),
                                   ended_at_s=round(time.time() - t0, 1), over_share=time.time() > end, **kw)
        write()
    def skip(what):
        res['skipped'].append(what); say(f"skipped: {what}")
    def write():
        res['provenance']['wall_s'] = round(time.time() - t0, 1)
        save_json(json_path, res)
    if res['prior_estimate']:
        p = res['prior_estimate']
        say(f"{p['source']} ({p['gpu']}): {p['expert_epoch_seconds']} s a KD expert epoch -> {want_k} x {E} epochs "
            f"~{p['experts_seconds']} s, against the experts' share of {(shares[1] - shares[0]) * B:.0f} s")

    say('stages end at ' + ', '.join(f"{n} {d - t0:.0f} s" for n, d in deadline.items()) + f' (--budget-s {B:g})')

    # 1. setup and representations
    t = time.time()
    data = load_dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed, **cfg.dataset_options)
    probe = load_probe_data(cfg, data)
    x = data.normalize(data.x_train)
    teacher = get_teacher(cfg, work, dev, progress)
    setup_s = time.time() - t
    stage('setup', setup_s, n_train=len(x), n_test=len(data.y_test), teacher=cfg.teacher)
    t = time.time()
    reps = cached_representations(teacher, x.to(dev), work/'representations', {'dataset': data.meta()},
                                  progress=progress)
    x, reps = x.to(dev), reps.to(dev)
    arch = cfg.student(data.shape, reps.shape[1])
    run = Run(cfg, work, dev, Stages([]), data, probe, teacher, x, reps, arch, None, None, {}, {})
    stage('representations', time.time() - t, dim=reps.shape[1], arch=arch)
    say(f"setup {setup_s:.1f} s, representations {res['stages']['representations']['seconds']} s")

    # 2. experts: one timed, then as many as the share holds
    t = time.time()
    held_seed = derive_seed(cfg.seed, HELD_OUT_SEED_KEY)
    record_short(run, 1, work/'experts', cfg.seed, False)
    one = time.time() - t
    # each further pool expert: its E epochs, its share of the high-loss scoring (about a third of an epoch's work),
    # and its ~11 MB written once more at width 128
    per = one * (1 + 1 / (3 * E)) + 0.03
    n_fit = 1 + max(0, int((deadline['experts'] - time.time()) / per))
    k, h = plan_experts(n_fit, want_k, a.held_out)
    say(f"one {E}-epoch expert: {one:.2f} s -> {n_fit} experts fit the share: {k} pool + {h} held out")
    held = record_short(run, h, work/'held_out', held_seed, False)
    pool = record_short(run, k, work/'experts', cfg.seed, False)
    run.experts = pool
    t_sub = time.time()
    run.subsets = get_subsets(cfg, pool, x, reps, work)
    plan = dict(first_expert_s=round(one, 2), planned_per_expert_s=round(per, 3), fit=n_fit, pool=k, held_out=h,
                subsets_s=round(time.time() - t_sub, 2))
    if k < want_k:
        skip(f"experts: {k} of the {want_k} wanted {E}-epoch pool experts (and {h} held out): one took {one:.1f} s, "
             f"the experts' share of --budget-s held {n_fit}")
    stage('experts', time.time() - t, **plan, set_size=len(run.subsets['high_loss']))

    # 3. distillation in segments
    t = time.time()
    fitted = first_k(pool, min(k, 8))  # the matching loss on (at most 8 of) the fitted experts, as k_study
    syn0 = SyntheticSet.from_real(x, reps, run.subsets['high_loss'], lr=dc.lr_init,
                                  meta=dict(dataset=data.meta(), arch=arch, init='high_loss', n_experts=k))
    student = build_model(arch).to(dev)  # the loop's module (the parameters come from the experts and the unroll)
    def losses(syn):
        return dict(fitted=round(matching_loss(fitted, syn, dc, model=student), 4),
                    held_out=round(matching_loss(held, syn, dc, model=student), 4))
    tm = time.time(); start = losses(syn0); ml_s = time.time() - tm
    segments, done, syn, hist = [], 0, syn0, None
    while done < max_it:
        left = deadline['distillation'] - time.time() - ml_s  # the final matching losses are reserved
        if segments:
            per_it = max(s['seconds'] / s['iterations'] for s in segments[-1:])
            n = min(max_it, done + int(left / per_it))
            if n <= done: break
        else: n = min(max_it, 2 if a.tiny else 5)  # the first segment times an iteration (and warms up)
        ts = time.time()
        syn, hist = distill(pool, syn0, cfg.distill_config(iterations=n), out=work/'loop', progress=progress,
                            model=student)
        segments.append(dict(iterations=n - done, seconds=round(time.time() - ts, 2)))
        done = n
        if len(segments) >= 4: break
    end = losses(syn) if a.tiny or time.time() + ml_s <= deadline['distillation'] + 1 else None
    if done < max_it: skip(f"distillation: {done} of {max_it} iterations (the time of its share)")
    if end is None: skip("distillation: the final matching losses (no time left in its share)")
    set_path = json_path.parent/f'{json_path.stem}_set'  # the distilled set beside the JSON (12 MB at 1,000 images)
    syn.save(set_path)
    stage('distillation', time.time() - t, iterations=done, segments=segments,
          seconds_per_iteration=round(segments[-1]['seconds'] / segments[-1]['iterations'], 4),
          learned_lr=round(float(syn.lr), 5), matching_loss_start=start, matching_loss_end=end,
          matching_loss_seconds=round(ml_s, 2), loop_loss_last_tenth=last_tenth(hist.losses()),
          saved=str(set_path) + '.{json,safetensors}')
    say(f"distilled {done} iterations: lr {float(syn.lr):.4g}, matching loss {start} -> {end}")

    # 4. evaluation, one seed at a time
    t = time.time()
    xc, rc = x, reps
    kw = dict(epochs=cfg.eval_epochs, batch_size=cfg.eval_batch_size)
    hl, rnd = run.subsets['high_loss'], run.subsets['random']
    methods = {'mkdt_high_loss': kd_on(dev, arch, PretrainSet(syn.images.detach(), syn.targets.detach(),
                                                              float(syn.lr)), **kw),
               'random_subset': kd_on(dev, arch, PretrainSet(xc[rnd], rc[rnd]), **kw),
               'high_loss_subset': kd_on(dev, arch, PretrainSet(xc[hl], rc[hl]), **kw)}
    ev = dict(fractions=cfg.fractions, progress=False, protocol=cfg.probe_protocol, cache=work/'eval',
              label_draws=a.label_draws)
    seeds, per_seed = [], []
    for s in range(want_seeds):
        left = deadline['evaluation'] - time.time()
        if left <= (max(per_seed) if per_seed else (0 if a.tiny else 15.)): break
        ts = time.time()
        compare(methods, probe, seeds=(s,), **ev)
        per_seed.append(round(time.time() - ts, 2)); seeds.append(s)
        say(f"seed {s}: {per_seed[-1]} s")
    if len(seeds) < want_seeds:
        skip(f"evaluation: {len(seeds)} of {want_seeds} paired seeds (the time of its share)")
    found, rows = {}, []
    try: import scipy.stats; interval = 't'  # Student t needs scipy (with scikit-learn); else the torch-only bootstrap
    except ImportError: interval = 'bootstrap'
    if seeds:
        rows = compare(methods, probe, seeds=tuple(seeds), **ev)  # read back from the cache
        for name, b in (('vs_random', 'random_subset'), ('vs_high_loss', 'high_loss_subset')):
            found[name] = {str(f): dict(g, text=gap_text(g)) for f, g in gap(rows, 'mkdt_high_loss', b,
                                                                               interval=interval).items()}
            for f, g in found[name].items(): say(f"MKDT - {b} at {float(f):.0%} labels: {g['text']}")
    stage('evaluation', time.time() - t, seeds=seeds, seconds_per_seed=per_seed,
          methods=list(methods), fractions=list(cfg.fractions), probe_protocol=cfg.probe_protocol,
          label_draws=a.label_draws)
    res.update(rows=rows, findings=found, powered=len(seeds) >= 10,
               interval=('Student t' if interval == 't' else 'percentile bootstrap (no scipy here)')
               + ', 95%, over the paired seeds',
               set_size=len(hl), pool=len(x), complete=not res['skipped'])
    write()
    say(f"wrote {json_path} ({res['provenance']['wall_s']} s)")
    return res

if __name__ == '__main__': main()
