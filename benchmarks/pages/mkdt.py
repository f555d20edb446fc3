"""The pages of MKDT's longer studies: the budget studies (thousands of iterations), the factor studies (the settings
that make matching work) and the payoff with paired seeds and intervals (the K study)."""
from __future__ import annotations
from kdd_explore.core import md_table
from .registry import study, pct, verdict

@study('budget', 'The budget studies', 'one MKDT distillation continued to thousands of iterations, every save '
                                       'evaluated; the iteration chosen on validation',
       files=dict(c10='kdd_explore/assets/budget_study_cifar10_jpeg.json',
                  fm='kdd_explore/assets/budget_study_fashion_mnist.json',
                  c10big='kdd_explore/assets/budget_study_cifar10_jpeg_1000img.json'),
       make='python benchmarks/studies/budget_study.py --dataset DATASET --config RECIPE --out DIR (the command of '
            'each file is on this page)',
       needs={k: ['iterations', 'fixed', 'headline', 'chosen', 'fractions', 'provenance']
              for k in ('c10', 'fm', 'c10big')})
def _budget(f):
    from kdd_explore.report import budget_table, budget_figure
    out = ["Each study continues one MKDT distillation and saves it at several iteration counts; every saved set is "
           "evaluated like the main job (MKDT, its initial images and the random subset at the set's learned lr, "
           "beside the fixed baselines; seeds 0, 1, 2). The headline iteration is chosen on a validation split of "
           "5,000 labelled training images outside the pool and every probe's labels, by a rule fixed before any test "
           "number was computed."]
    for key, name in (('c10', 'CIFAR-10 (JPEG q75 copy), the recipe cifar10_cpu'),
                      ('fm', 'Fashion-MNIST, the quickstart recipe'),
                      ('c10big', "CIFAR-10 (JPEG q75 copy) at the paper's set size: 1,000 images from a "
                                 "40,000-image pool")):
        s = f[key]
        e = {int(t): v['summary'] for t, v in s['iterations'].items()}
        ts = sorted(e)
        h = s['headline']
        out += [f'## {name}', f"Provenance: {s['provenance']}", budget_figure(s), budget_table(s),
                f"The matching loss goes from {e[ts[0]]['matching_loss']:.3f} at {ts[0]:,} iterations to "
                f"{e[ts[-1]]['matching_loss']:.3f} at {ts[-1]:,}, and the learned lr from {e[ts[0]]['lr']:.3f} to "
                f"{e[ts[-1]]['lr']:.3f}. The rule chooses {s['chosen']:,} iterations; there MKDT is "
                f"{verdict({float(k): v for k, v in h['vs_random_subset'].items()})} with the random subset and "
                f"{verdict({float(k): v for k, v in h['vs_initial'].items()})} with its initial images at its learned "
                f"lr. Quality bar {'met' if h['bar_met'] else 'not met'}."]
    return out

@study('mkdt-factors', 'MKDT with the settings that make matching work',
       "the experts' optimiser, the inner steps and the student, one factor at a time, on the quickstart and on "
       "cifar10_cpu; the payoff measured again",
       files=dict(r='benchmarks/results/mkdt_factor_study_*.json'),
       make='python benchmarks/studies/mkdt_factor_study.py --dataset DATASET --out DIR, then copy '
            'DIR/mkdt_factor_study.json to benchmarks/results/mkdt_factor_study_DATASET.json',
       needs=dict(r=['rows', 'dataset', 'provenance']))
def _mkdt_factors(f):
    out = ["Each row is a budget study of one recipe change (MKDT distilled from the high-loss images, saved at 100, "
           "300 and, where the session's time allowed, 1,000 iterations (each row's sentence below says how far), every save evaluated like the main job, seeds 0-2); the iteration is chosen on a "
           "validation split of 5,000 training images outside the pool and the "
           "probes' labels, and the test numbers are those at the chosen iteration. *vs random* and *vs initial*: MKDT "
           "against the random subset and against its own initial images and targets at its learned lr, in points at "
           "1% / 5% labels. *bar*: beats the random subset, the high-loss subset and its initial images by more than "
           "the larger std at both label fractions. *budget ratio*: the synthetic steps' reach over the experts'."]
    for path, s in f['r'].items():
        rows = []
        for k, r in s['rows'].items():
            m = r['summary']
            t = m['test']
            g = lambda a, b: ' / '.join(f"{t[a][fr][0] - t[b][fr][0]:+.1f}" for fr in sorted(t[a]))
            rows.append([k, r['what'], m['chosen'],
                         ' / '.join(f"{v[0]:.1f} ± {v[1]:.1f}" for _, v in sorted(t['mkdt_high_loss'].items())),
                         g('mkdt_high_loss', 'random_subset'), g('mkdt_high_loss', 'mkdt_initial_at_learned_lr'),
                         g('full_data_kd', 'random_subset'), 'met' if m['bar_met'] else 'not met', f"{m['lr']:.3f}",
                         f"{m['step_budget']['ratio']:.3f}", f"{m['matching_loss']:.3f}",
                         f"{r['wall_seconds'] / 60:.0f}"])
        out += [f"## {s['dataset']} (recipe `{s['recipe']}`)",
                f"Made by the commands in `{path}`; machine: {s['provenance'].get('machine', '')}.",
                md_table(['row', 'what changes', 'chosen it.', 'MKDT (1% / 5%)', 'vs random', 'vs initial',
                          'headroom', 'bar', 'learned lr', 'budget ratio', 'matching loss', 'minutes'],
                         rows), mkdt_factor_reading(s)]
    return out

