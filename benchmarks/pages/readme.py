"""The README's generated blocks: each block's text made from its results files (the main table, the same table on every
CPU, the K table, the supervised rows, the GPU lines and the list of studies), `update_readme` to rewrite them and
`check_readme` to fail, naming the file to regenerate from, when a block was edited by hand or its results changed.
`record_main_job` writes a finished run, with its provenance, as the main job's committed results."""
from __future__ import annotations
import glob, inspect, json, re
from pathlib import Path
from kdd_explore.core import md_table
from .registry import (MAIN_JOB, ROOT, STUDIES, Study, StudyError, findings_lines, load_study, pct, project_root,
                       run_table)
from .speed import ISA_FILES
from .supervised import pmv, supervised_published_table

_BEGIN, _END = '<!-- generated: {} (python -m benchmarks.pages readme; from {}) -->', '<!-- /generated: {} -->'

def wrap(text:str, # Markdown prose: paragraphs and list items, one per line
         width:int=120) -> str:
    "Prose lines wrapped at `width` (a list item's continuation indented under its text); tables and other lines kept whole."
    import textwrap
    out = []
    for line in text.split('\n'):
        if len(line) <= width or line.lstrip().startswith(('|', '#', '<', '`')): out.append(line); continue
        b = re.match(r'([-*] |\d+\. )?', line)[0]
        out += textwrap.wrap(line[len(b):], width, initial_indent=b, subsequent_indent=' ' * len(b),
                             break_long_words=False, break_on_hyphens=False)
    return '\n'.join(out)

def main_table_block(root:str|Path|None=None, # the project's folder
                    ) -> str:
    "The README's main table: the main job's probe table and findings, from `benchmarks/results/main_job.json`, with its command, machine and date."
    r = load_study(STUDIES['main-job'], root)['run']
    p = r['provenance']
    return wrap('\n'.join([f"Made by `{p['command']}` on {p['machine']}, {p['date']} ({p.get('wall_s', 0) / 60:.0f} "
                           "minutes). "
                      f"Linear-probe top-1 (%) with {' / '.join(pct(x) for x in r['config']['fractions'])} of the "
                      f"training labels, mean ± std over seeds {', '.join(map(str, r['config']['seeds']))}, and each "
                      "encoder's KD loss on the pool:", '',
                      run_table(r), '', *findings_lines(r['results'])]))

def study_link(s:Study, # a registered study
               root:str|Path|None=None, # the project's folder (default: this clone)
              ) -> str:
    "Where a link to study `s` points in the repository: its first results file (its page is made from it), else the file of its renderer."
    root = project_root(root)
    for rel in s.files.values():
        paths = sorted(glob.glob(str(root/rel))) if '*' in rel else [str(root/rel)]
        if paths and Path(paths[0]).exists(): return Path(paths[0]).relative_to(root).as_posix()
    return Path(inspect.getsourcefile(s.render)).resolve().relative_to(ROOT).as_posix()

def studies_block(root=None) -> str:
    "The README's list of studies: a table of one line each, linked to the results file its page is made from."
    return md_table(['study (its results file)', 'what it measures'],
                    [[f"[{s.title}]({study_link(s, root)})", s.summary] for s in STUDIES.values()])

def isa_table(files:dict, # path -> a file of `benchmarks/studies/isa_pinning.py`
             ) -> str:
    "One table row per comparison of the `isa_pinning` files: the job, the CPU kind(s), how many rows differ and the largest difference."
    rows = []
    for path, d in sorted(files.items(), key=lambda kv: (kv[1]['config'] != 'quick', kv[0])):
        rs = d['runs']
        cost = ((f"{rs['pinned']['wall_s']:.0f} s / {rs['unpinned']['wall_s']:.0f} s")
                if {'pinned', 'unpinned'} <= set(rs) else '')
        for where, comps, t in ((d['cpu_kind'], d['same_machine'], cost),
                                ('across CPU kinds', d.get('across', {}), '')):
            for k, v in comps.items():
                big = max(v, key=lambda x: abs(x['mean_diff'])) if v else None
                rows.append([f"`{d['config']}`", where, k, f"{len(v) or 'none'} of {d['rows']}",
                             f"{'' if big['part'] == 'results' else big['part'] + ' '}{big['method']} at "
                             f"{pct(big['label_fraction'])}: {big['mean_diff']:+.1f}" if big else '', t])
    return md_table(['job', 'where', 'comparison', 'rows that differ', 'largest difference of a mean (points)',
                     'time pinned / unpinned'], rows)

def same_table_block(root=None) -> str:
    "The README's table on the same results across CPU kinds: each comparison, how many rows differ and by how much, from the `isa_pinning` files."
    return isa_table(load_study(STUDIES['same-table'], root)['runs'])

def supervised_block(root=None) -> str:
    "The README's supervised rows: random real and distilled beside the published numbers, from the supervised study's file."
    s = load_study(STUDIES['supervised'], root)['s']
    p = s['provenance']
    return wrap(f"Made by `{p['command']}` on {p['machine']}, {p['date']}. Test top-1 (%) of a ConvNet trained on the "
                "set alone, mean ± std over seeds 0-4; the published rows are the "
                "papers' (DC: Zhao, Mopuri & Bilen, ICLR 2021; DSA: Zhao & Bilen, ICML 2021; MTT: Cazenavette et al., "
                "CVPR 2022):\n\n" + supervised_published_table(s))

