"The supervised study's scripts at toy size: a factor row end to end, and the same set tested again under other test protocols."
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
# one worker runs the toy row once for every test here; slow: study scripts in subprocesses (about 100 s on one thread)
pytestmark = [pytest.mark.xdist_group('supervised_study'), pytest.mark.slow]
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT))

def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True, text=True)

@pytest.fixture(scope='module')
def row(tmp_path_factory):
    "One factor row (max_start_epoch 5, which the toy experts' 3 epochs cap at 2) run by the study at toy size."
    out = tmp_path_factory.mktemp('sup_study')
    r = run('benchmarks/studies/supervised_study.py', '--out', out, '--tiny', '--rows', '10ipc_start5')
    assert r.returncode == 0, r.stderr[-2000:]
    return out

def test_study_row(row):
    "The row's results land in the study file with the command that reruns it."
    study = json.loads((row/'supervised_study.json').read_text())
    got = study['rows']['10ipc_start5']
    assert got['results']['complete'] and got['results']['recipe']['distill']['max_start_epoch'] == 2
    assert got['command'].endswith('--rows 10ipc_start5 --tiny')
    assert got['images']['distilled'] and got['images']['initial']

@pytest.fixture(scope='module')
def protocol(row):
    "The row's set tested again by the protocol script: its own protocol (width 32, 20 epochs) and width 16, 2 epochs."
    r = run('benchmarks/studies/supervised_protocol.py', row/'10ipc_start5', '--protocols', '32x20,16x2',
            '--json', row/'p.json')
    assert r.returncode == 0, r.stderr[-2000:]
    return row/'p.json'

def test_protocol_repeats_the_row(row, protocol):
    "The row's own protocol repeats its accuracies; another width and epoch count is a separate, paired reading."
    res = json.loads((row/'10ipc_start5'/'results.json').read_text())
    p = json.loads(protocol.read_text())
    assert p['repeats_row'] is True and p['save'] == res['chosen']
    assert p['protocols']['32x20']['distilled']['accuracies'] == res['saves'][res['chosen']]['test']['accuracies']
    other = p['protocols']['16x2']
    assert other['epochs'] == 2 and other['width'] == 16 and len(other['distilled']['accuracies']) == 2
    d = [a - b for a, b in zip(other['distilled']['accuracies'], other['random_real']['accuracies'])]
    assert other['gain']['gap'] == pytest.approx(sum(d) / len(d), abs=1e-3)
    assert p['provenance']['command'].startswith('python benchmarks/studies/supervised_protocol.py')
    # a second call into the same file keeps what the first measured (an interrupted run resumes) and adds nothing
    r = run('benchmarks/studies/supervised_protocol.py', row/'10ipc_start5', '--protocols', '16x2',
            '--json', protocol)
    assert r.returncode == 0 and 'width' not in r.stdout, r.stderr[-2000:]
    assert json.loads(protocol.read_text())['protocols'] == p['protocols']

def test_bad_input(row, tmp_path):
    "A malformed protocol, a folder without a run and a save the row lacks are refused with what to do (in-process)."
    from benchmarks.studies import supervised_protocol, supervised_study
    def refused(main, *argv):
        with pytest.raises(SystemExit) as e: main(list(map(str, argv)))
        return str(e.value)
    assert 'WIDTHxEPOCHS' in refused(supervised_protocol.main, row/'10ipc_start5', '--protocols', '32by300')
    assert 'no results.json' in refused(supervised_protocol.main, tmp_path)
    assert 'has no save 999' in refused(supervised_protocol.main, row/'10ipc_start5', '--save', '999')
    assert 'Unknown rows' in refused(supervised_study.main, '--out', tmp_path, '--tiny', '--rows', 'no_such_row')

def test_protocol_on_the_page(protocol, tmp_path):
    "The study page's protocol section reads a protocol file; without one (an optional pattern) the page leaves it out."
    import shutil
    from benchmarks.pages import STUDIES, study_page
    from benchmarks.pages.supervised import _protocol_section
    p = json.loads(protocol.read_text())
    md = '\n'.join(_protocol_section({'p.json': p}))
    assert '| 16 x 2 |' in md and '| 32 x 20 |' in md and 'repeats its published accuracies' in md
    assert f"{p['protocols']['16x2']['gain']['gap']:+.1f} [" in md
    root = tmp_path/'root'; (root/'benchmarks'/'results').mkdir(parents=True)
    shutil.copy(ROOT/'benchmarks'/'results'/'supervised_study.json', root/'benchmarks'/'results')
    page = study_page(STUDIES['supervised'], root)
    assert 'The test protocol' not in page and '## The published rows, reproduced' in page
    shutil.copy(protocol, root/'benchmarks'/'results'/'supervised_protocol_toy.json')
    page = study_page(STUDIES['supervised'], root)
    assert '## The test protocol: `10ipc_start5`' in page and '`benchmarks/results/supervised_protocol_toy.json`' in page

