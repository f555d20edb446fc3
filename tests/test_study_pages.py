"""The study pages and the README's generated blocks (benchmarks/pages/): every page renders from its committed file and
names the command, machine and date the file records, a missing or older file stops with one line naming it and the command
that makes it, a README edited by hand where it is generated fails naming the file to regenerate from, and the site shows
the pages that `python -m benchmarks.pages site DIR` writes (kdd-explore docs --pages DIR)."""
import json, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))  # benchmarks/ is the project's, not the package's

@pytest.fixture(autouse=True)
def in_project(monkeypatch):
    monkeypatch.chdir(ROOT)  # the results files are read from the project's folder

@pytest.mark.parametrize('slug', ['main-job', 'protocol', 'fashion-mnist-2pct', 'cifar10', 'budget',
                                  'krr-st', 'distill-speed', 'scaling', 'same-table', 'earlier'])
def test_every_study_page_renders_from_its_committed_files(slug):
    from benchmarks.pages import STUDIES, study_page
    s = STUDIES[slug]
    page = study_page(s)
    assert page.startswith(f'# {s.title}\n\n> {s.summary}')
    for rel in s.files.values():  # each file is named on its page (a pattern: every match)
        for p in (sorted(ROOT.glob(rel)) if '*' in rel else [ROOT/rel]):
            assert f'`{p.relative_to(ROOT).as_posix()}`' in page, (slug, p)
    if s.files: assert '|---|' in page or 'Plotly.newPlot' in page, f'{slug}: no table and no figure'

def test_the_pages_read_their_numbers_from_the_files():
    "The main job's page and the README quote the file's numbers: change one in a copy and the page changes with it."
    from benchmarks.pages import STUDIES, study_page
    from benchmarks.pages.registry import MAIN_JOB
    run = json.loads((ROOT/MAIN_JOB).read_text())
    row = next(r for r in run['results'] if r['method'] == 'mkdt_high_loss' and r['label_fraction'] == 0.01)
    assert f"| mkdt_high_loss | {row['acc_mean']:.1f} ± {row['acc_std']:.1f} |" in study_page('main-job')
    assert f"| mkdt_high_loss | {row['acc_mean']:.1f} ± {row['acc_std']:.1f} |" in (ROOT/'README.md').read_text()

