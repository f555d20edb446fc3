"The main job's data ships with the package: the slice serves what it covers, identically to the full files, and only that."
import json, os, subprocess, sys
import pytest
import torch
from kdd_explore.core import DatasetError
from kdd_explore.data import load_dataset, shipped_slice, PartialImages, SLICES, _assets_dir
from kdd_explore.pipeline import slice_rows
from conftest import ROOT

@pytest.fixture
def slice_only(tmp_path, monkeypatch):
    "No full copy of Fashion-MNIST in sight: an empty data folder, Debian's copy hidden."
    monkeypatch.setenv('KDD_DATA', str(tmp_path/'empty'))
    monkeypatch.setenv('KDD_IGNORE_SYSTEM_DATA', '1')
    return tmp_path/'empty'

def test_the_slice_is_small_and_says_where_it_comes_from():
    sl = shipped_slice('fashion_mnist')
    assert sl is not None, 'the package must ship kdd_explore/assets/fashion_mnist_slice.npz'
    size = sum(p.stat().st_size for p in _assets_dir().iterdir())
    assert size < 20e6, f'the package assets weigh {size / 1e6:.1f} MB'
    m = sl['meta']
    assert 'MIT' in m['licence'] and 'Fashion-MNIST' in m['citation'] and m['rows']
    assert set(m['source_files_sha256']) == {'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
                                            't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'}
    assert len(sl['y_train']) == 60_000 and len(sl['x_test']) == 10_000 and sl['x_train'].dtype == torch.uint8

def test_the_slice_holds_what_the_named_configurations_read():
    have = set(shipped_slice('fashion_mnist')['train_ids'].tolist())
    need = set(slice_rows().tolist())
    assert need <= have, (f'{len(need - have)} rows the named configurations read are not in the slice: rebuild it '
                          '(09c_pipeline)')

# quickstart, quick, the variance study
@pytest.mark.parametrize('n_train,n_test,seed', [(5000, 2000, 0), (600, 500, 0), (1000, None, 0)])
def test_the_slice_serves_the_same_tensors_as_the_full_files(slice_only, n_train, n_test, seed):
    if not os.path.isdir('/usr/share/datasets/fashion-mnist'): pytest.skip('needs the full files to compare with')
    served = load_dataset('fashion_mnist', n_train=n_train, n_test=n_test, seed=seed)
    assert served.source.startswith('the slice that ships with kdd_explore')
    os.environ.pop('KDD_IGNORE_SYSTEM_DATA')
    full = load_dataset('fashion_mnist', n_train=n_train, n_test=n_test, seed=seed)
    assert 'slice' not in full.source
    for k in ('x_train', 'y_train', 'x_test', 'y_test'): assert torch.equal(getattr(served, k), getattr(full, k)), k
    assert served.mean == full.mean and served.std == full.std

def test_a_request_outside_the_slice_lists_the_ways(slice_only):
    with pytest.raises(DatasetError, match='apt-get install dataset-fashion-mnist') as e:
        load_dataset('fashion_mnist', n_train=5000, seed=7, download=False)  # another seed: another pool
    assert 'not inside it' in str(e.value)
    with pytest.raises(DatasetError, match='not found locally'):
        load_dataset('fashion_mnist', download=False)  # the whole training set (to train a teacher)

def test_the_whole_split_as_far_as_it_ships(slice_only):
    d = load_dataset('fashion_mnist', partial=True)
    assert isinstance(d.x_train, PartialImages) and len(d.y_train) == 60_000 and d.x_train.shape == (60_000, 1, 28, 28)
    ids = shipped_slice('fashion_mnist')['train_ids'][:10].long()
    assert d.x_train[ids].shape == (10, 1, 28, 28)
    with pytest.raises(DatasetError, match='not in the slice'):
        d.normalize(d.x_train)  # images that are not there are never used silently

def test_the_main_job_runs_from_the_slice_alone(quick_run):
    "`kdd-explore quickstart --quick` with no full copy of the data (the session's quick run): it completes from the slice and fetches nothing."
    # run with Debian's copy hidden (KDD_IGNORE_SYSTEM_DATA=1) and an empty data folder: only the slice to read
    r, run = quick_run
    assert r.returncode == 0 and (run/'results.json').exists()
    empty = run.parent/'empty'
    assert not empty.exists() or not any(empty.rglob('*-ubyte*'))  # nothing was fetched or unpacked
    # the same images as the full files (test above) and a
    # deterministic run (test_pipeline's rerun): the full files' table
