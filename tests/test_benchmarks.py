"The scripts in benchmarks/ that stand behind reported figures: they run, write what they say, and refuse bad input."
import json, subprocess, sys
import pytest
import torch
from kdd_explore.core import artifact_exists
from conftest import ROOT, load_script

@pytest.mark.slow
def test_gpu_check_runs_at_toy_size_on_the_cpu(tmp_path):
    "benchmarks/gpu_check.py --device cpu --tiny: the device check's own code, with its gradient agreement."
    r = subprocess.run([sys.executable, 'benchmarks/gpu_check.py', '--device', 'cpu', '--tiny',
                        '--json', str(tmp_path/'g.json')],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    fig = json.loads((tmp_path/'g.json').read_text())
    assert fig['gradients_agree'] and set(fig['gradient_rel_error']) == {'bounded', 'full'}
    assert all(0 <= v < 1e-3 for m in fig['gradient_rel_error'].values() for v in m.values())
    assert fig['expert_epoch_seconds'] > 0 and all(fig[f'iteration_{m}']['seconds_per_iteration'] > 0
                                                   for m in ('bounded', 'full'))
    if not torch.cuda.is_available():
        bad = subprocess.run([sys.executable, 'benchmarks/gpu_check.py'], capture_output=True,
                             text=True, timeout=300, cwd=ROOT)
        assert bad.returncode != 0 and 'No CUDA device here' in bad.stderr

def test_distill_budget_study_separates_images_from_lr(quick_run, tmp_path):
    "benchmarks/studies/distill_budget_study.py on a finished quick run: resumable checkpoints, and rows for the set and its start."
    _, run = quick_run
    script = [sys.executable, 'benchmarks/studies/distill_budget_study.py']
    r = subprocess.run(script + [str(run), '--out', str(tmp_path/'study'), '--iterations', '4,2', '--fractions', '0.05',
                                 '--set', 'syn_steps=3', '--json', str(tmp_path/'study.json')],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'study.json').read_text())
    assert [e['iterations'] for e in res['log']] == [2, 4] and res['distill']['syn_steps'] == 3
    assert 0 < res['log'][0]['images_moved'] and all(0 < e['lr'] for e in res['log'])
    assert len(res['rows']) == 4 and {r_['method'].split('@')[0] for r_ in res['rows']} == {'distilled', 'initial'}
    assert artifact_exists(tmp_path/'study'/'distill'/'checkpoint')
    bad = subprocess.run(script + [str(tmp_path), '--out', str(tmp_path/'x')], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert bad.returncode != 0 and 'no finished subsets stage' in bad.stderr

def _variants(): return load_script(ROOT/'benchmarks'/'studies'/'matching_variants.py')

def test_matching_variants_losses():
    "The three matching losses: 1 at the start, 0 at the target; 'encoder' ignores the head, 'layer' weighs layers equally."
    m = _variants().matching
    g = torch.Generator().manual_seed(0)
    start = {'body.0.weight': torch.randn(4, 3, generator=g), 'body.0.bias': torch.randn(4, generator=g),
             'head.weight': torch.randn(2, 4, generator=g)}
    target = {k: v + torch.randn(v.shape, generator=g) for k, v in start.items()}
    for loss in ('global', 'layer', 'encoder'):
        assert abs(float(m(loss, start, start, target)) - 1) < 1e-6 and float(m(loss, target, start, target)) == 0
    only_head = dict(target, **{'head.weight': start['head.weight']})  # everything matched but the head
    assert float(m('encoder', only_head, start, target)) == 0
    assert abs(float(m('layer', only_head, start, target)) - 0.5) < 1e-6  # two layers, one of them unmatched
    dh = float((start['head.weight'] - target['head.weight']).pow(2).sum())
    tot = sum(float((start[k] - target[k]).pow(2).sum()) for k in start)
    assert abs(float(m('global', only_head, start, target)) - dh / tot) < 1e-6

def test_matching_variants_runs_on_a_finished_run(quick_run, tmp_path):
    _, run = quick_run
    r = subprocess.run([sys.executable, 'benchmarks/studies/matching_variants.py', str(run), '--loss',
                        'layer', '--iterations', '2,3', '--steps', '3', '--max_start_epoch', '2', '--momentum', '0.9',
                        '--fractions', '0.05', '--json', str(tmp_path/'v.json')],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'v.json').read_text())
    assert [e['iterations'] for e in res['log']] == [2, 3] and res['settings']['loss'] == 'layer'
    assert all(e['skipped'] == 0 and e['images_moved'] > 0 for e in res['log'])
    assert [r_['method'].split('@')[0] for r_ in res['rows']] == ['layer', 'initial', 'layer', 'initial']
    bad = subprocess.run([sys.executable, 'benchmarks/studies/matching_variants.py', str(run), '--expert_epochs', '9'],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode != 0 and "passes the experts'" in bad.stderr

@pytest.mark.slow
def test_krr_st_cost_runs_at_toy_size(tmp_path):
    "benchmarks/speed/krr_st_cost.py --config quick: per-iteration and per-run seconds of MKDT and KRR-ST, wall and CPU."
    r = subprocess.run([sys.executable, 'benchmarks/speed/krr_st_cost.py', '--config', 'quick', '--rounds', '1',
                        '--out', str(tmp_path/'c.json')],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'c.json').read_text())
    for m in ('mkdt', 'krr_st'):
        assert res[m]['s_per_iteration_wall'] > 0 and res[m]['s_per_iteration_cpu'] > 0 and res[m]['run_cpu'] > 0
    assert res['krr_st']['warm_up_steps'] >= 0 and res['ratio_per_iteration_cpu'] > 0
    assert res['provenance']['command'].startswith('python benchmarks/speed/krr_st_cost.py --config quick --rounds 1')

