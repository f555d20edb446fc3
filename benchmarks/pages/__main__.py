"""`python -m benchmarks.pages check | readme | site DIR | page SLUG | record RESULTS ...`: see `benchmarks/pages/__init__.py`."""
from __future__ import annotations
import argparse, sys
from pathlib import Path
from kdd_explore.core import KddError
from . import STUDIES, check_readme, load_study, record_main_job, study_page, studies_index, update_readme

def write_site_pages(dest:str|Path, # the folder to write (`kdd-explore docs --pages DEST` shows it as a menu section named after it)
                     root:str|Path|None=None, # the project's folder (default: this clone)
                    ) -> Path:
    "Write every study page (`SLUG.md`) and their index (`index.md`, which links them in menu order) into `dest`; every file is checked before any page is written."
    pages = {s.slug: study_page(s, root, asset_prefix='../') for s in STUDIES.values()}
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest/'index.md').write_text(studies_index())
    for slug, page in pages.items(): (dest/f'{slug}.md').write_text(page)
    return dest

def main(argv:list|None=None) -> int:
    "`readme` rewrites the README's generated blocks; `check` fails when they differ or a study's file is missing; `site DIR` writes the study pages for the website; `page SLUG` prints a page; `record RESULTS --command ... --machine ... --date ...` writes a run as the main job."
    ap = argparse.ArgumentParser(prog='python -m benchmarks.pages', description=main.__doc__)
    sub = ap.add_subparsers(dest='what', required=True)
    sub.add_parser('readme', help="rewrite README.md's generated blocks from the results files")
    sub.add_parser('check', help="fail when README.md's generated blocks differ from the results files, or a study's "
                                 "file is missing")
    st = sub.add_parser('site', help='write every study page and their index into DIR, for kdd-explore docs '
                                     '--pages DIR')
    st.add_argument('dir')
    pg = sub.add_parser('page', help='print the Markdown of a study page')
    pg.add_argument('slug', choices=list(STUDIES))
    rec = sub.add_parser('record', help='write a run as the main job (benchmarks/results/main_job.json)')
    rec.add_argument('results'); rec.add_argument('--command', required=True)
    rec.add_argument('--machine', required=True)
    rec.add_argument('--date', required=True); rec.add_argument('--wall-s', type=float, default=None)
    a = ap.parse_args(argv)
    try:
        if a.what == 'readme': print('README.md: ' + (', '.join(update_readme()) or 'nothing') + ' regenerated')
        elif a.what == 'check':
            for s in STUDIES.values(): load_study(s)
            check_readme(); print(f'README.md agrees with its results files; {len(STUDIES)} studies have their files')
        elif a.what == 'site': print(f"{len(STUDIES)} study pages and their index in {write_site_pages(a.dir)}")
        elif a.what == 'page': print(study_page(a.slug))
        else: print(record_main_job(a.results, a.command, a.machine, a.date, a.wall_s))
    except KddError as e:
        print(f'error: {e}', file=sys.stderr); return 1
    return 0

if __name__ == '__main__': sys.exit(main())