def mkdt_factor_reading(s:dict) -> str:
    "A factor study's table in sentences, every number read from the file: what each change did to the matching, the lr, the headroom and the probe."
    rows = s['rows']
    t = lambda r, m: [v[0] for _, v in sorted(r['summary']['test'][m].items())]
    d = lambda r, a, b: [x - y for x, y in zip(t(r, a), t(r, b))]
    fmt = lambda v: ' / '.join(f"{x:+.1f}" for x in v)
    out = []
    for k, r in rows.items():
        m = r['summary']
        its = sorted(m['per_iteration'], key=int)
        ml = (f"{m['per_iteration'][its[0]]['matching_loss']:.3f} at {int(its[0]):,} to "
              f"{m['per_iteration'][its[-1]]['matching_loss']:.3f} at {int(its[-1]):,} iterations")
        out.append(f"- `{k}`: matching loss {ml}, learned lr {m['lr']:.3f} at the chosen {m['chosen']:,} (budget ratio "
                   f"{m['step_budget']['ratio']:.3f}); headroom (full-data KD over the random subset) "
                   f"{fmt(d(r, 'full_data_kd', 'random_subset'))} points; MKDT against the random subset "
                   f"{fmt(d(r, 'mkdt_high_loss', 'random_subset'))} and against its initial images at its lr "
                   f"{fmt(d(r, 'mkdt_high_loss', 'mkdt_initial_at_learned_lr'))}; bar "
                   f"{'met' if m['bar_met'] else 'not met'}.")
    met = [k for k, r in rows.items() if r['summary']['bar_met']]
    text = '\n'.join(out) + (f"\n\n**{'No row' if not met else ', '.join(met)}** meets the "
                             "quality bar") + (" on this dataset." if not met else ".")
    if 'today' in rows:  # the trade-off: rows that give the inner loop more of the experts' reach than today's recipe
        ratio = lambda r: r['summary']['step_budget']['ratio']
        head = lambda r: sum(d(r, 'full_data_kd', 'random_subset')) / 2
        more = [k for k, r in rows.items() if k != 'today' and ratio(r) > ratio(rows['today'])
                and any(c.startswith('expert_') for c in r.get('changes', {}))
                and all(c.startswith(('expert_', 'distill.')) for c in r.get('changes', {}))]  # the optimiser, not the student
        if more and all(head(rows[k]) < head(rows['today']) for k in more) and \
                all(rows[k]['summary']['matching_loss'] < rows['today']['summary']['matching_loss'] for k in more):
            text += (f"\n\n**The trade-off.** Every change of the experts' optimiser that leaves the inner loop more of "
                     f"their reach than "
                     f"`today` (budget ratio {ratio(rows['today']):.3f}: "
                     + ', '.join(f"`{k}` {ratio(rows[k]):.3f}" for k in more)
                     + ") is matched more closely, and loses headroom: full-data KD over the random subset falls "
                     f"from {head(rows['today']):+.1f} points (mean of the label fractions) to "
                     + ', '.join(f"{head(rows[k]):+.1f}" for k in more)
                     + ". Experts slow enough for the inner loop to follow learn too little in their epochs for "
                       "any set to pre-train well, and experts that learn enough move too far to be followed.")
    return text

