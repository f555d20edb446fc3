"Every name the README and the lessons import from kdd_explore still resolves: the list is read from those files, so it cannot go stale."
import importlib, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
FROM = re.compile(r'from\s+(kdd_explore(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n;#"\'\\]+)')
PLAIN = re.compile(r'(?<![\w.])import\s+(kdd_explore(?:\.\w+)*)')

def _text(path:Path) -> str:
    "A README's text, or a notebook's cells (code and markdown) one after another."
    if path.suffix != '.ipynb': return path.read_text()
    return '\n'.join(''.join(c['source']) for c in json.loads(path.read_text())['cells'])

def sources() -> list[Path]:
    return [ROOT/'README.md', *sorted((ROOT/'nbs').glob('*.ipynb')), *sorted((ROOT/'nbs'/'course').glob('*.ipynb'))]

def imported() -> dict[tuple[str, str], str]:
    "(module, name) -> the first file that imports it; name None for a plain `import kdd_explore.X`."
    found = {}
    for path in sources():
        text = _text(path)
        for mod, names in FROM.findall(text):
            for part in names.strip('()').replace('\n', ' ').split(','):
                name = part.split(' as ')[0].strip()
                if re.fullmatch(r'\w+', name): found.setdefault((mod, name), path.relative_to(ROOT).as_posix())
        for mod in PLAIN.findall(text): found.setdefault((mod, None), path.relative_to(ROOT).as_posix())
    return found

IMPORTED = imported()

def test_the_list_is_read_from_the_files():
    "The parser finds the imports the README shows, and the lessons' (a parser that found nothing would pass every test below)."
    assert ('kdd_explore.pipeline', 'run_pipeline') in IMPORTED and ('kdd_explore.data', 'load_dataset') in IMPORTED
    assert ('kdd_explore.pipeline', 'get_config') in IMPORTED and ('kdd_explore.recipes', 'PipelineConfig') in IMPORTED
    assert len({f for f in IMPORTED.values() if f.startswith('nbs/course/')}) >= 3, 'the course lessons were not read'
    assert len(IMPORTED) > 100, len(IMPORTED)

@pytest.mark.parametrize('mod,name', sorted(IMPORTED, key=lambda k: (k[0], k[1] or '')), ids=lambda v: str(v))
def test_imported_name_resolves(mod, name):
    m = importlib.import_module(mod)
    if name is None: return
    if hasattr(m, name): return
    importlib.import_module(f'{mod}.{name}')  # `from kdd_explore import data`: a submodule

PACKAGE = sorted(p for p in (ROOT/'kdd_explore').glob('*.py') if p.name != '_modidx.py')  # _modidx: nbdev's index

@pytest.mark.parametrize('path', PACKAGE, ids=lambda p: p.name)
def test_no_module_is_over_600_lines(path):
    "A module a reader can hold in mind: over 600 lines, split it (issue 37)."
    n = len(path.read_text().splitlines())
    assert n <= 600, f'kdd_explore/{path.name} has {n} lines: split it (as course.py and course_exercises.py were)'

@pytest.mark.parametrize('path', PACKAGE, ids=lambda p: p.name)
def test_the_package_neither_reads_benchmarks_results_nor_imports_benchmarks(path):
    "The project's bookkeeping (benchmarks/: the study pages, the README's blocks, the results files) stays outside the runtime package."
    text = path.read_text()
    assert 'benchmarks/results' not in text, f'kdd_explore/{path.name} reads benchmarks/results'
    assert not re.search(r'^\s*(from|import)\s+benchmarks\b|import_module\([\'"]benchmarks', text, re.M), \
        f'kdd_explore/{path.name} imports from benchmarks/'
