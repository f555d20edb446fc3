"""The pages of the quickstart and the recipes' runs: the main job, the protocol matrix, the paper's regime on
Fashion-MNIST, CIFAR-10 on the CPU, KRR-ST beside MKDT, and what earlier studies of the quickstart found (in words)."""
from __future__ import annotations
from kdd_explore.core import md_table
from .registry import MAIN_JOB, study, by_method, findings_lines, pct, pm, run_table

@study('main-job', 'The main job', 'the quickstart on Fashion-MNIST: every method, its findings, the horizon, transfer '
                                   'and stage times',
       files=dict(run=MAIN_JOB), make='python benchmarks/studies/isa_pinning.py --config quickstart, then python -m '
                                      'benchmarks.pages record RUN/results.json',
       needs=dict(run=['results', 'findings', 'timings', 'config', 'provenance']))
def _main_job(f):
    from kdd_explore.evaluate import results_figure
    r, c = f['run'], f['run']['config']
    p = r['provenance']
    out = [f"`{p['command']}` on {p['machine']}, {p['date']}: {p.get('wall_s', 0) / 60:.1f} minutes. Fashion-MNIST, a "
           f"{c['n_train']:,}-image pool, the shipped teacher, ConvNet students of width {c['width']} and depth "
           f"{c['depth']}, {c['n_experts']} KD experts x {c['expert_epochs']} epochs, synthetic sets of "
           f"{r['synthetic_sets']['mkdt_high_loss']['n']} images, {c['distill']['iterations']} distillation iterations "
           f"of {c['distill']['syn_steps']} inner steps; pre-training {c['eval_epochs']} epochs at batch "
           f"{c['eval_batch_size']}. Linear-probe top-1 (%) on the test images with "
           f"{' / '.join(pct(x) for x in c['fractions'])} of the full training split's labels, mean ± std over seeds "
           f"{', '.join(map(str, c['seeds']))}, and each encoder's KD loss on the pool:", run_table(r),
           results_figure(r['results'], 'The main job: linear-probe accuracy after pre-training'), '## What it says',
           '\n'.join(findings_lines(r['results']))]
    sets = r.get('synthetic_sets', {})
    if any('matching_loss_start' in v for v in sets.values()):
        out += ['## The distilled sets', md_table(['set', 'images', 'learned lr', 'matching loss, start', 'end',
                                                   'step budget ratio (learned lr)'],
                [[k, v['n'], f"{v['lr']:.3f}", f"{v['matching_loss_start']:.3f}", f"{v['matching_loss_end']:.3f}",
                  f"{v['step_budget_learned']['ratio']:.2%}"]
                 for k, v in sets.items() if 'matching_loss_start' in v])]
    if r.get('horizon'):
        steps = sorted({h['step'] for h in r['horizon']})
        ms = list(dict.fromkeys(h['method'] for h in r['horizon']))
        hb = {(h['method'], h['step']): h for h in r['horizon']}
        out += ['## The horizon check', f"Pool KD loss and probe top-1 at {pct(r['horizon'][0]['label_fraction'])} "
                                        "labels after each number of "
                "pre-training steps, for MKDT and its initial images at the same learned lr:",
                md_table(['step'] + [f'{m}: KD loss' for m in ms] + [f'{m}: probe' for m in ms],
                         [[t] + [f"{hb[m, t]['kd_loss_mean']:.3f}" for m in ms] + [pm(hb[m, t]) for m in ms]
                          for t in steps])]
    if r.get('transfer'):
        from kdd_explore.evaluate import results_table
        out += ['## Transfer', f"The same sets pre-train a {c['transfer']['name']} (mean ± std over the seeds):",
                results_table(r['transfer'])]
    out += ['## Stage times', md_table(['stage', 'seconds'], [[k, f'{v:.1f}'] for k, v in r['timings'].items()])]
    return out

def _cells(rows, student, protocol, labels):
    return [r for r in rows if r['student'] == student and r['protocol'] == protocol and r['labels'] == labels]

@study('protocol', 'The protocol matrix', "two students x two probes x two label sources on the quickstart's scale: "
                                          "where a gain can show at all",
       files=dict(study='benchmarks/results/protocol_study.json'),
       make='python benchmarks/studies/protocol_study.py --out runs/protocol_study',
       needs=dict(study=['rows', 'students']))