_K_MAKE = ('python benchmarks/studies/k_study.py --dataset cifar10_jpeg --config cifar10_cpu --teacher '
           'kdd_explore/assets/teacher_cifar10 --ks 1,4,16 --saves 100,300,1000 --out runs/k_study; the authors\' loop: '
           'python benchmarks/reference_loop.py --reference PATH/TO/A/CLONE --run --experts runs/k_study/run/experts/experts '
           '--run-dir runs/k_study/run --iterations 1000 --save-every 100 --out runs/reference_run; then the first command '
           'with --eval --reference-run runs/reference_run')

def _between_entries(k:dict) -> list:
    "The best K's chosen set against every other entry's (each K, the authors' loop), paired on the test seeds."
    from kdd_explore.evaluate import gap, gap_text
    from kdd_explore.report import k_entries
    mk = lambda key: [dict(r, method=key) for r in k['ks_results'][key]['test'] if r['method'] == 'mkdt_high_loss']
    b = k['best_k']
    others = [(key, label) for key, label in k_entries(k) if key != b]
    if not others: return []
    body = [[label, *(gap_text(g) for _, g in sorted(gap(mk(b) + mk(key), b, key).items()))] for key, label in others]
    fr = sorted(float(f) for f in k['fractions'])
    return [f"**Does K matter?** K = {b}'s chosen set against each other entry's chosen set, paired on the same "
            f"{len(k['test_seeds'])} test seeds (a gain only when the interval lies above zero):",
            md_table([f'K = {b} minus', *(f'{pct(f)} labels' for f in fr)], body)]

def _verdict(study:dict) -> str:
    "The quality bar at a study's validation-chosen K and iteration, in one sentence read from the file."
    from kdd_explore.evaluate import gap_text
    b = study['ks_results'][study['best_k']]
    hl = b['findings']['vs_high_loss']
    return (f"Validation chooses K = {study['best_k']} at {b['chosen']:,} iterations; there MKDT - high-loss is "
            + ' / '.join(gap_text(hl[f]) for f in sorted(hl, key=float))
            + f" at {' / '.join(pct(float(f)) for f in sorted(hl, key=float))} labels: the bar (gains over random and "
            f"high-loss at both) is {'met' if b['bar_met'] else 'not met'}.")

def _tighter(d3:dict, # the K study evaluated with 3 labelled subsets per encoder, validation seeds as the study's
             v10:dict, # the same with validation at ten fresh seeds
            ) -> list:
    "The K study under the tighter probe protocol, with the study's validation seeds and with ten fresh ones."
    from kdd_explore.report import k_study_table
    return ["## The tighter probe, and validation that can tell K = 16 from K = 100",
            "The same sets and test seeds, each encoder's accuracy averaged over three labelled subsets (the protocol "
            "the noise study below found tightest): " + d3['provenance'].get('note', ''),
            k_study_table(d3), _verdict(d3),
            f"Validation seeds {', '.join(map(str, d3['val_seeds']))} pre-train the same encoders as the first test "
            "seeds, and three of them cannot separate the best entries. Ten fresh validation seeds "
            f"({v10['val_seeds'][0]}-{v10['val_seeds'][-1]}): " + v10['provenance'].get('note', ''),
            k_study_table(v10), _verdict(v10)]

@study('payoff', "MKDT's payoff with the power to see it",
       "paired seeds and 95% intervals; the number of expert trajectories with held-out experts; where a paired "
       "difference's noise enters; the authors' own loop beside ours",
       files=dict(k='kdd_explore/assets/k_study_cifar10_jpeg.json', noise='benchmarks/results/paired_noise.json',
                  ref='benchmarks/results/reference_equivalence.json',
                  d3='benchmarks/results/k_study_cifar10_jpeg_draws3.json',
                  v10='benchmarks/results/k_study_cifar10_jpeg_draws3_val10.json'),
       make=_K_MAKE + '; python benchmarks/studies/paired_noise.py (its file says how); python '
            'benchmarks/reference_loop.py --reference PATH/TO/A/CLONE/OF/jiayini1119/MKDT',
       needs=dict(k=['ks_results', 'fixed_test', 'best_k', 'provenance'], noise=['results', 'provenance'],
                  ref=['equivalent', 'worst_update_rel', 'reference'],
                  d3=['ks_results', 'best_k', 'provenance'], v10=['ks_results', 'best_k', 'provenance']))
