"""Does the main job give the same `results.json` whatever instruction set the CPU's kernels use? Runs
`kdd-explore run --config CONFIG` once per setting, each in a fresh process and folder with one torch thread, and
compares the tables row by row: the measurement behind the site's page "The same table on every CPU".

    python benchmarks/studies/isa_pinning.py --config quick                    # the toy-size proxy (a few minutes)
    python benchmarks/studies/isa_pinning.py --config quickstart               # the main job, twice (20-50 minutes on one thread)
    python benchmarks/studies/isa_pinning.py --config quick --compare benchmarks/results/isa_pinning_quick_OTHER.json

Settings: `unpinned` (the kernels pick the widest instruction set the CPU has) and `pinned` (every library that
dispatches on the CPU told to use AVX2: ATen, oneDNN, MKL and OpenBLAS; see PINNED). Both run with
OMP_NUM_THREADS=1, since the thread count changes sums too. `--compare` adds another machine's file of the same
config to the comparison (runs of one setting across CPU kinds). The figures go to
benchmarks/results/isa_pinning_CONFIG_CPU.json (CPU: the processor's kind and its widest vector extension).
"""
from __future__ import annotations
import argparse, datetime, json, os, platform, re, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PINNED = {'ATEN_CPU_CAPABILITY': 'avx2',   # PyTorch's own vectorised kernels (element-wise, reductions, pooling, norms)
          'ONEDNN_MAX_CPU_ISA': 'AVX2',    # oneDNN: convolutions, their backward, matmuls it takes
          # MKL (torch's BLAS here): the same code path, so the same sums, on any x86 CPU
          'MKL_CBWR': 'AVX2',
          'OPENBLAS_CORETYPE': 'Haswell'}  # OpenBLAS (numpy, scipy: scikit-learn's k-means) at its AVX2 kernels
SETTINGS = {'unpinned': {}, 'pinned': PINNED}
FORMAT = 1  # the layout of the JSON this script writes (the site's page refuses another)

def cpu_info() -> dict:
    "The processor's model name and its vector extensions, from /proc/cpuinfo (Linux)."
    try: text = Path('/proc/cpuinfo').read_text()
    except OSError: return dict(model=platform.processor() or platform.machine(), flags=[])
    model = re.search(r'model name\s*:\s*(.+)', text)
    flags = set((re.search(r'flags\s*:\s*(.+)', text) or [None, ''])[1].split())
    vec = [f for f in ('avx', 'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16',
                       'amx_tile') if f in flags]
    return dict(model=model[1].strip() if model else platform.machine(), flags=vec, cores=os.cpu_count())

def cpu_kind(info:dict) -> str:
    "A short name of the CPU kind for file names: vendor and widest vector extension, e.g. 'amd-avx2', 'intel-avx512'."
    m = info['model'].lower()
    vendor = ('amd' if ('amd' in m or 'epyc' in m or 'ryzen' in m) else 'intel' if ('intel' in m or 'xeon' in m)
              else 'cpu')
    return f"{vendor}-{'avx512' if 'avx512f' in info['flags'] else 'avx2' if 'avx2' in info['flags'] else 'other'}"