def _protocol(f):
    import plotly.graph_objects as go
    from kdd_explore.evaluate import gap
    rows = f['study']['rows']
    methods = list(dict.fromkeys(r['method'] for r in rows))
    keys = list(dict.fromkeys((r['student'], r['protocol'], r['labels']) for r in rows))
    body, fig_x, fig_head, fig_mkdt = [], [], [], []
    for st, pr, lb in keys:
        rs = _cells(rows, st, pr, lb)
        by = by_method(rs)
        h, m, i = (gap(rs, 'full_data_kd', 'random_subset'), gap(rs, 'mkdt_high_loss', 'random_subset'),
                   gap(rs, 'mkdt_high_loss', 'mkdt_initial_at_learned_lr'))
        for fr in sorted({r['label_fraction'] for r in rs}):
            body.append([st, pr, lb, pct(fr)] + [pm(by[mm, fr]) if (mm, fr) in by else '' for mm in methods] +
                        [f"{g[fr]['gap']:+.1f} ({g[fr]['in_stds']})" for g in (h, m, i)])
            fig_x.append(f'{st}/{pr}/{lb}/{pct(fr)}'); fig_head.append(h[fr]['in_stds'])
            fig_mkdt.append(m[fr]['in_stds'])
    stu = f['study']['students']
    kd = {st: {mm: next(r['kd_loss_mean'] for r in rows if r['student'] == st and r['method'] == mm) for mm in methods}
          for st in stu}
    fig = go.Figure([go.Bar(x=fig_x, y=fig_head, name='headroom: full-data KD - random subset'),
                     go.Bar(x=fig_x, y=fig_mkdt, name='MKDT - random subset')])
    fig.update_layout(title='Gaps in units of the larger std, per probe setting', yaxis_title='stds',
                      barmode='group', height=460, legend=dict(orientation='h', y=-0.45), xaxis_tickangle=-45)
    m_all = [abs(x) for x in fig_mkdt]
    big = [x for x in fig_head]
    return [f"Each encoder is pre-trained once per seed and probed four ways. Students: " +
            '; '.join(f"`{k}` (ConvNet depth {v['depth']}, first padding {v['first_padding']})"
                      for k, v in stu.items()) +
            ". Labels: 1% / 5% of the `pool` or of the `full` training split. Linear-probe top-1 (%), mean ± std over "
            "3 seeds; the last three columns are differences of means, with the larger std's multiple in brackets.",
            md_table(['student', 'probe', 'labels', 'label %'] + methods
                     + ['headroom: full KD - random', 'MKDT - random', 'MKDT - its initial set at the same lr'], body),
            fig, '**Pool KD loss** of each encoder (it does not depend on the probe): ' +
            '; '.join(f"`{st}` " + ', '.join(f"{mm} {v:.3f}" for mm, v in kd[st].items()) for st in stu) + '.',
            '## What it says',
            f"- **Headroom decides what a setting can show.** Full-data KD minus the random subset ranges from "
            f"{min(big):.1f} to {max(big):.1f} stds over the {len(big)} cells; where it is small, no set can beat the "
            "random subset by a resolvable margin.\n- **MKDT against the random subset** stays within "
            f"{max(m_all):.2f} of the larger std in every cell: a tie wherever the comparison is made.\n"
            "- **The reference probe** (`protocol='reference'`) and labels from the pool widen the stds; the full "
            "split's labels, as the paper probes, narrow them."]

@study('fashion-mnist-2pct', "The paper's regime on Fashion-MNIST",
       "the whole 60,000-image training set as the pool and a 2% set (1,200 images) with the reference's padded "
       "student, KRR-ST beside MKDT",
       files=dict(krr='benchmarks/results/krr_st_fashion_mnist_2pct.json',
                  first='benchmarks/results/fashion_mnist_2pct_results.json'),
       make='kdd-explore run --config fashion_mnist_2pct --set \'distilled_baselines=["krr_st"]\' --set '
            'horizon_steps=null --out runs/fm2pct_krr',
       needs=dict(krr=['results', 'timings', 'synthetic_sets'], first=['results', 'timings', 'horizon']))
def _fm2pct(f):
    from kdd_explore.evaluate import gap
    k, first = f['krr'], f['first']
    s = k['synthetic_sets']['mkdt_high_loss']
    rs = k['results']
    out = ["4 KD experts x 3 epochs of full-data KD at batch 256, the high-loss images per k-means cluster, 100 "
           "distillation iterations of 20 inner steps, pre-training 20 epochs at batch 256; probe with 1% / 5% of the "
           "full split's labels. Top-1 (%) on the 10,000 test images, mean ± std over seeds 0, 1, 2:",
           run_table(k), '## What it says', '\n'.join(findings_lines(rs)),
           f"- **Reach**: the matching loss went from {s['matching_loss_start']:.3f} to {s['matching_loss_end']:.3f}; "
           f"learned lr {s['lr']:.3f}; step budget ratio {s['step_budget_learned']['ratio']:.2%} at it.",
           '## Stage times', md_table(['stage', 'seconds'], [[a, f'{b:.0f}'] for a, b in k['timings'].items()]),
           '## The first run, with the horizon check',
           "An earlier run of the same recipe with an earlier version of the code (no KRR-ST; the horizon check on). "
           "The code between the two runs changed in ways that move the last bits, and the distillation amplifies "
           "them: read the two tables as two samples of one setting.", run_table(first)]
    steps = sorted({h['step'] for h in first['horizon']})
    hb = {(h['method'], h['step']): h for h in first['horizon']}
    ms = list(dict.fromkeys(h['method'] for h in first['horizon']))
    out += ['Horizon check (pool KD loss / probe at 1% labels after each number of pre-training steps):',
            md_table(['step'] + ms, [[t] + [f"{hb[m, t]['kd_loss_mean']:.3f} / {pm(hb[m, t])}"
                                            for m in ms] for t in steps])]
    return out

