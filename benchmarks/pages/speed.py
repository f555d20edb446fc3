"""The pages on cost and determinism: how fast distillation is, one process against several, and whether the main job
gives the same table on every CPU (instruction-set pinning)."""
from __future__ import annotations
from kdd_explore.core import md_table
from .registry import study, pct

@study('distill-speed', 'How fast is distillation', "seconds and memory of the meta-gradient's modes against an "
                                                    "unrolled reference",
       files=dict(speed='benchmarks/results/distill_speed.json'),
       make='python benchmarks/speed/distill_speed.py (the commands of each run are on this page)',
       needs=dict(speed=['runs']))
def _speed(f):
    import plotly.graph_objects as go
    runs = [r for r in f['speed']['runs'] if r.get('rows') or r.get('checks')]
    newest = max(r['date'] for r in runs)
    out = [f"{f['speed']['what']}", f"Every run of {newest} (earlier runs, made under heavy load, stay in the file):"]
    fig = go.Figure()
    for r in (r for r in runs if r['date'] == newest):
        if r.get('rows'):
            out += [f"**`{r['command']}`** ({r['machine']}; {r.get('note', '')})",
                    md_table(['setting', 'implementation', 'syn_steps', 's / iteration', 'peak memory (MB)'],
                             [[x['config'], x['impl'], x['syn_steps'], f"{x['sec_per_iter']:.2f}",
                               f"{x['peak_rss_mb']:,.0f}"] for x in r['rows']])]
            for impl in dict.fromkeys(x['impl'] for x in r['rows'] if x['config'] == 'a'):
                pts = sorted((x['syn_steps'], x['sec_per_iter']) for x in r['rows'] if x['config']
                             == 'a' and x['impl'] == impl)
                if len(pts) > 1:
                    fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts],
                                             name=f"{impl} ({r['command'].split('--budget')[1].split()[0] + ' MB budget' if '--budget' in r['command'] else 'default budget'})",
                                             mode='lines+markers'))
        for ch in r.get('checks') or []:
            out.append(f"Real `distill` iterations, `{ch['config']}`: {ch['new_sec_per_iter']:.2f} s against "
                       f"{ch['today_sec_per_iter']:.2f} s before ({ch['speedup']:.2f}x); learned images within "
                       f"{ch['images_rel_diff']:.1e} relative, lr within {ch['lr_diff']:.0e}.")
    if fig.data:
        fig.update_layout(title='Setting (a): seconds per iteration against inner steps', xaxis_title='syn_steps',
                          yaxis_title='s / iteration', height=420)
        out.insert(2, fig)
    out.append("Every mode gives the same exact meta-gradient (checked against the unrolled graph in float64); the "
               "choice moves only seconds and megabytes. Lesson: `05b_metagrad`.")
    return out

@study('scaling', 'Across processes', 'one process against several single-thread processes: the experts, the '
                                      'distillation and the whole main job',
       files=dict(scaling='benchmarks/results/distributed_scaling.json',
                  procs='benchmarks/results/quickstart_time_procs.json'),
       make='python benchmarks/speed/distributed_scaling.py --json distributed_scaling.json; python '
            'benchmarks/speed/quickstart_time.py --json quickstart_time_procs.json',
       needs=dict(scaling=['experts', 'distill_b2', 'matching'], procs=['runs', 'tables_identical']))
