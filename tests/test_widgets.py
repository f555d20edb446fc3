"The widgets outside a notebook: driven from code, fed from files, and refusing bad input with a clear message."
import json, pytest, torch
from types import SimpleNamespace
from kdd_explore.core import KddError
from kdd_explore.widgets import (SnapshotBrowser, VarianceExplorer, TrajectoryExplorer, EmbeddingView, ResultsDashboard,
                                 gain_rows, change_magnitude, nearest_real_class, to_rgb)


def _snaps(n=6, its=(0, 5, 10)):
    g = torch.Generator().manual_seed(0)
    x0, d = torch.randn(n, 1, 8, 8, generator=g), torch.randn(n, 1, 8, 8, generator=g)
    return {it: x0 + 0.1 * it * d for it in its}, x0


def test_snapshot_browser_follows_its_controls():
    snaps, x0 = _snaps()
    real_y = torch.arange(6) % 3
    br = SnapshotBrowser(snaps, x0, real_x=x0, real_y=real_y, n_show=4)
    assert br.controls['iteration'].value == 10
    assert list(br.fig.data[-1].y) == pytest.approx(change_magnitude(snaps[10], x0).tolist())
    br.controls['iteration'].value = 0
    assert list(br.fig.data[-1].y) == [0.0] * 6
    assert (br.fig.data[0].z == to_rgb(x0[0])).all()
    br.controls['first'].value = 2
    assert (br.fig.data[0].z == to_rgb(x0[2])).all() and br.fig.layout.annotations[0].text.startswith('#2 ')
    assert torch.equal(br.nn_class[0], real_y)  # unchanged images are their own nearest neighbours
    json.loads(br.fig.to_json())  # a valid plotly figure after the updates
    assert 'application/vnd.jupyter.widget-view+json' in br._repr_mimebundle_()


def test_snapshot_browser_bad_input():
    snaps, x0 = _snaps()
    with pytest.raises(KddError, match='No snapshots'): SnapshotBrowser({})
    with pytest.raises(KddError, match='do not match the snapshots'): SnapshotBrowser(snaps, x0[:3])
    with pytest.raises(KddError, match='same shape'): change_magnitude(x0, x0[:2])


def test_nearest_real_class_in_chunks():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(50, 1, 4, 4, generator=g); y = torch.arange(50) % 7
    q = real[[3, 17, 42]] + 1e-4
    lab, idx = nearest_real_class(q, real, y, chunk=2)
    assert idx.tolist() == [3, 17, 42] and lab.tolist() == [3, 3, 0]


def _variance(tmp_path):
    bss = [16, 64]
    res = {'dataset': 'fake', 'config': {}, 'losses': {L: dict(batch_sizes=bss, norm_var=[c, c / 4], stderr=[0.1, 0.1])
                                                       for L, c in (('barlow_twins', 8.), ('kd_mse', 1.))}}
    p = tmp_path / 'variance.json'; p.write_text(json.dumps(res))
    return p


def test_variance_explorer_from_json(tmp_path):
    ve = VarianceExplorer(_variance(tmp_path))
    ve.controls['batch_size'].value = 16
    assert list(ve.fig.data[-1].y) == [8., 1.]
    ve.controls['batch_size'].value = 64
    assert list(ve.fig.data[-1].y) == [2., 0.25]
    ve.controls['loss'].value = 'kd_mse'
    assert len(ve.fig.data[0].x) == 0 and list(ve.fig.data[1].y) == [1., 0.25]
    assert ve.at('kd_mse', 16) == 1. and ve.at('kd_mse', 999) is None


def test_variance_explorer_bad_input(tmp_path):
    with pytest.raises(KddError, match="expected a dict with 'losses'"): VarianceExplorer({'dataset': 'x'})
    with pytest.raises(KddError, match="lacks 'batch_sizes'"):
        VarianceExplorer({'losses': {'kd_mse': {'norm_var': [1.]}}})
    (tmp_path / 'bad.json').write_text('{"losses": ')
    with pytest.raises(KddError, match='not valid JSON'): VarianceExplorer(tmp_path / 'bad.json')