def _payoff(f):
    from kdd_explore.evaluate import gap, interval_figure
    from kdd_explore.report import k_study_figure, k_study_table
    k, nz, ref = f['k'], f['noise'], f['ref']
    best = k['ks_results'][k['best_k']]
    rows = best['test'] + k['fixed_test']
    first = lambda n: [dict(r, accs=r['accs'][:n], seeds=r['seeds'][:n]) for r in rows]
    pairs = (('random_subset', 'random'), ('high_loss_subset', 'high-loss'),
             ('mkdt_initial_at_learned_lr', 'initial at lr'))
    nt = len(k['test_seeds'])
    gaps = {f'MKDT - {w}, {n} seeds': gap(rs, 'mkdt_high_loss', b) for n, rs in ((3, first(3)), (nt, rows))
            for b, w in pairs}
    out = [f"The recipe `{k['config']}` on {k['dataset']} (a {k['set_size']}-image set from a {k['pool']:,}-image "
           "pool, CIFAR-10 as a JPEG q75 copy): MKDT distilled from the same high-loss images on the first K of a pool "
           "of short KD experts (only the epochs the loop reads), saved at "
           f"{', '.join(map(str, k['saves']))} iterations; {k['held_out']} held-out experts (another root seed) are "
           f"never matched. Validation (seeds {', '.join(map(str, k['val_seeds']))}, {k['n_val']:,} training images "
           "outside the pool and the probes' labels) chooses each K's iteration and the best K; the test rows at that "
           f"iteration are evaluated at seeds {', '.join(map(str, k['test_seeds']))}, each seed shared by every method "
           "(the student's initialisation, its minibatch order, the labelled subset). Each finding is the mean paired "
           f"difference with its 95% interval ({k['interval']}); a gain only when the interval lies above zero.",
           k_study_table(k), k_study_figure(k),
           *_between_entries(k),
           f"**Three seeds against {nt}** (K = {k['best_k']}, at its chosen {best['chosen']} iterations): the same "
           f"paired differences, read from the first three seeds alone and from all {nt}.", interval_figure(gaps),
           *_tighter(f['d3'], f['v10'])]
    ways = list(next(iter(next(iter(nz['results'].values())).values())).values())[0]['ways']
    lines = [[proto, what, pct(float(fx)), *(f"{r['ways'][w]['sd']:.2f}" for w in ways),
              f"{r['decomposition']['pretrain_sd']:.2f} / {r['decomposition']['labels_sd']:.2f} / "
              f"{r['decomposition']['interaction_sd']:.2f}"]
             for proto, by in nz['results'].items() for what, fr in by.items() for fx, r in fr.items()]
    out += ["## Where the noise of a paired difference enters",
            f"The random and the high-loss subsets pre-trained at seeds {nz['seeds']}, every encoder probed with every "
            "seed's labelled subset, under both probes: the sd over seeds of the paired difference as the evaluation "
            "runs it (*as_run*: one seed pre-trains and labels), with the labels fixed (only pre-training varies), with "
            "the pre-training fixed (only the labels vary), and with each encoder's accuracy averaged over D labelled "
            "subsets (*draws_D*: `compare(label_draws=D)`); then the sd of each part of a two-way decomposition of the "
            "differences (pre-training seed / labelled subset / their interaction). "
            + nz['provenance'].get('note', ''),
            md_table(['probe', 'pair', 'labels', *ways, 'parts: pre-training / labels / interaction'], lines)]
    r = ref['reference']
    out += ["## The authors' loop beside ours",
            f"`benchmarks/reference_loop.py` runs the reference code's own `distill.py` (commit "
            f"`{str(r.get('commit', ''))[:7]}`, a temporary patched copy of a clone: each patch is listed in "
            "`benchmarks/results/reference_equivalence.json`, no numeric choice changed) and this toolkit's `distill` "
            "for one and two outer iterations from the same float64 state, expert stretch and minibatches. "
            f"Worst relative difference of an update: {ref['worst_update_rel']:.1e}; the two loops "
            f"{'agree to float64 round-off' if ref['equivalent'] else 'differ'}."]
    out += [f"- {x}" for x in ref.get('notes', [])]
    if 'reference' in k['ks_results']:
        r, prov = k['ks_results']['reference'], k['provenance']
        out += [f"**Their loop for {max(r['saves']):,} iterations** on this study's run (its {len(r['saves'])} saves "
                f"at {', '.join(map(str, r['saves']))} are the table's row *authors' loop*): the same starting set and "
                f"experts, their own minibatch draws ({prov.get('reference_minibatches', 'theirs').replace('theirs (', '').rstrip(')')}); their loop read "
                f"{', '.join(prov.get('reference_loaded_files', []))} alone, one trajectory, as the published runs did. "
                f"Validation chose {r['chosen']} iterations; its findings sit beside K = 1's, and nothing in them "
                "points at a difference between the two loops that this toolkit's loop misses."]
    return out
