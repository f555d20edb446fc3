"Bad input and plumbing of the foundation: data, artifacts, models, CLI, and the project's own wiring."
import gzip, json, os, re, subprocess, sys
from pathlib import Path
import pytest, torch
from kdd_explore import core, data
from kdd_explore.core import ArtifactError, DatasetError, load_artifact, save_artifact
from kdd_explore.data import load_dataset, stratified_indices
from kdd_explore.models import ConvNet, build_model, resnet18_cifar

ROOT = Path(__file__).resolve().parents[1]

def test_unknown_dataset_lists_known():
    with pytest.raises(DatasetError, match='Known datasets: fashion_mnist, cifar10, cifar100, digits, fake'):
        load_dataset('mnist-typo')

def test_missing_data_without_network_gives_one_clear_error(tmp_path, monkeypatch):
    "No local files, no Debian copy, and downloads fail: a DatasetError naming the ways to provide the data."
    monkeypatch.setattr(data, 'DEBIAN_FASHION_MNIST', tmp_path/'no-debian')
    import torchvision.datasets.utils as u
    def no_network(*a, **k): raise OSError('network is unreachable')
    monkeypatch.setattr(u, 'urlopen', no_network, raising=False)
    monkeypatch.setattr(u, '_urlretrieve', no_network, raising=False)
    with pytest.raises(DatasetError) as e: load_dataset('fashion_mnist', root=tmp_path/'empty')
    msg = str(e.value)
    assert 'apt-get install dataset-fashion-mnist' in msg and 'root=' in msg and 'internet' in msg
    with pytest.raises(DatasetError, match='could not be downloaded'):
        load_dataset('cifar10', root=tmp_path/'empty', download=False)

def test_corrupt_fashion_mnist_files(tmp_path, monkeypatch):
    monkeypatch.setattr(data, 'DEBIAN_FASHION_MNIST', tmp_path/'no-debian')
    raw = tmp_path/'FashionMNIST'/'raw'; raw.mkdir(parents=True)
    for n in ('train-images-idx3', 'train-labels-idx1', 't10k-images-idx3', 't10k-labels-idx1'):
        (raw/f'{n}-ubyte').write_bytes(b'\x00\x00\x08\x03garbage')
    with pytest.raises(DatasetError, match='missing or corrupt'):
        load_dataset('fashion_mnist', root=tmp_path, download=False)

@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(), reason='needs Debian dataset-fashion-mnist')
def test_fashion_mnist_from_debian_files(tmp_path):
    d = load_dataset('fashion_mnist', root=tmp_path, n_train=1000, n_test=100, download=False)
    assert d.x_train.shape == (1000, 1, 28, 28) and d.n_classes == 10
    assert 'Debian' in d.source and (tmp_path/'FashionMNIST'/'raw'/'train-images-idx3-ubyte').exists()
    assert 0.2 < d.mean[0] < 0.4  # Fashion-MNIST's pixel mean is about 0.29

@pytest.mark.parametrize('fraction', [0, -0.1, 1.01, float('nan'), '5%'])
def test_label_fraction_out_of_range(fraction):
    with pytest.raises(DatasetError, match=r'\(0, 1\]'): stratified_indices(torch.arange(100) % 10, fraction)

def test_label_fraction_too_small_for_a_class():
    y = torch.cat([torch.zeros(1000), torch.ones(20)]).long()
    with pytest.raises(DatasetError, match='class 1 \\(20 examples\\) without any example'): stratified_indices(y, 0.01)

def test_artifact_wrong_kind_and_arch(tmp_path):
    net = ConvNet(1, 28, width=16, depth=2, out_dim=8)
    save_artifact(tmp_path/'a', {k: v for k, v in net.state_dict().items()}, {'kind': 'teacher', 'arch': net.arch})
    with pytest.raises(ArtifactError, match="kind: expected 'experts', found 'teacher'"):
        load_artifact(tmp_path/'a', {'kind': 'experts'})
    other = resnet18_cifar(1).arch
    with pytest.raises(ArtifactError, match='arch: expected .*resnet18_cifar.*found .*convnet'):
        load_artifact(tmp_path/'a', {'arch': other})
    t, m = load_artifact(tmp_path/'a.json', {'kind': 'teacher', 'arch': net.arch})
    build_model(m['arch']).load_state_dict(t)

def test_half_written_artifact_is_refused_and_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    save_artifact(tmp_path/'good', {'x': torch.ones(3)}, {'kind': 'demo'})
    (tmp_path/'good.json').unlink()  # as if the run died between the two files
    with pytest.raises(ArtifactError, match='interrupted'): load_artifact(tmp_path/'good')
    def dies(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(core, 'save_file', dies)
    with pytest.raises(KeyboardInterrupt): save_artifact(tmp_path/'new', {'x': torch.ones(3)}, {'kind': 'demo'})
    assert sorted(p.name for p in tmp_path.iterdir()) == ['good.safetensors']

def test_truncated_and_corrupt_artifact(tmp_path):
    save_artifact(tmp_path/'a', {'x': torch.randn(100)}, {'kind': 'demo'})
    f = tmp_path/'a.safetensors'; f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(ArtifactError, match='truncated'): load_artifact(tmp_path/'a')
    meta = json.loads((tmp_path/'a.json').read_text()); meta.pop('sha256')
    (tmp_path/'a.json').write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match='could not be read'): load_artifact(tmp_path/'a')

def test_convnet_reference_size():
    assert sum(p.numel() for p in ConvNet(3, 32, 128, 3, 512).parameters()) == 1_348_608