def dispatch(env:dict) -> dict:
    "What the kernels pick under `env`, asked in a fresh process: ATen's capability and OpenBLAS's core."
    code = ("import json, torch, numpy, threadpoolctl\n"
            "b = [i.get('architecture') for i in threadpoolctl.threadpool_info() if i.get('internal_api') == "
            "'openblas']\nprint(json.dumps(dict(aten=torch.backends.cpu.get_cpu_capability(), openblas=sorted(set(b)), "
            "torch=torch.__version__)))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    return json.loads(r.stdout) if r.returncode == 0 else dict(error=r.stderr[-500:])

def run_once(config:str, setting:str, out:Path) -> dict:
    "One `kdd-explore run --config CONFIG` under `setting` into `out`: wall time, stage timings, the results."
    env = {k: v for k, v in os.environ.items() if k not in PINNED and k not in ('KDD_PROCS',)}
    env.update(SETTINGS[setting], OMP_NUM_THREADS='1', KDD_DEVICE='cpu')
    cmd = [sys.executable, '-m', 'kdd_explore.cli', 'run', '--config', config, '--out', str(out),
           '--procs', '1', '--quiet']
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.time() - t0
    if r.returncode: sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    res = json.loads((out/'results.json').read_text())
    pins = ' '.join(f'{k}={v}' for k, v in SETTINGS[setting].items())
    return dict(setting=setting, env=SETTINGS[setting], dispatch=dispatch(env),
                command=f"OMP_NUM_THREADS=1 {pins + ' ' if pins else ''}kdd-explore run --config {config} --out DIR",
                wall_s=round(wall, 1), timings=res['timings'], results=res['results'],
                transfer=res.get('transfer', []), horizon=res.get('horizon', []),
                synthetic_sets=res.get('synthetic_sets', {}))

def _key(r): return (r['method'], r['label_fraction']) + ((r['step'],) if 'step' in r else ())

def differences(a:dict, b:dict) -> list[dict]:
    "Rows of two runs that differ (results, transfer, horizon): the row, both values, and the largest difference of a seed."
    out = []
    for part in ('results', 'transfer', 'horizon'):
        rb = {_key(r): r for r in b.get(part, [])}
        for r in a.get(part, []):
            s = rb.get(_key(r))
            if s is None or s == r: continue
            seeds = max((abs(x - y) for x, y in zip(r.get('accs', []), s.get('accs', []))), default=0.0)
            out.append(dict(part=part, method=r['method'], label_fraction=r['label_fraction'], step=r.get('step'),
                            a=round(r['acc_mean'], 3), b=round(s['acc_mean'], 3),
                            mean_diff=round(s['acc_mean'] - r['acc_mean'], 3), max_seed_diff=round(seeds, 3),
                            kd_loss_diff=round(s.get('kd_loss_mean', 0) - r.get('kd_loss_mean', 0), 6)))
    return out

def n_rows(run:dict) -> int: return sum(len(run.get(p, [])) for p in ('results', 'transfer', 'horizon'))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--config', default='quick', help="the configuration run (default: quick; the main job: "
                                                      "quickstart)")
    ap.add_argument('--settings', default='unpinned,pinned',
                    help='the settings to run, one after another (default: unpinned,pinned)')
    ap.add_argument('--compare', action='append', default=[],
                    help="another machine's file from this script, same config: compared run by run")
    ap.add_argument('--out-root', default=None, help='where the run folders go (default: a fresh temporary folder)')
    ap.add_argument('--json', default=None, help='where to write the figures (default: '
                                                 'benchmarks/results/isa_pinning_CONFIG_CPU.json)')
    a = ap.parse_args(argv)
    bad = [s for s in a.settings.split(',') if s not in SETTINGS]
    if bad: sys.exit(f"isa_pinning.py: unknown setting(s) {bad}: choose from {', '.join(SETTINGS)}.")
    others = []
    for f in a.compare:
        p = Path(f)
        if not p.exists():
            sys.exit(f"isa_pinning.py: --compare {f}: no such file (make it on the other machine with this script).")
        o = json.loads(p.read_text())
        if o.get('format') != FORMAT or o.get('config') != a.config:
            sys.exit(f"isa_pinning.py: --compare {f} is not a format-{FORMAT} file of config {a.config!r} from "
                     "this script.")
        others.append(o)
    info = cpu_info()
    root = Path(a.out_root) if a.out_root else Path(tempfile.mkdtemp(prefix='kdd_isa_'))
    runs = {}
    for s in a.settings.split(','):
        out = root/s
        if (out/'results.json').exists():
            sys.exit(f"{out} already holds a finished run: pass a new --out-root so every stage runs.")
        runs[s] = run_once(a.config, s, out)
        print(f"{s}: {runs[s]['wall_s']:.0f} s wall ({runs[s]['dispatch']})", flush=True)
    names = list(runs)
    same_machine = {f'{x} vs {y}': differences(runs[x], runs[y]) for i, x in enumerate(names) for y in names[i + 1:]}
    across = {}
    for o in others:
        for s, r in runs.items():
            if s in o.get('runs', {}):
                across[f"{s}: {o['cpu_kind']} vs {cpu_kind(info)}"] = differences(o['runs'][s], r)
    for k, d in {**same_machine, **across}.items():
        print(f"{k}: {len(d)} of {n_rows(runs[names[0]])} rows differ" + ''.join(
            f"\n  {x['part']} {x['method']} "
            f"{x['label_fraction']:.0%}{'' if x['step'] is None else ' step ' + str(x['step'])}: {x['a']} -> {x['b']} "
            f"(seeds up to {x['max_seed_diff']})" for x in d))
    fig = dict(format=FORMAT, config=a.config, date=datetime.date.today().isoformat(),
               cpu=info, cpu_kind=cpu_kind(info), machine=f"{info['model']} ({', '.join(info['flags'])}), "
                                                          f"{info['cores']} cores, {platform.platform()}",
               command=' '.join(['python', 'benchmarks/studies/isa_pinning.py']
                                + (argv if argv is not None else sys.argv[1:])),
               runs=runs, rows=n_rows(runs[names[0]]), same_machine=same_machine, across=across)
    dest = Path(a.json) if a.json else ROOT/'benchmarks'/'results'/f'isa_pinning_{a.config}_{cpu_kind(info)}.json'
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(fig, indent=1) + '\n')
    print(f"wrote {dest}")

if __name__ == '__main__': main()
