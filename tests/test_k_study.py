"The study of the number of expert trajectories (benchmarks/studies/k_study.py) at toy size, on fake 3x32x32 data: short experts, the held-out split, each K's sets and matching losses, the paired evaluation, and the authors' loop's saves read in as an entry of their own."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest, torch
from kdd_explore.distill import SyntheticSet
from kdd_explore.kd import Experts

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
ARGS = ['--dataset', 'fake', '--config', 'cifar10_cpu', '--tiny', '--ks', '1,2', '--saves', '2,4', '--held-out', '2',
        '--quiet']

def k_study(out, *extra):
    r = subprocess.run([sys.executable, 'benchmarks/studies/k_study.py', *ARGS, '--out', str(out), *extra],
                       capture_output=True, text=True, timeout=900, cwd=ROOT, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    return r.stdout

def same_params(a:dict, b:dict) -> bool: return all(torch.equal(a[n], b[n]) for n in a)

def test_k_study_at_toy_size(tmp_path):
    out = tmp_path/'k'
    k_study(out)
    d = json.loads((out/'k_distill.json').read_text())
    cfg = json.loads((out/'run'/'config.json').read_text())
    dc = cfg['distill']
    # only the epochs the distillation reads are recorded: 0 .. max_start_epoch - 1 + expert_epochs
    assert d['short_epochs'] == dc['max_start_epoch'] - 1 + dc['expert_epochs']
    pool, held = Experts.load(out/'experts'/'experts'), Experts.load(out/'held_out'/'experts')
    assert (pool.n_experts, pool.n_epochs, held.n_experts, held.n_epochs) == (2, d['short_epochs'], 2, d['short_epochs'])
    # the pool's expert k is the recipe's expert k cut short (same initialisation, same minibatch order) ...
    full = Experts.load(out/'run'/'experts'/'experts')
    for k in range(min(full.n_experts, pool.n_experts)):
        for e in range(min(full.n_epochs, pool.n_epochs) + 1):
            assert same_params(pool.trajectories[k][e], full.trajectories[k][e])
    # ... and the held-out experts come from another root seed: matching never sees them
    assert not any(same_params(h[0], p[0]) for h in held.trajectories for p in pool.trajectories)
    for k in ('1', '2'):
        s = d['distill'][k]
        assert set(s) == {'0', '2', '4'}
        assert all(s[t]['fitted'] > 0 and s[t]['held_out'] > 0 for t in s)
        assert all(SyntheticSet.load(out/'sets'/f'K{k}'/f'set_{t}').images.shape[0] > 0 for t in ('2', '4'))

    # the authors' loop's saves (here: K = 1's own sets, standing in for a reference run) read in as 'reference'
    ref = tmp_path/'ref'
    for t in (2, 4):
        SyntheticSet.load(out/'sets'/'K1'/f'set_{t}').save(ref/'saves'/f'iter_{t}'/'synthetic_set')
    (ref/'reference_run.json').write_text(json.dumps({'loaded_files': ['replay_buffer_0.pt']}))
    k_study(out, '--eval', '--n-val', '200', '--val-seeds', '0', '--test-seeds', '0,1', '--reference-run', str(ref))
    s = json.loads((out/'k_study.json').read_text())
    assert s['ks'] == [1, 2] and s['best_k'] in ('1', '2') and set(s['ks_results']) == {'1', '2', 'reference'}
    # the evaluation's provenance is k_study.py's command with the arguments it got (k_study_eval.py has no command)
    p = s['provenance']
    assert p['command'].startswith('python benchmarks/studies/k_study.py --dataset fake') and '--eval' in p['command']
    assert 'torch' in p['machine'] and len(p['date']) == 10 and p['wall_s'] == s['eval_wall_s']
    k1, r = s['ks_results']['1'], s['ks_results']['reference']
    # one seed fixes every random choice of the evaluation: the same set scores the same, on validation and test
    assert r['val'] == k1['val'] and r['chosen'] == k1['chosen']
    acc = lambda e: {(x['method'], x['label_fraction']): x['accs'] for x in e['test']}
    assert acc(r) == acc(k1)
    # a paired finding of every entry has its interval and the seeds it was taken over
    g = next(iter(r['findings']['vs_random'].values()))
    assert g['n'] == 2 and g['lo'] <= g['gap'] <= g['hi'] and g['claim'] in ('gain', 'loss', 'tie')
    assert r['matching']['2']['held_out'] > 0 and set(r['matching']) == {'2', '4'}
    assert json.loads((out/'sets'/'reference'/'source.json').read_text())['loaded_files'] == ['replay_buffer_0.pt']