@pytest.mark.slow
def test_cli_error_is_one_line_not_a_traceback():
    r = subprocess.run([sys.executable, '-m', 'kdd_explore.cli', 'data', '--dataset', 'nope'],
                       capture_output=True, text=True)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.strip().startswith("kdd-explore data: error: Unknown dataset 'nope'")

def test_ci_calls_the_readme_test_command():
    "The README's second command is what CI runs (`bash .ci/run`), and it ends in the test command the README names for a set-up machine."
    readme, ci = (ROOT/'README.md').read_text(), (ROOT/'.ci'/'run').read_text()
    block = re.search(r'## Set-up: two commands.*?```bash\n(.*?)```', readme, re.S)
    assert block, 'the README must show its two commands in a bash block under "Set-up: two commands"'
    lines = [l for l in block.group(1).splitlines() if l.strip()]
    assert len(lines) == 2 and 'kdd-explore quickstart' in lines[0] and lines[1].split('#')[0].strip() == 'bash .ci/run'
    assert 'bash tests/run.sh' in ci and '`bash tests/run.sh`' in readme

@pytest.mark.parametrize('umask, mode', [(0o022, 0o644), (0o077, 0o600)], ids=['umask022', 'umask077'])
def test_written_files_respect_the_umask(tmp_path, monkeypatch, umask, mode):
    "Artifacts, JSON files and reports get the mode any new file gets (not mkstemp's 0600), also where /proc cannot be read."
    old = os.umask(umask)
    try:
        save_artifact(tmp_path/'a', {'x': torch.ones(2)}, {'kind': 'demo'})
        core.save_json(tmp_path/'b.json', {'x': 1})
        def no_proc(*a, **k): raise OSError('no /proc here')
        monkeypatch.setattr(core, 'open', no_proc, raising=False)  # the fallback: set the umask and put it back
        core.atomic_write_bytes(tmp_path/'c.html', b'<p>')
        assert os.umask(umask) == umask  # the umask is unchanged afterwards
    finally: os.umask(old)
    for f in ('a.safetensors', 'a.json', 'b.json', 'c.html'):
        assert oct((tmp_path/f).stat().st_mode & 0o777) == oct(mode), f

def _dead_pid():
    "The PID of a process that has run and exited (and been reaped)."
    return int(subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                              capture_output=True, text=True).stdout)

def test_run_lock_refuses_a_second_run_of_a_live_process(tmp_path):
    from kdd_explore.core import KddError, RunLock
    first = RunLock(tmp_path/'run').acquire()
    info = json.loads((tmp_path/'run'/'.lock').read_text())
    assert info['pid'] == os.getpid() and info['host'] and info['since']
    with pytest.raises(KddError, match=rf"in use by another run: process {os.getpid()} .*since "
                                       rf"{re.escape(info['since'])}.*--out"):
        RunLock(tmp_path/'run').acquire()
    assert json.loads((tmp_path/'run'/'.lock').read_text()) == info  # the refused run left the lock alone
    first.release()
    assert not (tmp_path/'run'/'.lock').exists()
    with RunLock(tmp_path/'run'): pass  # free again

def test_run_lock_takes_over_a_dead_process_lock(tmp_path, capsys):
    import socket
    from kdd_explore.core import RunLock
    pid = _dead_pid()
    (tmp_path/'.lock').write_text(json.dumps(dict(pid=pid, host=socket.gethostname(),
                                                  since='2024-05-01T10:00:00+00:00')))
    with RunLock(tmp_path):
        assert json.loads((tmp_path/'.lock').read_text())['pid'] == os.getpid()
    assert not (tmp_path/'.lock').exists()
    note = capsys.readouterr().out
    assert 'taking over the stale lock' in note and f'process {pid}' in note

def test_run_lock_is_released_on_error_and_interrupt(tmp_path):
    from kdd_explore.core import RunLock
    for exc in (ValueError, KeyboardInterrupt):
        with pytest.raises(exc):
            with RunLock(tmp_path): raise exc()
        assert not (tmp_path/'.lock').exists()

@pytest.mark.slow
@pytest.mark.parametrize('ci', [None, 'KDD_CI=1', 'CI=true'], ids=['outside_ci', 'kdd_ci', 'ci_true'])
def test_browser_test_skips_without_chromium_but_fails_in_ci(tmp_path, ci):
    "Without a Chromium on PATH the report's browser test is skipped, saying why; in CI (CI=true, or KDD_CI=1 from .ci/run) it fails instead."
    env = {k: v for k, v in os.environ.items() if k not in ('KDD_CI', 'CI')}
    env['PATH'] = str(tmp_path)  # no browser there
    if ci: k, v = ci.split('='); env[k] = v
    r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-rsf', '-p', 'no:cacheprovider',
                        'tests/test_report_browser.py::test_the_check_sees_javascript_errors_and_broken_images'],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    if ci:
        assert (r.returncode == 1 and '1 error' in r.stdout
                and 'CI (CI=true or KDD_CI=1) but no Chromium on PATH' in r.stdout), r.stdout[-2000:]
    else: assert r.returncode == 0 and '1 skipped' in r.stdout and 'no Chromium on PATH' in r.stdout, r.stdout[-2000:]

def test_ci_run_needs_no_root_and_is_strict_where_it_installs():
    "Not root or no apt-get: .ci/run skips the apt step, saying so; where it installs Chromium it exports KDD_CI=1 first."
    ci = (ROOT/'.ci'/'run').read_text()
    assert 'id -u' in ci and 'apt step skipped' in ci
    assert re.search(r'^ +export KDD_CI=1\b', ci, re.M) and ci.index('export KDD_CI=1') < ci.index('bash tests/run.sh')
    assert ci.index('apt-get install -y') < ci.index('export KDD_CI=1')