def _scaling(f):
    s, p = f['scaling'], f['procs']
    def row(name, d):
        return [name, f"{d['one_process']['seconds']:.1f} s", f"{d['two_processes']['seconds']:.1f} s",
                f"{d['speedup']:.2f}x"]
    m = s['matching']
    runs = p['runs']
    stages = list(dict.fromkeys(k for r in runs for k in r['timings']))
    return ["The same commands run under `torchrun`; in one process nothing changes (lesson `00b_distributed`).",
            md_table(['', '1 process, 2 threads', '2 processes, 1 thread each (gloo)', 'speed-up'],
                     [row(f"the quickstart's experts stage ({s['experts']['one_process']['experts']})", s['experts']),
                      row(f"{s['distill_b2']['one_process']['iterations']} distillation iterations, B = 2",
                          s['distill_b2'])]),
            f"Matching loss over every expert and start, from {m['b1']['matching_loss_start']}: "
            f"{m['b1']['iterations']} iterations of B = 1 reach {m['b1']['matching_loss_end']}, "
            f"{m['b2']['iterations']} of B = 2 {m['b2']['matching_loss_end']}, and "
            f"{m['b1_same_stretches']['iterations']} of B = 1 (the same stretches one at a time) "
            f"{m['b1_same_stretches']['matching_loss_end']}.",
            '## The whole main job', md_table(['stage'] + [f"--procs {r['procs']} ({r['processes']} "
                                                           f"process{'es' if r['processes'] > 1 else ''})"
                                                           for r in runs],
                                              [[k] + [f"{r['timings'].get(k, 0):.1f}" for r in runs] for k in stages] +
                                              [['**wall (s)**'] + [f"**{r['wall_s']:.0f}**" for r in runs]]),
            f"Tables identical between the settings: {'yes' if p['tables_identical'] else 'no'}. On two cores the "
            "default stays one process."]

def diff_words(d:list, # rows that differ (`isa_pinning.py`'s `differences`)
               rows:int, # rows compared
              ) -> str:
    "'3 of 38 rows differ (mtt_ssl, transfer mkdt_high_loss); the largest difference of a mean: mtt_ssl at 5% labels, -0.8 points (one seed up to 1.8)'."
    if not d: return f"all {rows} rows identical"
    big = max(d, key=lambda x: abs(x['mean_diff']))
    where = list(dict.fromkeys(('' if x['part'] == 'results' else x['part'] + ' ') + x['method'] for x in d))
    return (f"{len(d)} of {rows} rows differ ({', '.join(where)}); the largest difference of a mean: "
            f"{'' if big['part'] == 'results' else big['part'] + ' '}{big['method']} at {pct(big['label_fraction'])} "
            f"labels, {big['mean_diff']:+.1f} points (one seed up to {big['max_seed_diff']:.1f})")

def isa_lines(files:dict, # path -> a file of `benchmarks/studies/isa_pinning.py`
              short:bool=False, # leave out the kernels each run used and the software versions (the README's lines)
             ) -> list[str]:
    "What was measured, in sentences: per file, pinned against unpinned on one machine (and the time cost), then across CPU kinds."
    out = []
    for path, d in sorted(files.items(), key=lambda kv: (kv[1]['config'] != 'quick', kv[0])):
        rs, t = d['runs'], d['runs'].get('unpinned', {}).get('dispatch', {}).get('torch', '?')
        cost = (f"; pinned took {rs['pinned']['wall_s']:.0f} s against {rs['unpinned']['wall_s']:.0f} s unpinned "
                f"({rs['pinned']['wall_s'] / rs['unpinned']['wall_s']:.2f}x)") if {'pinned',
                                                                                   'unpinned'} <= set(rs) else ''
        kern = ', '.join(f"{s}: ATen {r['dispatch'].get('aten')}, OpenBLAS "
                         f"{'/'.join(r['dispatch'].get('openblas') or ['?'])}" for s, r in rs.items())
        for k, v in d['same_machine'].items():
            how = f"{d['cpu']['model']}, torch {t}, {d['date']}" + ('' if short else f"; kernels {kern}")
            out.append(f"- **`{d['config']}` on {d['cpu_kind']}** ({how}), {k}: {diff_words(v, d['rows'])}{cost}"
                       + (f" ({d['note']})" if d.get('note') else '') + '.')
        for k, v in d.get('across', {}).items():
            out.append(f"- **`{d['config']}` across CPU kinds**, {k}: {diff_words(v, d['rows'])}" +
                       (f" ({d['versions']})" if d.get('versions') and not short else '') + '.')
    return out

ISA_FILES = 'benchmarks/results/isa_pinning_*.json'

