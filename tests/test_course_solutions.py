"Each course reference solution computes what the library function it teaches computes, on random inputs: the lessons teach the code that runs."
import pytest, torch
from kdd_explore import course_exercises as X
from kdd_explore.ssl import BarlowTwinsLoss
from kdd_explore.kd import kd_loss
from kdd_explore.models import build_model
from kdd_explore.metagrad import kd_step_loss, unroll_match
from kdd_explore.data import stratified_indices, stratified_counts
from kdd_explore.core import make_generator

def _randn(*shape, seed=0): return torch.randn(*shape, generator=make_generator(seed), dtype=torch.float64)

@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('lambd', [5e-3, 0.1])
def test_barlow_twins_loss_is_the_librarys(seed, lambd):
    z1, z2 = _randn(16, 8, seed=seed), _randn(16, 8, seed=seed + 10)
    torch.testing.assert_close(X.reference_barlow_twins_loss(z1, z2, lambd), BarlowTwinsLoss(lambd)(z1, z2))

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_kd_loss_is_the_librarys(seed):
    p, t = _randn(12, 5, seed=seed), _randn(12, 5, seed=seed + 10)
    torch.testing.assert_close(X.reference_kd_loss(p, t), kd_loss(p, t))

ARCH = dict(name='convnet', in_channels=1, im_size=8, width=4, depth=2, out_dim=3, norm='instance')

@pytest.mark.parametrize('seed', [0, 1])
def test_sgd_step_unroll_and_matching_loss_are_the_librarys_meta_gradient_forward(seed):
    "Lesson 4's unroll of `sgd_step`s and its matching loss give the loss (and distance curve) of `unroll_match` on the same minibatches."
    model = build_model(ARCH, seed=seed).double()
    start = {k: v.detach().double() for k, v in model.named_parameters()}
    target = {k: v + 0.05 * _randn(*v.shape, seed=seed + 20) for k, v in start.items()}
    x, y, lr, steps, batch = _randn(10, 1, 8, 8, seed=seed + 1), _randn(10, 3, seed=seed + 2), torch.tensor(0.1,
                                                                        dtype=torch.float64), 4, 4
    leaf = {k: v.clone().requires_grad_(True) for k, v in start.items()}  # the lesson's steps keep their graph
    traj = X.reference_unroll(model, leaf, x, y, lr, steps, batch, seed=seed)
    ours = X.reference_matching_loss(traj[-1], start, target)
    batches = list(X.minibatches(len(x), batch, steps, seed))
    loss, _, _, curve = unroll_match(start, target, lr.clone().requires_grad_(True), [x, y],
                                     kd_step_loss(model, x, y, batches), steps, 'full', distances=True)
    torch.testing.assert_close(ours.detach(), loss)
    torch.testing.assert_close(torch.tensor([float(X.reference_matching_loss(t, start, target).detach()) for t in traj], dtype=torch.float64),
                               torch.tensor(curve, dtype=torch.float64))

@pytest.mark.parametrize('im_size,first_padding,depth', [(28, 3, 3), (28, 1, 4), (32, 1, 3), (29, 1, 2), (27, 2, 3)])
def test_feature_side_is_the_convnets(im_size, first_padding, depth):
    m = build_model(dict(ARCH, im_size=im_size, first_padding=first_padding, depth=depth))
    side = X.reference_feature_side(im_size, first_padding, depth)
    assert m.feat_dim == ARCH['width'] * side * side
    assert m.features(torch.zeros(1, 1, im_size, im_size)).shape[1] == m.feat_dim

@pytest.mark.parametrize('fraction', [0.1, 0.25, 0.5])
def test_stratified_subset_keeps_what_the_library_keeps(fraction):
    "The same number of each class as `stratified_indices` (the draw within a class is the lesson's own)."
    y = torch.randint(0, 4, (200,), generator=make_generator(3))
    ours, lib = X.reference_stratified_subset(y, fraction, seed=0), stratified_indices(y, fraction, seed=0)
    counts = torch.unique(y, return_counts=True)[1].tolist()
    assert torch.bincount(y[ours], minlength=4).tolist() == torch.bincount(y[lib], minlength=4).tolist() \
        == stratified_counts(counts, fraction)
