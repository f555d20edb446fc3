"""Wall time and per-stage timings of the main job, and the table it produces: the measurement behind the README's
quickstart section (issue 5's time goal: at most 10 minutes on the project's 2-core CPU machine).

    python benchmarks/quickstart_time.py                      # full quickstart into a fresh temporary folder
    python benchmarks/quickstart_time.py --quick              # the toy-size variant CI runs
    python benchmarks/quickstart_time.py --out runs/bench --json bench.json

The run folder must not hold finished stages, or their timings would be those of reading artifacts back: the script
refuses a folder that already has a `results.json`.
"""
from __future__ import annotations
import argparse, json, os, platform, sys, tempfile, time
from pathlib import Path

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help="the toy-size 'quick' configuration")
    ap.add_argument('--out', default=None, help='run folder (default: a fresh temporary one)')
    ap.add_argument('--json', default=None, help='also write the figures to this JSON file')
    a = ap.parse_args(argv)
    import torch
    from kdd_explore.pipeline import run_pipeline
    from kdd_explore.evaluate import results_table
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix='kdd_quickstart_'))
    if (out/'results.json').exists(): sys.exit(f"{out} already holds a finished run: pass a new --out so every stage is timed.")
    name = 'quick' if a.quick else 'quickstart'
    t0 = time.time()
    res = run_pipeline(name, out=out, progress=False)
    wall = time.time() - t0
    fig = dict(config=name, wall_s=round(wall, 1), timings=res['timings'],
               machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                            cpus=os.cpu_count(), torch_threads=torch.get_num_threads()),
               out=str(out))
    print(f"{fig['config']}: {wall / 60:.1f} min wall on {fig['machine']['cpus']} CPUs")
    print('stages (s):', ', '.join(f'{k} {v:.1f}' for k, v in res['timings'].items()))
    print(results_table(res['results']))
    if a.json: Path(a.json).write_text(json.dumps(dict(fig, results=res['results']), indent=1))

if __name__ == '__main__': main()
