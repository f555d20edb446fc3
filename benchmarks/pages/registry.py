"""The study pages' machinery: a study is its results files and a renderer; `load_study` reads and checks the files,
`study_page` turns them into a page (Markdown with plotly figures), naming the command, machine and date each file
records.

Helpers shared by the renderers (the `mean ± std` of a row, percentages, the findings of a run) are here too."""
from __future__ import annotations
import glob, json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from kdd_explore.core import KddError, mean_std

ROOT = Path(__file__).resolve().parents[2]  # the clone: benchmarks/pages/registry.py
MAIN_JOB = 'benchmarks/results/main_job.json'  # the main job's results.json, with the command, machine and date

class StudyError(KddError):
    "A study's results file is missing or of an older format, or the README differs from what its results give: the message says which file and what to run."

@dataclass
class Study:
    "A study page: its results files and the renderer that turns them into Markdown and plotly figures."
    slug:str # the page's name: `studies/<slug>.html` on the site
    title:str # the page's title
    summary:str # one line: what it measures (the README's list of studies, the studies' index)
    files:dict # name -> results file, relative to the project root; a pattern with `*` loads every match (at least one)
    make:str # the command that (re)makes the files
    render:Callable # the loaded files (name -> JSON; name -> {path: JSON} for a pattern) -> a list of Markdown strings and plotly figures
    needs:dict=field(default_factory=dict) # name -> top-level keys the renderer reads (missing: an older format)
    optional:tuple=() # names of patterns that may match no file yet (the renderer gets {} and leaves their part out)

STUDIES:dict[str, Study] = {}  # slug -> study, in the order of the site's menu

def study(slug:str, # the page's name
          title:str, # its title
          summary:str, # one line on what it measures
          files:dict, # name -> results file (or a pattern with `*`), relative to the project root
          make:str, # the command that makes the files
          needs:dict|None=None, # name -> keys each file must have
          optional:tuple=(), # names of patterns that may match no file yet
         ):
    "Register the decorated renderer as the study `slug` (a new study is one decorated function)."
    def register(render):
        STUDIES[slug] = Study(slug, title, summary, dict(files), make, render, dict(needs or {}), tuple(optional))
        return render
    return register

def project_root(root:str|Path|None=None) -> Path:
    "The project's folder: `root`, else the clone this file lies in (benchmarks/pages/ is two levels down)."
    return ROOT if root is None else Path(root)

def load_study(s:Study, # a registered study
               root:str|Path|None=None, # the project's folder (default: this clone)
              ) -> dict:
    "The study's files, loaded and checked: a missing file or one without the keys its renderer reads raises `StudyError`, naming the file and the command that makes it."
    root, out = project_root(root), {}
    for name, rel in s.files.items():
        paths = sorted(glob.glob(str(root/rel))) if '*' in rel else [str(root/rel)] if (root/rel).exists() else []
        if not paths and '*' in rel and name in s.optional: out[name] = {}; continue
        if not paths: raise StudyError(f"{rel} is missing (study '{s.slug}'): make it with: {s.make}")
        loaded = {}
        for p in paths:
            shown = Path(p).relative_to(root).as_posix()
            try: d = json.loads(Path(p).read_text())
            except ValueError as e:
                raise StudyError(f"{shown} is not valid JSON ({e}) (study '{s.slug}'): make it again with: "
                                 f"{s.make}") from None
            lack = [k for k in s.needs.get(name, []) if not isinstance(d, dict) or k not in d]
            if lack:
                raise StudyError(f"{shown} is of an older format (no {', '.join(map(repr, lack))}) (study '{s.slug}'): "
                                 f"make it again with: {s.make}")
            loaded[shown] = d
        out[name] = loaded if '*' in rel else loaded[next(iter(loaded))]
    return out

def provenance(d:dict, # a results file, loaded
              ) -> dict:
    "The command, machine and date that made a results file, as the file records them: under `provenance`, or at its top level."
    own = d.get('provenance') if isinstance(d.get('provenance'), dict) else {}
    got = {k: own.get(k) or (d.get(k) if isinstance(d.get(k), str) else None) for k in ('command', 'machine', 'date')}
    return {k: v for k, v in got.items() if v}

def pm(r:dict, # a row with `acc_mean` and `acc_std`
       digits:int=1) -> str:
    "`mean ± std` of a row's accuracy."
    return mean_std(r['acc_mean'], r['acc_std'], digits)

def by_method(rows:list, # evaluation rows
             ) -> dict:
    "(method, label fraction) -> row."
    return {(r['method'], r['label_fraction']): r for r in rows}

def pct(f:float) -> str: return f"{f * 100:g}%"

