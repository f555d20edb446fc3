"The scripts in benchmarks/ that stand behind reported figures: they run, write what they say, and refuse bad input."
import json, subprocess, sys
import torch
from kdd_explore.core import artifact_exists
from conftest import ROOT

def test_gpu_check_runs_at_toy_size_on_the_cpu(tmp_path):
    "benchmarks/gpu_check.py --device cpu --tiny: the device check's own code, with its gradient agreement."
    r = subprocess.run([sys.executable, 'benchmarks/gpu_check.py', '--device', 'cpu', '--tiny', '--json', str(tmp_path/'g.json')],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    fig = json.loads((tmp_path/'g.json').read_text())
    assert fig['gradients_agree'] and set(fig['gradient_rel_error']) == {'bounded', 'full'}
    assert all(0 <= v < 1e-3 for m in fig['gradient_rel_error'].values() for v in m.values())
    assert fig['expert_epoch_seconds'] > 0 and all(fig[f'iteration_{m}']['seconds_per_iteration'] > 0 for m in ('bounded', 'full'))
    if not torch.cuda.is_available():
        bad = subprocess.run([sys.executable, 'benchmarks/gpu_check.py'], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert bad.returncode != 0 and 'No CUDA device here' in bad.stderr

def test_distill_budget_study_separates_images_from_lr(quick_run, tmp_path):
    "benchmarks/distill_budget_study.py on a finished quick run: resumable checkpoints, and rows for the set and its start."
    _, run = quick_run
    script = [sys.executable, 'benchmarks/distill_budget_study.py']
    r = subprocess.run(script + [str(run), '--out', str(tmp_path/'study'), '--iterations', '4,2', '--fractions', '0.05',
                                 '--set', 'syn_steps=3', '--json', str(tmp_path/'study.json')],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'study.json').read_text())
    assert [e['iterations'] for e in res['log']] == [2, 4] and res['distill']['syn_steps'] == 3
    assert 0 < res['log'][0]['images_moved'] and all(0 < e['lr'] for e in res['log'])
    assert len(res['rows']) == 4 and {r_['method'].split('@')[0] for r_ in res['rows']} == {'distilled', 'initial'}
    assert artifact_exists(tmp_path/'study'/'distill'/'checkpoint')
    bad = subprocess.run(script + [str(tmp_path), '--out', str(tmp_path/'x')], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode != 0 and 'no finished subsets stage' in bad.stderr