@study('cifar10', 'CIFAR-10 on the CPU', "the paper's data with a CPU teacher: the teacher's probe, headroom before "
                                         "any distillation, the recipe's table with KRR-ST",
       files=dict(t14='benchmarks/results/teacher_probe_cifar10_jpeg_epoch14.json',
                  t30='benchmarks/results/teacher_probe_cifar10_jpeg_epoch30.json',
                  h2='benchmarks/results/headroom_cifar10_jpeg.json',
                  h15='benchmarks/results/headroom_cifar10_jpeg_epoch15.json',
                  h30='benchmarks/results/headroom_cifar10_jpeg_epoch30.json',
                  recipe='benchmarks/results/krr_st_cifar10_jpeg.json'),
       make='see each file: python benchmarks/studies/teacher_probe.py, python benchmarks/studies/headroom_study.py, '
            'kdd-explore run --config cifar10_cpu',
       needs=dict(t14=['teacher', 'random_init_same_arch'], t30=['teacher', 'random_init_same_arch'], h2=['lines'],
                  h15=['lines'], h30=['lines'], recipe=['results', 'timings']))
def _cifar10(f):
    t = [('the teacher, 30 epochs (shipped)', f['t30']['teacher']), ('the teacher after epoch 14', f['t14']['teacher']),
         ('the same SmallResNet at its random initialisation', f['t30']['random_init_same_arch'])]
    heads = []
    for key in ('h2', 'h15', 'h30'):
        for ln in f[key]['lines']:
            heads.append([ln['teacher_epoch'], pct(ln['label_fraction'])]
                         + [f"{ln[m][0]:.1f} ± {ln[m][1]:.1f}" for m in ('no_pretrain',
                                                                         'random_subset', 'full_data_kd')]
                         + [f"{ln['headroom_points']:+.1f} points, {ln['headroom_stds']:.1f} stds"])
    last = [ln for ln in f['h30']['lines']]
    return ["Data: **CIFAR-10 (JPEG q75 copy)**, all 60,000 images of the official split stored as JPEG files of "
            "quality 75, registered as `cifar10_jpeg`: not the original pixels, so compare with the paper only as a "
            "trend. The teacher is Barlow Twins on the 50,000 training images with the CPU-sized `SmallResNet`, 30 "
            "epochs (`kdd-explore teacher --dataset cifar10_jpeg --arch small_resnet --epochs 30`); it ships as "
            "`kdd_explore/assets/teacher_cifar10`.",
            '## The teacher', 'Linear probe on its frozen features, top-1 (%) on the 10,000 test images with '
                              'stratified labels:',
            md_table(['encoder', '1% labels', '5%', '100%'],
                     [[n, *(f"{d[k]:.1f}" for k in ('1%', '5%', '100%'))] for n, d in t]),
            '## Headroom before any distillation', "The recipe `cifar10_cpu` (pool 5,000, width-32 depth-3 student) "
                                                   "with teachers of "
            "2, 15 and 30 epochs; probe top-1 (%), seeds 0, 1, 2:",
            md_table(['teacher epochs', 'labels', 'no_pretrain', 'random_subset', 'full_data_kd', 'headroom'], heads),
            "With the finished teacher the headroom is "
            f"{' / '.join(format(ln['headroom_points'], '.1f') for ln in last)} points "
            f"({' / '.join(format(ln['headroom_stds'], '.1f') for ln in last)} stds): on CIFAR-10 a 2% set has "
            "room to win.",
            '## The recipe, with KRR-ST', "`cifar10_cpu` with the shipped teacher, MKDT from high-loss and from random "
                                          "images, "
            "and KRR-ST; probe top-1 (%) and pool KD loss:", run_table(f['recipe']),
            '\n'.join(findings_lines(f['recipe']['results'])), '## Stage times',
            md_table(['stage', 'seconds'], [[a, f'{b:.0f}'] for a, b in f['recipe']['timings'].items()])]