def test_the_recipe_tested_again_on_a_rows_validation_images(tmp_path):
    "The recipe's set is distilled again and tested on a row's validation images in the recipe's own normalisation: on the recipe's own images it repeats the recipe's run, and a larger pool's images lie outside the recipe's pool."
    import dataclasses
    from benchmarks.studies.supervised_study import recipe_on_row_val
    from kdd_explore.supervised import SupervisedRecipe
    base = SupervisedRecipe(dataset='fake', n_train=300, n_val=100, n_test=200, n_experts=2, expert_epochs=3, saves=(4,),
                            eval_epochs=5, eval_seeds=(0, 1), distill={'syn_steps': 4, 'max_start_epoch': 2})
    same = recipe_on_row_val(tmp_path, 'toy_same', base, base)
    run = json.loads((tmp_path/'toy_same'/'recipe_set'/'results.json').read_text())['saves']['4']
    assert same['test']['accuracies'] == run['test']['accuracies']  # the same test networks
    assert same['val']['accuracies'] == run['val']['accuracies'] and same['val_images'] == 100
    assert same['val_images_in_recipe_pool'] == 0
    # a larger pool (the row) holds out the other 100 of the fake split's 1,000 images, none in the recipe's pool
    pool = recipe_on_row_val(tmp_path, 'toy_pool', dataclasses.replace(base, n_train=900), base)
    assert pool['val_images'] == 100 and pool['val_images_in_recipe_pool'] == 0
    assert pool['test'] == same['test'] and len(pool['val']['accuracies']) == 2
    assert recipe_on_row_val(tmp_path, 'toy_pool', base, base) == pool  # read back, not computed again

def test_the_experts_scored_at_the_epochs_the_distillation_matches(row, tmp_path):
    "Each expert is scored with its parameters at the first and last target epoch (2 and 3 at toy size) and the last recorded one, on the row's test split; what is missing is refused with what to do."
    import torch
    from torch.func import functional_call
    from benchmarks.studies import supervised_experts
    from benchmarks.studies.supervised_study import row_recipe
    from kdd_explore.kd import Experts
    from kdd_explore.models import build_model
    from kdd_explore.supervised import _split
    got = supervised_experts.main(['--out', str(row), '--rows', '10ipc_start5', '--tiny', '--json', str(tmp_path/'e.json')])
    e = got['rows']['10ipc_start5']
    assert e['epochs'] == [2, 3] and e['targets'] == [2, 3] and e['experts'] == 2 and e['read_from'] == '10ipc_start5'
    ex = Experts.load(row/'10ipc_start5'/'experts'/'experts')
    _, _, (xt, yt), _ = _split(row_recipe('10ipc_start5', tiny=True), False)
    net = build_model(ex.arch, seed=1)
    for epoch in ('2', '3'):
        for k in range(2):  # the same classifier, built another way
            with torch.no_grad(): hits = (functional_call(net, ex.params(k, int(epoch)), (xt,)).argmax(1) == yt).sum()
            assert e['test'][epoch]['accuracies'][k] == round(100 * int(hits) / len(yt), 2)
    assert json.loads((tmp_path/'e.json').read_text())['provenance']['command'].startswith(
        'python benchmarks/studies/supervised_experts.py')
    with pytest.raises(SystemExit, match='no other row'):
        supervised_experts.main(['--out', str(row), '--rows', 'depth4', '--tiny', '--json', str(tmp_path/'f.json')])
    with pytest.raises(SystemExit, match='Unknown rows'):
        supervised_experts.main(['--out', str(row), '--rows', 'nope', '--json', str(tmp_path/'f.json')])

def test_experts_only_shared_across_two_processes(row, tmp_path):
    "`--experts-only` under torchrun (two gloo processes, one expert each) records the experts that the row's own run records in one process, with the same settings, so that the run reads them back instead of recording them."
    import torch
    from kdd_explore.kd import Experts
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        'benchmarks/studies/supervised_study.py', '--out', str(tmp_path), '--tiny', '--rows',
                        '10ipc_start5', '--experts-only'], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('10ipc_start5: 2 experts in') == 1  # rank 0 reports
    two = Experts.load(tmp_path/'10ipc_start5'/'experts'/'experts')
    one = Experts.load(row/'10ipc_start5'/'experts'/'experts')
    assert two.meta == one.meta and two.arch == one.arch and len(two.trajectories) == 2
    for a, b in zip(two.trajectories, one.trajectories):
        assert len(a) == len(b) and all(torch.equal(a[e][k], b[e][k]) for e in range(len(a)) for k in a[e])
    assert not (tmp_path/'10ipc_start5'/'results.json').exists()  # the row itself is left to its run
    calls = json.loads((tmp_path/'10ipc_start5'/'experts_only.json').read_text())['calls']
    assert len(calls) == 1 and calls[0]['processes'] == 2 and calls[0]['seconds'] > 0  # the page adds 2 x its time
    # another row of the same expert settings finds them from the folder's claim (no results.json there yet)
    from benchmarks.studies.supervised_study import find_experts, row_recipe
    assert find_experts(tmp_path, 'fashion_mnist_10ipc', row_recipe('fashion_mnist_10ipc', tiny=True)) == ('10ipc_start5', 2)
    assert find_experts(tmp_path, 'c10_1ipc_width64', row_recipe('c10_1ipc_width64', tiny=True)) is None