def verdict(g:dict) -> str:
    "'ahead', 'behind' or 'level': beyond the larger std at every label fraction, one way or the other, else level."
    v = [g[f] for f in sorted(g)]
    if all(x['gap'] > x['std'] for x in v): return 'ahead'
    if all(-x['gap'] > x['std'] for x in v): return 'behind'
    return 'level'

def _figure_html(fig, uid:str) -> str:
    d = fig if isinstance(fig, dict) else json.loads(fig.to_json())
    data = json.dumps(d.get('data', [])).replace('</', '<\\/')
    layout = json.dumps(d.get('layout', {})).replace('</', '<\\/')
    h = (d.get('layout') or {}).get('height') or 450
    return (f'<div class="nb-plotly" id="{uid}" style="height:{h}px"></div>\n'
            f'<script>Plotly.newPlot("{uid}", {data}, {layout}, {{"responsive": true}});</script>')

def _is_figure(b) -> bool: return not isinstance(b, str) and (hasattr(b, 'to_json') or isinstance(b, dict))

def study_page(s:Study|str, # a study, or its slug
               root:str|Path|None=None, # the project's folder
               asset_prefix:str='../', # the path from the page to the site's `assets/`
              ) -> str:
    "The study's page as Markdown: its title and summary, where each file came from, then the renderer's tables, figures and prose."
    s = STUDIES[s] if isinstance(s, str) else s
    files = load_study(s, root)
    out = [f'# {s.title}', f'> {s.summary}']
    src = []
    for name, rel in s.files.items():
        items = files[name].items() if '*' in rel else [(rel, files[name])]
        for path, d in items:
            p = provenance(d)
            src.append(f"- `{path}`" + (f": made by `{p['command']}`" if 'command' in p else '') +
                       (f" on {p['machine']}" if 'machine' in p else '') + (f", {p['date']}" if 'date' in p else '')
                       + '.')
    out.append('<div class="study-source" markdown>\n\n**Generated from** (every number on this page is read from '
               'these files):\n\n'
               + '\n'.join(src) + f"\n\nTo make them again: `{s.make}`; then rebuild the pages and the site "
                                  "(`python -m benchmarks.pages site DIR`, then `kdd-explore docs --pages DIR`).\n"
                                  "\n</div>")
    n = 0
    for b in s.render(files):
        if _is_figure(b):
            n += 1
            if n == 1: out.append(f'<script src="{asset_prefix}assets/plotly.min.js"></script>')
            out.append(_figure_html(b, f'study-{s.slug}-{n}'))
        elif b: out.append(str(b).strip())
    return '\n\n'.join(out) + '\n'

def studies_index(root:str|Path|None=None, # the project's folder (unused: the index needs no file)
                 ) -> str:
    "The studies' index page: one line per study with its link."
    lines = [f"- [{s.title}]({s.slug}.md): {s.summary}" for s in STUDIES.values()]
    return ('# Studies\n\n> What was measured beyond the lessons, each page generated from its committed results '
            'file.\n\nEvery table and figure on these pages is read from a results file under `benchmarks/results/` or '
            '`kdd_explore/assets/`, written by the script that measured it; each page names its files, the '
            'command, the machine and the date. To add a study, see `benchmarks/pages/`.\n\n'
            + '\n'.join(lines) + '\n')

def findings_lines(rows:list, # a run's result rows
                  ) -> list[str]:
    "The run's findings as list items: each comparison the rows allow, as a paired difference with its 95% interval per label fraction."
    from kdd_explore.evaluate import gap, gap_text
    have = {r['method'] for r in rows}
    say = [('full_data_kd', 'random_subset', '**Headroom**: full-data KD against the random subset'),
           ('mkdt_high_loss', 'random_subset', '**MKDT against the random subset**'),
           ('mkdt_high_loss', 'mkdt_initial_at_learned_lr',
            '**What the distilled images and targets add beyond the learned lr** '
            '(MKDT against its own initial images and targets at its learned lr)'),
           ('random_subset_at_learned_lr', 'random_subset',
            '**The learned lr alone** (the random subset at it against lr 0.1)'),
           ('krr_st', 'random_subset', '**KRR-ST against the random subset**'),
           ('mkdt_high_loss', 'krr_st_at_learned_lr', '**MKDT against KRR-ST at the same lr**')]
    out = []
    for a, b, words in say:
        if {a, b} <= have:
            g = gap(rows, a, b)  # the mean paired difference over the run's seeds and its 95% t interval
            out.append(f"- {words}: " + '; '.join(f"{pct(f)} labels {gap_text(v)}" for f, v in sorted(g.items()))
                       + '.')
    return out

def run_table(res:dict, # a run's `results.json`
             ) -> str:
    "The run's main table: linear-probe top-1 per method and label fraction, and each encoder's pool KD loss."
    from kdd_explore.evaluate import results_table
    return results_table(res['results'])