@study('same-table', 'The same table on every CPU', "does the main job give the same results.json whatever instruction "
                                                    "set the CPU's kernels use? Measured pinned and unpinned",
       files=dict(runs=ISA_FILES), make='python benchmarks/studies/isa_pinning.py --config quick (and --config '
                                        'quickstart)',
       needs=dict(runs=['format', 'runs', 'same_machine', 'cpu_kind', 'config', 'machine', 'date', 'command', 'rows']))
def _same_table(f):
    pins = next((d['runs']['pinned']['env'] for d in f['runs'].values() if 'pinned' in d['runs']), {})
    out = ["PyTorch (ATen), oneDNN, MKL and OpenBLAS each pick their kernels by the CPU's widest vector "
           "instructions (AVX2, AVX-512, AMX), and kernels of different widths sum in different orders: the last bits "
           "of a result differ, and training amplifies them. `benchmarks/studies/isa_pinning.py` runs the job once "
           "with the libraries free to choose (*unpinned*) and once told to use AVX2 on any x86 CPU (*pinned*), each "
           "with one torch thread (the thread count changes sums too), and compares every row: the main table, the "
           "horizon check and transfer. Pinned means:",
           "```bash\n" + ' '.join(f'{k}={v}' for k, v in pins.items())
           + " OMP_NUM_THREADS=1 kdd-explore quickstart --out runs/quickstart\n```",
           '## Measured', '\n'.join(isa_lines(f['runs']))]
    summary = []
    for path, d in sorted(f['runs'].items(), key=lambda kv: (kv[1]['config'] != 'quick', kv[0])):
        rs = d['runs']
        summary.append([d['config'], d['cpu_kind'], d['machine'], d['date']]
                       + [f"{rs[s]['wall_s']:.0f} s" if s in rs else '' for s in ('unpinned', 'pinned')])
    out += [md_table(['config', 'CPU kind', 'machine', 'date', 'unpinned', 'pinned'], summary)]
    import plotly.graph_objects as go
    fig = go.Figure()
    for path, d in sorted(f['runs'].items()):
        for k, v in {**d['same_machine'], **d.get('across', {})}.items():
            name = (f"{d['config']}, {k}" if k.split(':')[0] in ('unpinned', 'pinned')
                    else f"{d['config']}, {d['cpu_kind']}, {k}")
            if v:
                fig.add_trace(go.Bar(name=name, x=[f"{'' if x['part'] == 'results' else x['part'] + ' '}{x['method']} "
                                                   f"{pct(x['label_fraction'])}"
                                                   + ('' if x['step'] is None else f" step {x['step']}") for x in v],
                                     y=[abs(x['mean_diff']) for x in v]))
    if fig.data:
        fig.update_layout(title='How far each differing row moved (|difference of the means|, points)',
                          barmode='group', height=480, yaxis_title='points', xaxis_tickangle=-45,
                          legend=dict(orientation='h', y=-0.6))
        out.append(fig)
    out.append('## The rows that differ')
    for path, d in sorted(f['runs'].items()):
        for k, v in {**d['same_machine'], **d.get('across', {})}.items():
            if v: out += [f"**`{d['config']}`, {d['cpu_kind']}, {k}**:",
                          md_table(['part', 'method', 'labels', 'step', 'first', 'second',
                                    'difference', 'largest single seed'],
                                   [[x['part'], x['method'], pct(x['label_fraction']),
                                     '' if x['step'] is None else x['step'], x['a'], x['b'], f"{x['mean_diff']:+.1f}",
                                     x['max_seed_diff']] for x in v])]
    out.append("**Reading.** Pinning makes an AVX-512 machine compute what an AVX2 machine computes for most rows, at "
               "the cost in time shown above; what it does not fix are the rows trained by SSL (`mtt_ssl`, whose "
               "Barlow Twins loss sums over the batch) and those of the SmallResNet (transfer, batch norm), and a "
               "different torch version moves rows too. A table is therefore quoted with its CPU kind, torch version "
               "and thread count, and differences of a few tenths in those rows are not findings.")
    return out