def _project_copy(tmp):
    "What the studies read, in a folder of its own: the README, every results file and the pages' code."
    shutil.copy(ROOT/'README.md', tmp/'README.md')
    shutil.copytree(ROOT/'benchmarks'/'pages', tmp/'benchmarks'/'pages', ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copytree(ROOT/'benchmarks'/'results', tmp/'benchmarks'/'results')
    (tmp/'kdd_explore'/'assets').mkdir(parents=True)
    for f in [*(ROOT/'kdd_explore'/'assets').glob('budget_study_*.json'), *(ROOT/'kdd_explore'/'assets').glob('k_study_*.json')]:
        shutil.copy(f, tmp/'kdd_explore'/'assets'/f.name)
    return tmp

def test_a_missing_results_file_stops_with_one_line_naming_it_and_its_command(tmp_path):
    from benchmarks.pages import STUDIES, StudyError, load_study
    root = _project_copy(tmp_path)
    (root/'benchmarks'/'results'/'protocol_study.json').unlink()
    with pytest.raises(StudyError) as e: load_study(STUDIES['protocol'], root)
    assert str(e.value) == ("benchmarks/results/protocol_study.json is missing (study 'protocol'): make it with: "
                            "python benchmarks/studies/protocol_study.py --out runs/protocol_study")

def test_a_results_file_of_an_older_format_is_named_with_the_command(tmp_path):
    from benchmarks.pages import STUDIES, StudyError, load_study
    root = _project_copy(tmp_path)
    f = root/'benchmarks'/'results'/'protocol_study.json'
    old = json.loads(f.read_text()); del old['students']  # the layout before the matrix named its students
    f.write_text(json.dumps(old))
    with pytest.raises(StudyError) as e: load_study(STUDIES['protocol'], root)
    msg = str(e.value)
    assert '\n' not in msg and msg.startswith("benchmarks/results/protocol_study.json is of an older format (no "
                                              "'students')"), msg
    assert msg.endswith('make it again with: python benchmarks/studies/protocol_study.py --out '
                        'runs/protocol_study'), msg

@pytest.mark.slow  # a subprocess
def test_the_site_pages_stop_on_a_missing_results_file_before_any_page_is_written(tmp_path):
    "python -m benchmarks.pages site DIR: one line naming the file and its command, and no page written."
    (tmp_path/'project').mkdir(); root = _project_copy(tmp_path/'project')
    (root/'benchmarks'/'results'/'protocol_study.json').unlink()
    r = subprocess.run([sys.executable, '-m', 'benchmarks.pages', 'site', str(tmp_path/'studies')], cwd=root,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr == ("error: benchmarks/results/protocol_study.json is missing (study "
                                              "'protocol'): make it with: python benchmarks/studies/protocol_study.py "
                                              "--out runs/protocol_study\n"), r.stderr
    assert not (tmp_path/'studies').exists()

@pytest.mark.slow  # a site built (a notebook executed, MkDocs)
def test_the_site_shows_the_study_pages(tmp_path):
    "The pages written by benchmarks/pages become the site's Studies section (kdd-explore docs --pages), in menu order; a missing folder stops the build before any notebook runs."
    from benchmarks.pages import STUDIES
    from benchmarks.pages.__main__ import write_site_pages
    from kdd_explore.docs import DocsError, make_notebook
    from kdd_explore.site import build_site
    nb = make_notebook(tmp_path/'nbs'/'n.ipynb', ['print(1)'])
    with pytest.raises(DocsError, match='is not a folder of Markdown pages'):
        build_site(tmp_path/'site', [nb], n_workers=0, build_dir=tmp_path/'build', progress=False,
                   pages=tmp_path/'studies')
    assert not (tmp_path/'build'/'executed').exists() and not (tmp_path/'site').exists()
    pages = write_site_pages(tmp_path/'studies')
    site = build_site(tmp_path/'site', [nb], n_workers=0, build_dir=tmp_path/'build', progress=False, pages=[pages])
    html = (site/'studies'/'protocol.html').read_text()
    assert 'benchmarks/results/protocol_study.json' in html and 'Plotly.newPlot' in html
    assert (site/'assets'/'plotly.min.js').exists()
    yml = (tmp_path/'build'/'mkdocs.yml').read_text()
    menu = yml[yml.index('- Studies:'):]
    at = [menu.index(f'studies/{s}.md') for s in ['index', *STUDIES]]
    assert at == sorted(at), menu  # the overview, then the studies in their order

def test_the_readme_agrees_with_its_results_files():
    from benchmarks.pages import check_readme
    check_readme(ROOT/'README.md', ROOT)

def test_a_readme_edited_by_hand_fails_naming_the_file_to_regenerate_from(tmp_path):
    from benchmarks.pages import StudyError, check_readme, update_readme
    from benchmarks.pages.registry import MAIN_JOB
    root = _project_copy(tmp_path)
    readme = root/'README.md'
    text = readme.read_text()
    edited = re.sub(r'(\| mkdt_high_loss \| )\d+\.\d', lambda m: m[1] + '99.9', text, count=1)  # a number typed over
    assert edited != text
    readme.write_text(edited)
    with pytest.raises(StudyError) as e: check_readme(readme, root)
    assert str(e.value) == (f"{readme}: the block 'main-table' differs from what {MAIN_JOB} gives: it was edited by "
                            f"hand, or the results changed. Regenerate it from {MAIN_JOB}: python -m "
                            "benchmarks.pages readme")
    r = subprocess.run([sys.executable, '-m', 'benchmarks.pages', 'check'], cwd=root, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error: README.md: the block 'main-table' differs from what "
                                                     "benchmarks/results/main_job.json gives")
    # regenerated: the file is as committed
    assert update_readme(readme, root) == ['main-table'] and readme.read_text() == text
    readme.write_text(text.replace('<!-- /generated: studies -->', ''))  # a marker line removed
    with pytest.raises(StudyError, match="the generated block 'studies' is missing"): check_readme(readme, root)

def test_readme_links_and_benchmark_paths_exist():
    "Every `benchmarks/...py` path the README and the study pages name exists, and no project text points outside the repository."
    from benchmarks.pages import STUDIES, study_page
    text = (ROOT/'README.md').read_text() + ''.join(study_page(s) for s in STUDIES.values())
    paths = set(re.findall(r'benchmarks/[\w/]+\.py', text))
    assert paths and all((ROOT/p).exists() for p in paths), sorted(p for p in paths if not (ROOT/p).exists())
    assert '../shared' not in text
    lessons = set(re.findall(r'kdd_explore/(\w+)\.html', text))
    assert all((ROOT/'nbs'/f'{n}.ipynb').exists() for n in lessons - {'api'}), lessons

def test_provenance_lives_in_the_results_files_not_in_the_code():
    "No date, machine or command of a run is written in benchmarks/pages/: each page reads them from the files."
    code = ''.join(p.read_text() for p in (ROOT/'benchmarks'/'pages').glob('*.py'))
    assert not re.findall(r'\b20\d\d-\d\d-\d\d\b', code)
    assert 'made=' not in code and 'AMD EPYC' not in code

def test_a_row_with_its_own_validation_images_is_paired_with_the_recipe_tested_on_them():
    "A larger pool leaves other validation images: `val - recipe` pairs the row with the recipe's set tested again on those images, and stays empty until it is."
    import copy
    from benchmarks.pages.supervised import _sup_factors, _sup_paired, _supervised
    s = json.loads((ROOT/'benchmarks'/'results'/'supervised_study.json').read_text())
    recipe = s['rows']['fashion_mnist_10ipc']
    row = copy.deepcopy(recipe)
    row['results']['recipe']['n_train'] = 55000
    mine = row['results']['saves']['300']
    mine['val']['accuracies'] = [a + 1 for a in mine['val']['accuracies']]
    s['rows'] = {'fashion_mnist_10ipc': recipe, 'toy_pool': dict(row, what='a larger pool')}
    x, x0 = (_sup_factors(s, 'fashion_mnist_10ipc')[k] for k in ('toy_pool', 'fashion_mnist_10ipc'))
    assert _sup_paired(x, x0, 'val') is None  # other images, recipe not yet tested on them: no reading
    assert _sup_paired(x, x0, 'test')['gap'] == pytest.approx(0)  # the test split is the same for both
    page = '\n'.join(map(str, _supervised({'s': s})))
    assert 'has not been tested on them yet' in page
    # the recipe's set tested again on the row's images: 2 points below the row on every seed
    again = [a - 2 for a in mine['val']['accuracies']]
    s['rows']['toy_pool']['recipe_on_val'] = dict(save='300', val=dict(accuracies=again, mean=sum(again) / 5, std=0.4), val_images=5000,
                                val_images_in_recipe_pool=0, test=dict(recipe['results']['saves']['300']['test']))
    x = _sup_factors(s, 'fashion_mnist_10ipc')['toy_pool']
    g = _sup_paired(x, x0, 'val')
    assert g['gap'] == pytest.approx(2) and g['claim'] == 'gain'
    page = '\n'.join(map(str, _supervised({'s': s})))
    assert '| toy_pool | a larger pool |' in page and '+2.0 [+2.0, +2.0]' in page
    assert "the recipe's set tested again on those images" in page and 'repeat the recipe' in page
    s['rows']['toy_pool']['recipe_on_val']['test']['accuracies'] = [0.] * 5  # another run's test networks: said
    assert 'do not repeat the recipe' in '\n'.join(map(str, _supervised({'s': s})))

def test_a_cifar10_row_is_paired_with_the_row_it_changes_one_setting_of():
    "The 32-expert CIFAR-10 row is read against the published row and, one change alone, against the 8-expert row of the same iterations."
    import copy
    from benchmarks.pages.supervised import _c10_section
    s = json.loads((ROOT/'benchmarks'/'results'/'supervised_study.json').read_text())
    row = copy.deepcopy(s['rows']['c10_1ipc_it2000'])
    for v in row['results']['saves'].values():
        v['test']['accuracies'] = [a + 1 for a in v['test']['accuracies']]
        v['test']['mean'] += 1
    s['rows']['c10_1ipc_experts32'] = dict(row, what='32 experts')
    page = '\n'.join(_c10_section(s))
    assert '| c10_1ipc_experts32 | 32 experts |' in page
    assert 'Against `c10_1ipc_it2000` (the same 2,000 iterations with 8 experts): +1.0 [+1.0, +1.0] at 2,000' in page
    assert 'the one change alone (a gain)' in page
    del s['rows']['c10_1ipc_it2000']  # without its sibling the row is still read against the published row
    page = '\n'.join(_c10_section(s))
    assert '`c10_1ipc_experts32` ends at' in page and 'Against `c10_1ipc_it2000`' not in page

def test_only_a_cifar10_row_of_the_published_setup_is_said_to_repeat_its_500_save():
    "The 2,000-iteration row repeats the published row at 500 iterations (the same experts, width and seeds); a width-64 row, whose 500 save is another set, is not said to repeat or differ."
    import copy
    from benchmarks.pages.supervised import _c10_section, supervised_published_table
    s = json.loads((ROOT/'benchmarks'/'results'/'supervised_study.json').read_text())
    s['rows'] = {k: s['rows'][k] for k in ('cifar10_1ipc', 'c10_1ipc_it2000')}
    assert "`c10_1ipc_it2000`" in (page := '\n'.join(_c10_section(s))) and 'repeats the published row to the last digit' in page
    wide = copy.deepcopy(s['rows'].pop('c10_1ipc_it2000'))
    wide['results']['recipe']['width'] = 64
    s['rows']['c10_1ipc_width64'] = wide
    page = '\n'.join(_c10_section(s))
    assert '`c10_1ipc_width64` ends at' in page and '500-iteration save' not in page
    # experts recorded before the run (--experts-only, 2 processes for 10 minutes) count in its minutes: 2 x 10 more
    minutes = lambda page: int(next(l for l in page.splitlines() if l.startswith('| c10_1ipc_width64 |')).split('|')[-2])
    wide['experts_only'] = {'calls': [{'seconds': 600.0, 'processes': 2}]}
    assert minutes("\n".join(_c10_section(s))) - minutes(page) == 20
    wide['threads'] = 2  # a run with more threads than the others says so beside its minutes
    assert '(distillation on 2 threads) |' in '\n'.join(_c10_section(s))
    assert '(distillation on 2 threads) |' in supervised_published_table(s)

def test_the_experts_section_reads_its_file_beside_the_rows():
    "What the experts know: each scored row's accuracy at its first and last target epoch, beside its set (a row not yet finished says so)."
    from benchmarks.pages import study_page
    from benchmarks.pages.supervised import supervised_experts_section
    e = json.loads((ROOT/'benchmarks'/'results'/'supervised_experts.json').read_text())
    s = json.loads((ROOT/'benchmarks'/'results'/'supervised_study.json').read_text())
    row = e['rows']['fashion_mnist_10ipc']
    md = '\n'.join(supervised_experts_section({'x.json': e}, s))
    a, b = (row['test'][str(t)]['mean'] for t in row['targets'])
    assert f"| fashion_mnist_10ipc | Fashion-MNIST | 5,000 | 32 | {a:.1f} / {b:.1f} (epochs 2 / 11) |" in md
    assert f"{s['rows']['fashion_mnist_10ipc']['results']['saves']['300']['test']['mean']:.1f} ±" in md
    s['rows'].pop('fashion_mnist_10ipc')
    assert '| not finished |' in '\n'.join(supervised_experts_section({'x.json': e}, s))
    assert supervised_experts_section({}, s) == []
    assert '## What the experts know' in study_page('supervised')
