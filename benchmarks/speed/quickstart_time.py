"""Wall time and per-stage timings of the main job, side by side in one session: `kdd-explore quickstart` in one process
(the old default, every core as torch threads) and in one single-thread process per core (`--procs`, the default now),
each in a fresh folder, and whether their tables agree: the measurement behind the README's quickstart section.

    python benchmarks/speed/quickstart_time.py                               # --procs 1 then --procs auto, full quickstart
    python benchmarks/speed/quickstart_time.py --quick                       # the toy-size variant (a check of the script)
    python benchmarks/speed/quickstart_time.py --procs 2 --json bench.json   # one setting only; the figures also as JSON

Run it on an otherwise idle machine: every stage's seconds are wall-clock. The run folders are fresh temporary ones
(`--out-root` to keep them), so no stage is read back from disk.
"""
from __future__ import annotations
import argparse, json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
from benchmarks.provenance import provenance

ROOT = Path(__file__).resolve().parents[2]

def run_once(procs:str, out:Path, quick:bool) -> dict:
    "One `kdd-explore quickstart --procs P` into `out`: its wall time, stage timings and results."
    cmd = [sys.executable, '-m', 'kdd_explore.cli', 'quickstart', '--out', str(out), '--procs', procs,
           '--quiet'] + (['--quick'] if quick else [])
    # each setting as a user gets it
    env = {k: v for k, v in os.environ.items() if k not in ('KDD_PROCS', 'OMP_NUM_THREADS')}
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.time() - t0
    if r.returncode: sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    res = json.loads((out/'results.json').read_text())
    return dict(procs=procs, command=' '.join(['kdd-explore'] + cmd[3:]), wall_s=round(wall, 1), timings=res['timings'],
                results=res['results'], transfer=res.get('transfer'), horizon=res.get('horizon'))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help="the toy-size 'quick' configuration")
    ap.add_argument('--procs', default='1,auto', help='the --procs settings to run, one after another '
                                                      '(default: 1,auto)')
    ap.add_argument('--out-root', default=None, help='where the run folders go (default: a fresh temporary folder)')
    ap.add_argument('--json', default=None, help='also write the figures to this JSON file')
    a = ap.parse_args(argv)
    t_start = time.time()
    from kdd_explore.cli import procs_arg, resolve_procs
    from kdd_explore.evaluate import results_table
    root = Path(a.out_root) if a.out_root else Path(tempfile.mkdtemp(prefix='kdd_quickstart_'))
    runs = []
    for p in a.procs.split(','):
        out = root/f'procs_{p}'
        if (out/'results.json').exists():
            sys.exit(f"{out} already holds a finished run: pass a new --out-root so every stage is timed.")
        runs.append(run_once(p, out, a.quick))
        n = resolve_procs(procs_arg(p), 'cpu')
        runs[-1]['processes'] = n
        print(f"--procs {p} ({n} process{'es' if n > 1 else ''}): {runs[-1]['wall_s'] / 60:.1f} min wall")
        print('  stages (s):', ', '.join(f'{k} {v:.1f}' for k, v in runs[-1]['timings'].items()))
    same = all(r['results'] == runs[0]['results'] for r in runs[1:])
    print(results_table(runs[-1]['results']))
    if len(runs) > 1:
        print(f"speed-up of the last setting over the first: {runs[0]['wall_s'] / runs[-1]['wall_s']:.2f}x; tables "
              f"identical: {same}")
        if not same:
            for r0, r1 in zip(runs[0]['results'], runs[-1]['results']):
                if r0 != r1: print(f"  {r0['method']}: {r0.get('accs')} -> {r1.get('accs')}")
    fig = dict(config='quick' if a.quick else 'quickstart', runs=runs, tables_identical=same,
               machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                            cpus=os.cpu_count()),
               provenance=provenance(__file__, argv, t0=t_start))
    if a.json: Path(a.json).write_text(json.dumps(fig, indent=1))

if __name__ == '__main__': main()
