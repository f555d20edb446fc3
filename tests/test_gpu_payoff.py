"benchmarks/gpu_payoff.py (issue 36, item 5): the prepared GPU run of MKDT's payoff, at toy size on the CPU."
import json, math, os, subprocess, sys
import pytest
from conftest import ROOT, load_script

SCRIPT = ROOT/'benchmarks'/'gpu_payoff.py'

def _script(): return load_script(SCRIPT)

def test_the_experts_plan_degrades_to_what_fits():
    "K = 100 with 10 held out when 110 fit; fewer pool experts, 10% held out (at least 2), when fewer fit."
    plan = _script().plan_experts
    assert plan(110, 100, None) == (100, 10) and plan(500, 100, None) == (100, 10)
    assert plan(50, 100, None) == (45, 5)
    assert plan(12, 100, None) == (10, 2) and plan(3, 100, None) == (1, 2)
    assert plan(2, 100, None) == (1, 2)  # the least it records: one to match, two held out (said as over its share)
    assert plan(30, 100, 4) == (26, 4)  # --held-out given

@pytest.mark.slow
def test_gpu_payoff_runs_at_toy_size_on_the_cpu(tmp_path):
    "--device cpu --tiny: every stage timed, nothing skipped, provenance, and findings with 95% intervals."
    out = tmp_path/'p.json'
    r = subprocess.run([sys.executable, str(SCRIPT), '--device', 'cpu', '--tiny', '--json', str(out), '--quiet',
                        '--work', str(tmp_path/'work')], capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res['complete'] and res['tiny'] and res['skipped'] == []
    assert list(res['stages']) == ['setup', 'representations', 'experts', 'distillation', 'evaluation']
    assert all(s['seconds'] >= 0 and not s['over_share'] for s in res['stages'].values())
    assert sum(s['seconds'] for s in res['stages'].values()) <= res['provenance']['wall_s'] + 1
    assert res['provenance']['wall_s'] < 60  # well under a minute on the CPU
    for k in ('command', 'machine', 'device', 'device_name', 'torch', 'date', 'started', 'wall_s'):
        assert res['provenance'][k]
    assert res['provenance']['command'].startswith('python benchmarks/gpu_payoff.py --device cpu --tiny')
    ex = res['stages']['experts']
    assert ex['pool'] == res['wanted']['experts'] == 3 and ex['held_out'] == 2 and res['wanted']['expert_epochs'] == 4
    d = res['stages']['distillation']
    assert d['iterations'] == sum(s['iterations'] for s in d['segments']) == 4 and len(d['segments']) == 2
    assert set(d['matching_loss_start']) == set(d['matching_loss_end']) == {'fitted', 'held_out'}
    ev = res['stages']['evaluation']
    assert ev['seeds'] == [0, 1] and not res['powered']
    assert set(res['findings']) == {'vs_random', 'vs_high_loss'}
    for by in res['findings'].values():
        assert set(by) == {str(f) for f in ev['fractions']}
        for g in by.values():
            assert g['n'] == 2 and math.isfinite(g['lo']) and math.isfinite(g['hi']) and g['lo'] <= g['gap'] <= g['hi']
            assert g['interval'] == 't 95%' and '[' in g['text']
    # the methods share each seed: one row per method and fraction, all at the same seeds
    assert {(r['method'], r['label_fraction']) for r in res['rows']} == {
        (m, f) for m in ev['methods'] for f in ev['fractions']}
    assert all(r['seeds'] == [0, 1] for r in res['rows'])

@pytest.mark.slow
def test_gpu_payoff_without_the_jpeg_copy_says_how_to_register_it(tmp_path):
    "No registered cifar10_jpeg and no --tiny: one clear line naming the register command, before any work."
    r = subprocess.run([sys.executable, str(SCRIPT), '--device', 'cpu', '--json', str(tmp_path/'p.json'),
                        '--work', str(tmp_path/'work')], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, 'KDD_DATA': str(tmp_path/'empty')})
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    assert 'kdd-explore register cifar10_jpeg DIR --size 32' in r.stderr and '--tiny' in r.stderr
    assert not (tmp_path/'p.json').exists() and not (tmp_path/'work').exists()