def _history(decay, its=range(21), curve_every=10, steps=4):
    recs = [dict(iteration=i, loss=decay**i, start_epoch=0, expert=0, lr=0.1 + 0.001 * i,
                 grad_norm_images=1., grad_norm_targets=1., grad_norm_lr=1., rolled_back=False) for i in its]
    curves = {i: [1 - (1 - decay**i) * s / steps for s in range(steps + 1)] for i in its if i % curve_every == 0}
    return SimpleNamespace(records=recs, snapshots={}, distance_curves=curves)


def test_trajectory_explorer_follows_its_controls():
    te = TrajectoryExplorer({'MKDT': _history(0.8), 'naive': {'records': _history(1.0).records,
                                                              'distance_curves': {0: [1.] * 5}}})
    assert list(te.controls['iteration'].options) == [0, 10, 20]
    te.controls['iteration'].value = 20
    assert te.fig.data[2].y[-1] == pytest.approx(0.8**20)
    assert list(te.fig.data[5].y) == [1.] * 5  # the naive run has only iteration 0: its latest earlier curve is shown
    assert list(te.fig.data[6].x) == [20, 20]
    assert te.curve_at('naive', 5) == [1.] * 5 and te.curve_at('MKDT', 15) == _history(0.8).distance_curves[10]
    raw = list(te.fig.data[0].y); te.controls['smooth'].value = 3
    assert list(te.fig.data[0].y) != raw and te.fig.data[0].y[2] == pytest.approx(sum(raw[:3]) / 3)


def test_trajectory_explorer_bad_input():
    with pytest.raises(KddError, match='at least one history'): TrajectoryExplorer({})
    with pytest.raises(KddError, match='needs `records`'): TrajectoryExplorer({'a': {'distance_curves': {0: [1.]}}})
    with pytest.raises(KddError, match='no distance curves'):
        TrajectoryExplorer({'a': {'records': [], 'distance_curves': {}}})


def test_embedding_view():
    g = torch.Generator().manual_seed(0)
    reps, y = torch.randn(120, 8, generator=g), torch.arange(120) % 4
    ev = EmbeddingView(reps, y, reps[:6] + 0.1, target_y=y[:6], initial_targets=reps[:6], max_points=100)
    assert len(ev.fig.data) == 6 and len(ev.fig.data[-1].x) == 6
    assert sum(len(t.x) for t in ev.fig.data[:4]) == 100
    assert len(ev.fig.data[4].x) == 18  # one line (start, end, gap) per target
    ev.controls['method'].value = 'tsne'
    assert 't-SNE' in ev.fig.layout.title.text and len(ev.fig.data[-1].x) == 6
    with pytest.raises(KddError, match='same teacher'): EmbeddingView(reps, y, torch.randn(3, 5))
    with pytest.raises(KddError, match="Unknown projection"): ev.project('umap')


def _results():
    return {'dataset': 'fake', 'config': {}, 'timings': {}, 'results': [
        dict(method=m, label_fraction=f, acc_mean=a + f, acc_std=s, accs=[a + f]) for m, a, s in
        (('no_pretrain', 10., 0.), ('random_subset', 40., 3.), ('mkdt_high_loss', 45., 4.)) for f in (0.01, 0.05)]}


def test_results_dashboard_from_path(tmp_path):
    p = tmp_path / 'results.json'; p.write_text(json.dumps(_results()))
    rd = ResultsDashboard(p)
    assert [t.name for t in rd.fig.data] == ['no_pretrain', 'random_subset', 'mkdt_high_loss']
    assert list(rd.fig.data[0].x) == [1.0, 5.0]
    rd.controls['baseline'].value = 'random_subset'
    assert [t.name for t in rd.fig.data] == ['no_pretrain', 'mkdt_high_loss']
    assert (list(rd.fig.data[1].y) == pytest.approx([5., 5.])
            and list(rd.fig.data[1].error_y.array) == pytest.approx([5., 5.]))
    rd.controls['methods'].value = ('no_pretrain',)
    assert [t.name for t in rd.fig.data] == ['no_pretrain'] and list(rd.fig.data[0].y) == pytest.approx([-30., -30.])


def test_results_bad_input(tmp_path):
    with pytest.raises(KddError, match='Not a results file'): ResultsDashboard({'dataset': 'x'})
    with pytest.raises(KddError, match='no rows'): ResultsDashboard({'results': []})
    with pytest.raises(KddError, match='does not exist'): ResultsDashboard(tmp_path / 'nope.json')
    with pytest.raises(KddError, match="Baseline 'krr_st' is not among"): gain_rows(_results()['results'], 'krr_st')