def test_provenance_says_what_made_a_file(tmp_path):
    "benchmarks.provenance: the rerunnable command (root-relative path, arguments quoted), the machine, the UTC date, the wall time."
    import time
    sys.path.insert(0, str(ROOT))
    from benchmarks.provenance import command, provenance
    assert command(ROOT/'benchmarks'/'studies'/'k_study.py', ['--out', 'runs/a b']) == \
        "python benchmarks/studies/k_study.py --out 'runs/a b'"
    assert command(tmp_path/'x.py', []) == f'python {tmp_path}/x.py'  # outside the project: its full path
    p = provenance(ROOT/'benchmarks'/'gpu_check.py', ['--tiny'], t0=time.time() - 2, note='beside another job')
    assert p['command'] == 'python benchmarks/gpu_check.py --tiny' and p['wall_s'] >= 2
    assert p['machine'].endswith('beside another job') and 'torch' in p['machine']
    assert time.strptime(p['date'], '%Y-%m-%d')

@pytest.mark.slow
def test_distill_speed_runs_at_toy_size(tmp_path):
    "benchmarks/speed/distill_speed.py --tiny: the side-by-side figures (no timing is checked), and bad input refused."
    out = tmp_path/'speed.json'
    r = subprocess.run([sys.executable, 'benchmarks/speed/distill_speed.py', '--tiny', '--impls', 'unrolled,auto',
                        '--iters', '1', '--threads', '1', '--json', str(out)], capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    fig = json.loads(out.read_text())
    assert [(row['impl'], row['syn_steps']) for row in fig['rows']] == [('unrolled', 5), ('auto', 5)]
    assert all(row['sec_per_iter'] > 0 and row['peak_rss_mb'] > 0 for row in fig['rows'])
    auto = fig['rows'][1]
    # the same matching loss
    assert auto['plan']['chose'] == 'full' and abs(auto['loss'] - fig['rows'][0]['loss']) < 1e-5
    assert '| a | 5 |' in r.stdout and fig['machine'] and fig['command']
    bad = subprocess.run([sys.executable, 'benchmarks/speed/distill_speed.py', '--configs', 'b'], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert bad.returncode != 0 and 'Unknown setting' in bad.stderr

@pytest.mark.slow
def test_mkdt_factor_study_runs_a_row_at_toy_size(tmp_path):
    "benchmarks/studies/mkdt_factor_study.py --tiny: one row as a budget study, its summary, command and provenance."
    out = tmp_path/'factors'
    r = subprocess.run([sys.executable, 'benchmarks/studies/mkdt_factor_study.py', '--dataset', 'fake', '--tiny',
                        '--rows', 'experts_mtt', '--saves', '2', '--out', str(out), '--machine', 'a test machine'],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    study = json.loads((out/'mkdt_factor_study.json').read_text())
    row = study['rows']['experts_mtt']
    assert row['changes']['expert_lr'] == 0.01 and row['changes']['expert_momentum'] == 0.0
    assert row['command'].startswith('python benchmarks/studies/budget_study.py') and '--set expert_lr=0.01' in row['command']
    assert row['summary']['chosen'] == 2 and 0 < row['summary']['step_budget']['ratio']
    p = study['provenance']  # the command that reruns the study; --machine names the machine; rows carry their own
    assert p['machine'] == 'a test machine' and p['note'] and len(p['date']) == 10
    assert p['command'].startswith('python benchmarks/studies/mkdt_factor_study.py --dataset fake --tiny --rows experts_mtt')
    bad = subprocess.run([sys.executable, 'benchmarks/studies/mkdt_factor_study.py', '--dataset', 'fake', '--tiny',
                          '--rows', 'no_such_row', '--out', str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode != 0 and 'Unknown rows' in bad.stderr
