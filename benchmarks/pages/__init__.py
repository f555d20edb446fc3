"""The project's study pages and the README's generated blocks, made from the committed results files.

Every study is a results file (or a few) under `benchmarks/results/` or `kdd_explore/assets/`, written by the script
that measured it, and a renderer here that turns it into a page: tables, plotly figures and the reading, every number
read from the file. Each file records the command, machine and date that made it (its `provenance`, or the same keys
at its top level); a page names them. The README's tables between `<!-- generated: ... -->` markers are made the same way.

    python -m benchmarks.pages check       # fails when a README block differs from its files, or a file is missing
    python -m benchmarks.pages readme      # rewrites the README's generated blocks
    python -m benchmarks.pages site DIR    # writes every study page and their index into DIR (Markdown)
    kdd-explore docs --pages DIR           # ... and the lessons' website shows them under *Studies*
    python -m benchmarks.pages page SLUG   # prints one page
    python -m benchmarks.pages record RUN/results.json --command ... --machine ... --date ... [--wall-s S]

Files: `registry.py` (a study, loading and checking its files, a page), one module per group of pages (`quickstart`,
`mkdt`, `supervised`, `speed`), `readme.py` (the README's blocks) and `__main__.py` (the commands above).

To add a study: write its results file with a `provenance` (command, machine, date, and `wall_s` where known), then
a renderer decorated with `@study(slug, title, summary, files=..., make=..., needs=...)` in the module of its group (or
a new module imported below), and add its slug to `ORDER`."""
__all__ = ['STUDIES', 'ORDER', 'Study', 'StudyError', 'load_study', 'provenance', 'study_page', 'studies_index',
           'check_readme', 'readme_blocks', 'record_main_job', 'update_readme']

from .registry import STUDIES, Study, StudyError, load_study, provenance, study_page, studies_index
from . import quickstart, mkdt, supervised, speed  # noqa: F401 (each registers its studies)
from .readme import check_readme, readme_blocks, record_main_job, update_readme

# the order of the site's menu and of the README's list of studies
ORDER = ['main-job', 'protocol', 'fashion-mnist-2pct', 'cifar10', 'budget', 'krr-st', 'distill-speed', 'scaling',
         'same-table', 'earlier', 'supervised', 'mkdt-factors', 'payoff', 'gpu']
if sorted(ORDER) != sorted(STUDIES):  # a study registered and not placed, or placed and not registered
    raise StudyError(f"benchmarks/pages: ORDER and the registered studies differ: {ORDER}, {list(STUDIES)}")
for _slug in ORDER: STUDIES[_slug] = STUDIES.pop(_slug)