@study('krr-st', 'KRR-ST beside MKDT', 'the earlier distillation method for SSL pre-training: its cost per iteration '
                                       'and its rows on two recipes',
       files=dict(cost='benchmarks/results/krr_st_cost.json', fm='benchmarks/results/krr_st_fashion_mnist_2pct.json',
                  c10='benchmarks/results/krr_st_cifar10_jpeg.json'),
       make='OMP_NUM_THREADS=1 python benchmarks/speed/krr_st_cost.py (cost); the run commands of the two recipes are '
            'on this page',
       needs=dict(cost=['mkdt', 'krr_st', 'ratio_per_iteration_cpu'], fm=['results'], c10=['results']))
def _krr(f):
    c = f['cost']
    m, k = c['mkdt'], c['krr_st']
    rows = [['MKDT', f"{m['settings']['iterations']} iterations of {m['settings']['syn_steps']} inner steps",
             f"{m['s_per_iteration_wall']:.2f}", f"{m['s_per_iteration_cpu']:.2f}",
             f"{m['run_wall']:.0f}", f"{m['run_cpu']:.0f}"],
            ['KRR-ST', f"pool warm-up ({k['warm_up_steps']} steps) + {k['settings']['iterations']} iterations",
             f"{k['s_per_iteration_wall']:.2f}", f"{k['s_per_iteration_cpu']:.2f}",
             f"{k['run_wall']:.0f}", f"{k['run_cpu']:.0f}"]]
    def sub(res):
        return [r for r in res if r['method'] in ('random_subset', 'mkdt_high_loss', 'krr_st',
                                                  'krr_st_at_learned_lr', 'full_data_kd')]
    from kdd_explore.evaluate import results_table
    return ["KRR-ST (Lee et al., ICLR 2024) learns images and target representations so that a kernel ridge "
            "regression on them, solved in closed form through the features of a pool of models trained on the set as "
            "it goes, predicts the teacher's representations of real images. It needs no expert trajectories. Lesson: "
            "`06b_krr_st`.",
            f"## Cost beside MKDT ({c['pool']:,}-image pool, {c['n_synthetic']} synthetic images, the quickstart's "
            "student)",
            md_table(['', 'one run', 'per iteration, wall (s)', 'per iteration, CPU (s)',
                      'run, wall (s)', 'run, CPU (s)'], rows),
            f"A KRR-ST iteration costs {c['ratio_per_iteration_cpu']:.2f} of an MKDT iteration (CPU seconds); MKDT's "
            "experts, recorded once for every MKDT set, are not counted: KRR-ST needs none. The machine was shared, so "
            "read the ratios, not the seconds.",
            "## On the paper's regime on Fashion-MNIST", f"`{f['fm'].get('command', '')}`:",
            results_table(sub(f['fm']['results'])), '\n'.join(findings_lines(f['fm']['results'])),
            "## On the CIFAR recipe", f"`{f['c10'].get('command', '')}`:", results_table(sub(f['c10']['results'])),
            '\n'.join(findings_lines(f['c10']['results']))]

@study('earlier', 'Earlier studies of the quickstart', 'what was tried before the protocol matrix: teacher, ceiling, '
                                                       'initialisation, settings, budget (no results files kept)',
       files={}, make='the scripts in benchmarks/studies/ (distill_budget_study.py, matching_variants.py); the '
                      'settings of issue 5')
def _earlier(f):
    return ["These were measured with the earlier defaults (labels from the 5,000-image pool, ragged minibatches) and "
            "left no results file, so this page has no table: it is what was learned, in words. They all point the way "
            "the protocol matrix does.",
            "- **A stronger teacher.** Three more times the Barlow Twins epochs raised the teacher's own linear probe "
            "by about three points; the shipped teacher is the stronger one (14 epochs).\n"
            "- **A real ceiling.** Experts of 10 epochs at batch 64 on the 5,000-image pool (the paper's batch 256 "
            "gives only 20 steps an epoch there) make full-data KD a ceiling well above a random subset.\n"
            "- **A high-loss initialisation that is not half shirts.** The plain top 2% by KD loss was nearly half one "
            "class and pre-trained far worse than a random subset; the highest-loss images per k-means cluster of the "
            "teacher's representations (`high_loss_indices(clusters=50)`) tie the random subset.\n"
            "- **The baselines are data-limited, not step-limited.** KD on 100 random images for five times the epochs "
            "stays far from the full pool's KD: a distilled set can only win through what its images carry.\n"
            "- **Distillation settings.** Sweeps over lr_img, lr_lr, lr_init, syn_steps, expert_epochs, "
            "max_start_epoch, the set size and the evaluation batch left MKDT within noise of, or below, the random "
            "subset.\n- **More iterations, experts or matching.** `benchmarks/studies/distill_budget_study.py` and "
            "`benchmarks/studies/matching_variants.py` always left the distilled set tied with its own initial images "
            "at the same learned lr: a set can match the experts far better and still pre-train no better.\n"
            "- **What the matching loss looks at.** `metagrad.distance_shares`: most of an expert's movement is in the "
            "depth-4 student's linear head, while the probe reads the features under it."]
