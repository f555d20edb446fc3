"The README's 'Stage by stage' commands, in order, on a fresh machine: no full copy of Fashion-MNIST, only the shipped slice."
import os, re, shlex, subprocess, sys
import pytest
from pathlib import Path
from kdd_explore.core import artifact_exists, read_meta

README = Path(__file__).parent.parent/'README.md'
# toy sizes in place of the README's
TOY = {'teacher': {'--epochs': '1'}, 'experts': {'--n-experts': '1', '--epochs': '3'}}
EXTRA = {'variance': ['--quick'], 'distill': ['--iterations', '2']}

def readme_stage_commands():
    "The README's stage commands (teacher, variance, experts, distill on their experts), in order, as argument lists."
    block = README.read_text().split('## Stage by stage', 1)[1].split('```bash', 1)[1].split('```', 1)[0]
    cmds = [shlex.split(l.split('#')[0])[1:] for l in block.splitlines() if l.startswith('kdd-explore ')]
    cmds = [c for c in cmds if c[0] in ('teacher', 'variance', 'experts')
            or (c[0] == 'distill' and 'runs/e/experts' in c)]
    assert [c[0] for c in cmds] == ['teacher', 'variance', 'experts', 'distill'], cmds
    return cmds

def toy(cmd):
    "A command at toy size: the README's options with smaller sizes, quiet."
    out = list(cmd)
    for opt, v in TOY.get(cmd[0], {}).items(): out[out.index(opt) + 1] = v
    return out + EXTRA.get(cmd[0], []) + ['--quiet']

@pytest.mark.slow
def test_readme_stage_commands_run_in_order_on_the_slice(tmp_path):
    env = dict(os.environ, KDD_IGNORE_SYSTEM_DATA='1', KDD_DATA=str(tmp_path/'data'), OMP_NUM_THREADS='1')
    run = tmp_path/'clone'; run.mkdir()
    for cmd in map(toy, readme_stage_commands()):
        r = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', *cmd], cwd=run, env=env,
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{cmd}: {r.stderr[-2000:]}"
        assert 'not inside' not in r.stderr
    assert read_meta(run/'runs/t/teacher')['epochs'] == 1
    assert read_meta(run/'runs/e/experts')['n_train'] == 5000  # the quickstart's pool, which the slice holds
    assert (run/'runs/v/variance.json').exists() and artifact_exists(run/'runs/d/synthetic_set')
    assert not (tmp_path/'data').exists() or not any((tmp_path/'data').rglob('*-ubyte*'))  # nothing was downloaded