def gpu_block(root=None) -> str:
    "The README's GPU lines, from the GPU check's files: two short lines (the page has the rest)."
    f = load_study(STUDIES['gpu'], root)
    c, s = f['check'], f['sup']
    worst = max(v for m in c['gradient_rel_error'].values() for v in m.values())
    b, fu, d = c['iteration_bounded'], c['iteration_full'], s['distill']
    return wrap('\n'.join([
        f"- `gpu_check.py` ({c['gpu']}, torch {c['torch']}): CUDA meta-gradients within {worst:.0e} of a float64 CPU "
        f"reference; at the `cifar10_2pct` scale an expert epoch takes {c['expert_epoch_seconds']:.2f} s and an "
        f"iteration {b['seconds_per_iteration']:.2f} s ({b['peak_mb'] / 1024:.1f} GB, bounded) or "
        f"{fu['seconds_per_iteration']:.2f} s ({fu['peak_mb'] / 1024:.0f} GB, full graph): {b['hours_for_5000']:.1f} h "
        "for 5,000 iterations.",
        f"- Supervised matching at MTT's CIFAR-10 setting (1 image per class, width 128, ZCA, DSA): random real images "
        f"{pmv(s['random_real'])}%; {d['iterations']:,} of 5,000 iterations fitted in the time left "
        f"({d['seconds_per_iteration']:.2f} s each), "
        + (f"distilled {pmv(s['distilled'])}%." if 'distilled' in s
           else "and the distilled set was not tested before the time ran out (partial).")]))

def payoff_block(root=None) -> str:
    "The README's K table: each K's chosen set against the random subset, the high-loss subset and its initial images, as paired intervals."
    from kdd_explore.report import k_study_table
    k = load_study(STUDIES['payoff'], root)['k']
    p = k['provenance']
    return wrap(f"Made by `{p['command']}` (distillation, then `--eval`; the authors' loop's row by "
                f"`benchmarks/reference_loop.py --run`) on {p['machine']}, {p['date']}. "
                f"`{k['config']}` on {k['dataset']} (CIFAR-10 as a JPEG q75 copy): a {k['set_size']}-image set from a "
                f"{k['pool']:,}-image pool, distilled on the first K of a pool of short experts; validation chooses each "
                f"K's iteration; test at seeds {k['test_seeds'][0]}-{k['test_seeds'][-1]} (paired); each finding the "
                f"mean paired difference in points with its 95% t interval, at 1% / 5% labels:") + '\n\n' + k_study_table(k)

BLOCKS = {'main-table': (main_table_block, MAIN_JOB), 'same-table': (same_table_block, ISA_FILES),
          'payoff': (payoff_block, 'kdd_explore/assets/k_study_cifar10_jpeg.json'),
          'supervised': (supervised_block, 'benchmarks/results/supervised_study.json'),
          'gpu': (gpu_block, 'benchmarks/results/gpu_check_h200.json, supervised_gpu_h200_partial.json'),
          'studies': (studies_block, 'the STUDIES of benchmarks/pages/')}

def readme_blocks(root:str|Path|None=None) -> dict:
    "name -> the generated text of each README block."
    return {k: f(root) for k, (f, _) in BLOCKS.items()}

def _block_re(name):
    return re.compile(r'(<!-- generated: ' + re.escape(name) + r' [^\n]*-->\n)(.*?)(<!-- /generated: '
                      + re.escape(name) + ' -->)', re.S)

def update_readme(path:str|Path|None=None, # the README (default: the project's)
                  root:str|Path|None=None, # the project's folder
                 ) -> list[str]:
    "Rewrite the README's generated blocks from the results; return the names of the blocks that changed."
    shown, changed = path or 'README.md', []  # messages name the README as given, else as README.md
    path = Path(path or project_root(root)/'README.md')
    text = path.read_text()
    for name, body in readme_blocks(root).items():
        m = _block_re(name).search(text)
        if not m:
            raise StudyError(f"{shown} has no generated block '{name}': put the two lines "
                             f"{_BEGIN.format(name, BLOCKS[name][1])} and {_END.format(name)} where it goes.")
        if m[2] != body + '\n': changed.append(name)
        text = text[:m.start()] + _BEGIN.format(name, BLOCKS[name][1]) + '\n' + body + '\n' + m[3] + text[m.end():]
    path.write_text(text)
    return changed

def check_readme(path:str|Path|None=None, # the README (default: the project's)
                 root:str|Path|None=None, # the project's folder
                ):
    "Raise `StudyError` naming the results file to regenerate from when a generated block of the README differs from what the results give."
    shown, path = path or 'README.md', Path(path or project_root(root)/'README.md')
    text = path.read_text()
    for name, body in readme_blocks(root).items():
        m = _block_re(name).search(text)
        if not m:
            raise StudyError(f"{shown}: the generated block '{name}' is missing (its marker lines were removed); put "
                             "them back and run: python -m benchmarks.pages readme")
        if m[2] != body + '\n':
            raise StudyError(f"{shown}: the block '{name}' differs from what {BLOCKS[name][1]} gives: it was edited by "
                             f"hand, or the results changed. Regenerate it from {BLOCKS[name][1]}: python -m "
                             "benchmarks.pages readme")

def record_main_job(results:str|Path, # a finished run's `results.json`
                    command:str, # the command that made it, as a user would type it
                    machine:str, # the machine it ran on, in words (CPU kind, cores, threads)
                    date:str, # the day it ran (YYYY-MM-DD)
                    wall_s:float|None=None, # the seconds it took
                    dest:str|Path|None=None, # where to write it (default: the main job's file, `MAIN_JOB`)
                   ) -> Path:
    "Write a run's `results.json` with its provenance as the main job's committed results (the README's table and the main job's page read it)."
    r = json.loads(Path(results).read_text())
    r['provenance'] = {k: v for k, v in dict(command=command, machine=machine, date=date,
                                             wall_s=wall_s).items() if v is not None}
    dest = Path(dest or ROOT/MAIN_JOB)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(r, indent=1) + '\n')
    return dest
