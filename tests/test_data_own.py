"Your own images as a dataset: folders and array files read, converted (and said so), registered under a name, found everywhere; bad input refused."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest, torch
from PIL import Image
from kdd_explore.core import DatasetError
from kdd_explore.data import DatasetInfo, dataset_info, load_dataset, registered_datasets
from kdd_explore.own_data import example_image_folder, read_array_file, read_image_folder, register_dataset

ROOT = Path(__file__).resolve().parents[1]

def kdd(*args, env=None):
    return subprocess.run([sys.executable, '-m', 'kdd_explore.cli', *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT, env={**os.environ, **(env or {})})

def files(root, names):
    "Make `names` under `root`: a .png name is an 8x8 image, anything else a text file."
    for n in names:
        (root/n).parent.mkdir(parents=True, exist_ok=True)
        if n.endswith('.png'): Image.new('L', (8, 8), 128).save(root/n)
        else: (root/n).write_text('not an image')
    return root

def test_folder_with_train_and_test_keeps_pixels_and_classes(tmp_path):
    folder = example_image_folder(tmp_path/'f', n_classes=3, n_train=5, n_test=2, size=8, channels=1)
    r = read_image_folder(folder)
    assert (r['classes'] == ['class0', 'class1', 'class2'] and r['x_train'].shape == (15, 1, 8, 8)
            and r['x_train'].dtype == torch.uint8)
    assert torch.bincount(r['y_test']).tolist() == [2, 2, 2] and r['notes'] == []
    png = np.asarray(Image.open(sorted((folder/'test'/'class2').glob('*.png'))[0]))
    # the first test image of class2, pixel for pixel
    assert torch.equal(r['x_test'][r['y_test'] == 2][0, 0], torch.from_numpy(png.copy()))

def test_a_flat_class_tree_is_split_per_class_with_a_seed(tmp_path):
    files(tmp_path, [f'{c}/{i}.png' for c in 'ab' for i in range(10)])
    r = read_image_folder(tmp_path, test_fraction=0.3, seed=1)
    assert torch.bincount(r['y_test']).tolist() == [3, 3] and torch.bincount(r['y_train']).tolist() == [7, 7]
    assert 'split per class' in r['split']
    assert torch.equal(read_image_folder(tmp_path, test_fraction=0.3, seed=1)['y_train'], r['y_train'])

def test_mixed_sizes_and_modes_are_converted_and_said(tmp_path):
    Image.new('RGB', (10, 10), (255, 0, 0)).save(files(tmp_path, ['a/0.png'])/'a'/'0.png')
    Image.new('RGBA', (20, 10), (0, 255, 0, 128)).save(tmp_path/'a'/'1.png')
    files(tmp_path, ['b/0.png', 'b/1.png'])  # 8x8 grayscale
    Image.new('P', (8, 8)).save(tmp_path/'b'/'2.png')
    r = read_image_folder(tmp_path, size=8, test_fraction=0.4)
    assert r['x_train'].shape[1:] == (3, 8, 8)  # colour wins: every image is RGB now
    modes, sizes = r['notes']
    assert '4 of the 5 images' in modes and 'converted to RGB (from L x2, P x1, RGBA x1)' in modes
    assert ('2 of the 5 images' in sizes and '10x10 x1' in sizes and '20x10 x1' in sizes
            and 'centre-cropped to 8x8' in sizes)
    gray = read_image_folder(tmp_path, size=8, channels=1, test_fraction=0.4)
    assert gray['x_train'].shape[1] == 1 and 'converted to L' in gray['notes'][0]

@pytest.mark.parametrize('names, message', [
    (['cats/1.png', 'cats/2.png'], 'has 1 class (cats)'),
    (['cats/a.txt', 'dogs/b.txt'], 'holds no images in its class folders'),
    ([], 'has no class folders'),
    (['a.png', 'b.png'], 'it holds images directly: a.png, b.png'),
    (['train/cats/1.png', 'train/dogs/1.png', 'test/cats/1.png'], "Classes ['dogs'] are missing from the test split"),
    (['train/cats/1.png', 'train/dogs/1.png', 'test/cats/1.png', 'test/dogs/1.png', 'test/owls/1.png'],
     "has classes that"),
    (['test/cats/1.png'], 'has a test/ folder but no train/ folder'),
    (['cats/1.png', 'cats/broken.png', 'dogs/1.png', 'dogs/2.png'], 'could not be read as an image'),
])
def test_bad_folders_are_refused_with_the_fix(tmp_path, names, message):
    files(tmp_path, names)
    if 'cats/broken.png' in names: (tmp_path/'cats'/'broken.png').write_bytes(b'\x89PNG but not really')
    with pytest.raises(DatasetError, match=None) as e: read_image_folder(tmp_path)
    assert message in str(e.value), str(e.value)

def test_npz_and_safetensors_files(tmp_path):
    x = (np.random.default_rng(0).random((24, 12, 12, 3)) * 255).astype(np.uint8)
    np.savez(tmp_path/'a.npz', images=x, labels=np.repeat([3, 9], 12), x_test=x[:4], y_test=np.array([3, 9, 3, 9]))
    r = read_array_file(tmp_path/'a.npz', size=6)
    assert r['classes'] == ['3', '9'] and r['x_train'].shape == (24, 3, 6, 6) and r['y_test'].tolist() == [0, 1, 0, 1]
    assert r['split'] == 'x_test / y_test as given'
    # channels last read right
    assert torch.equal(read_array_file(tmp_path/'a.npz')['x_train'][0], torch.from_numpy(x[0]).permute(2, 0, 1))
    from safetensors.torch import save_file
    save_file({'x': torch.rand(10, 2, 5, 5), 'y': torch.arange(10) % 2}, str(tmp_path/'bad_layout.safetensors'))
    with pytest.raises(DatasetError, match='expected N x H x W, N x H x W x C or N x C x H x W'):
        read_array_file(tmp_path/'bad_layout.safetensors')
    save_file({'x': torch.rand(10, 1, 5, 5) * 3, 'y': torch.arange(10) % 2}, str(tmp_path/'range.safetensors'))
    assert 'divided by 255' in read_array_file(tmp_path/'range.safetensors')['notes'][0]

def test_an_npz_without_labels_is_refused(tmp_path):
    np.savez(tmp_path/'x.npz', x=np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="has no labels: expected an array of class indices named one of y_train, y, "
                                           "labels, targets"):
        read_array_file(tmp_path/'x.npz')
    np.savez(tmp_path/'y.npz', x=np.zeros((5, 8, 8), np.uint8), y=np.zeros(4, int))
    with pytest.raises(DatasetError, match='one whole number per image'): read_array_file(tmp_path/'y.npz')

def test_registered_name_works_like_a_built_in_one(tmp_path):
    folder = example_image_folder(tmp_path/'f', n_classes=2, n_train=6, n_test=3, size=8)
    d = register_dataset('blobs', folder, root=tmp_path/'data', description='Two blobs.', progress=False)
    again = load_dataset('blobs', root=tmp_path/'data')
    assert torch.equal(again.x_train, d.x_train) and again.mean == d.mean and again.classes == ['class0', 'class1']
    meta = registered_datasets(tmp_path/'data')['blobs']
    assert meta['source'] == str(folder.resolve()) and meta['train_counts'] == [6, 6] and len(meta['mean']) == 3
    assert dataset_info('blobs', root=tmp_path/'data') == DatasetInfo.of(d)
    assert 'Two blobs.' in d.description and 'registered' in d.source
    with pytest.raises(DatasetError, match='takes no options'):
        load_dataset('blobs', root=tmp_path/'data', shape=(1, 8, 8))
    with pytest.raises(DatasetError, match="registered in .*: blobs"): load_dataset('blobz', root=tmp_path/'data')

@pytest.mark.slow
def test_register_and_data_commands(tmp_path):
    folder = example_image_folder(tmp_path/'f', n_classes=2, n_train=6, n_test=3, size=10)
    r = kdd('register', 'blobs', folder, '--size', 8, '--root', tmp_path/'data')
    assert r.returncode == 0, r.stderr
    assert 'were not 8x8' in r.stdout and 'registered blobs (3x8x8 images, 12 train / 6 test, 2 classes)' in r.stdout
    assert f'KDD_DATA={tmp_path/"data"} kdd-explore run --config quick --dataset blobs' in r.stdout
    r = kdd('data', '--dataset', 'blobs', env={'KDD_DATA': str(tmp_path/'data')})
    assert r.returncode == 0 and json.loads(r.stdout)['shape'] == [3, 8, 8]
    r = kdd('data', '--list', '--root', tmp_path/'data')
    assert r.returncode == 0 and 'registered: blobs (3x8x8, 12 train, 2 classes' in r.stdout
    r = kdd('register', 'blobs2', tmp_path/'nowhere', '--root', tmp_path/'data')
    assert r.returncode == 2 and r.stderr.startswith('kdd-explore register: error: ') and 'does not exist' in r.stderr
    r = kdd('run', '--config', 'quick', '--dataset', folder, '--out', tmp_path/'run')
    assert r.returncode == 2 and 'is a path: register it first' in r.stderr
    # nothing written (the run's lock came and went)
    assert not (tmp_path/'run').exists() or not list((tmp_path/'run').iterdir())
