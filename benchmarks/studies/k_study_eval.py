"""The evaluation half of `k_study.py --eval`: validation chooses the iteration (and K), the test split gives the
paired findings. Every job is cached in OUT/eval, so a stopped evaluation resumes."""
from __future__ import annotations
import dataclasses, statistics, time
from pathlib import Path

def _seeds(text:str) -> tuple: return tuple(int(s) for s in text.split(','))

def val_score(rows:list) -> float:
    "The rule's score of a set: its mean validation accuracy over the label fractions and seeds."
    return statistics.fmean(r['acc_mean'] for r in rows)

def evaluate_study(run, a, ks:list, saves:list, out:Path, progress:bool) -> dict:
    "Validation rows of every saved set, test rows of each K's chosen set and the fixed baselines, paired findings; writes OUT/k_study.json."
    from budget_study import validation_indices
    from benchmarks.provenance import provenance
    from kdd_explore.core import load_json, save_json
    from kdd_explore.data import load_dataset
    from kdd_explore.distill import SyntheticSet
    from kdd_explore.evaluate import PretrainSet, compare, expert_encoder, gap, gap_text, kd_method
    t0, cfg = time.time(), run.cfg
    full = load_dataset(cfg.dataset, n_test=cfg.n_test, seed=cfg.seed, **cfg.dataset_options)
    full = dataclasses.replace(full, mean=run.data.mean, std=run.data.std)
    vi = validation_indices(cfg, full, a.n_val)
    val = dataclasses.replace(full, x_test=full.x_train[vi], y_test=full.y_train[vi])
    x, reps, arch = run.x.cpu(), run.reps.cpu(), run.arch
    kw = dict(epochs=cfg.eval_epochs, batch_size=cfg.eval_batch_size)
    ev = dict(fractions=cfg.fractions, progress=progress, protocol=cfg.probe_protocol, label_draws=a.label_draws)
    vseeds, tseeds = _seeds(a.val_seeds), _seeds(a.test_seeds)
    hl, rnd = run.subsets['high_loss'], run.subsets['random']
    fixed = {'random_subset': kd_method(arch, PretrainSet(x[rnd], reps[rnd]), **kw),
             'high_loss_subset': kd_method(arch, PretrainSet(x[hl], reps[hl]), **kw),
             'full_data_kd': lambda s: expert_encoder(run.experts, s % run.experts.n_experts)}
    # the probe protocol with several labelled subsets per encoder keeps its jobs and its results apart
    tag = '' if a.label_draws == 1 else f'_draws{a.label_draws}'
    cache = out/f'eval{tag}'
    test_fixed = compare(fixed, full, seeds=tseeds, cache=cache/'fixed_test', **ev)
    ks_res = {}
    for k in ks:
        folder = out/'sets'/(f'K{k}' if isinstance(k, int) else str(k))  # a named entry: e.g. the authors' loop's sets
        summary = load_json(folder/'summary.json')
        have = [t for t in saves if (folder/f'set_{t}.json').exists()]
        if not have: print(f"K={k}: no saved set yet, left out", flush=True); continue
        sets = {t: SyntheticSet.load(folder/f'set_{t}') for t in have}
        mk = lambda syn: kd_method(arch, PretrainSet(syn.images.cpu(), syn.targets.cpu(), float(syn.lr)), **kw)
        vals = {t: compare({'mkdt_high_loss': mk(sets[t])}, val, seeds=vseeds,
                           cache=cache/folder.name/f'val_{t}', **ev) for t in have}
        best = max(val_score(v) for v in vals.values())
        chosen = min(t for t in have if val_score(vals[t]) == best)  # a tie goes to the fewer iterations
        syn = sets[chosen]
        per = {'mkdt_high_loss': mk(syn),
               'mkdt_initial_at_learned_lr': kd_method(arch, PretrainSet(x[hl], reps[hl], float(syn.lr)), **kw)}
        test = compare(per, full, seeds=tseeds, cache=cache/folder.name/f'test_{chosen}', **ev)
        rows = test + test_fixed
        found = {name: {str(f): g for f, g in gap(rows, 'mkdt_high_loss', b).items()}
                 for name, b in (('vs_random', 'random_subset'), ('vs_high_loss', 'high_loss_subset'),
                                 ('vs_initial_at_learned_lr', 'mkdt_initial_at_learned_lr'))}
        ks_res[str(k)] = dict(saves=have, val={str(t): v for t, v in vals.items()},
                              val_score={str(t): round(val_score(v), 3) for t, v in vals.items()}, chosen=chosen,
                              test=test, findings=found, matching=summary,
                              bar_met=all(g['claim'] == 'gain' for name in ('vs_random', 'vs_high_loss')
                                          for g in found[name].values()))
        print(f"{'K=' if isinstance(k, int) else ''}{k}: chosen {chosen} (val {best:.2f}); " + '; '.join(
            f"{name} {float(f):.0%}: {gap_text(g)}" for name, by in found.items() for f, g in by.items()), flush=True)
    numbered = [k for k in ks_res if k.isdigit()]  # the named entries (the authors' loop) do not compete for K
    best_k = max(numbered, key=lambda k: max(ks_res[k]['val_score'].values())) if numbered else None
    study = dict(kind='k_study', dataset=a.dataset, config=a.config, ks=[k for k in ks if isinstance(k, int)],
                 saves=saves, held_out=a.held_out,
                 val_seeds=list(vseeds), test_seeds=list(tseeds), label_draws=a.label_draws, n_val=a.n_val,
                 fractions=list(cfg.fractions), probe_protocol=cfg.probe_protocol, pool=len(x),
                 set_size=len(hl), rule='each K: the saved iteration with the highest mean validation accuracy over '
                 'the label fractions and validation seeds (a tie to the fewer iterations); K: the highest such score',
                 interval='Student t, 95%, over the paired test seeds', fixed_test=test_fixed, ks_results=ks_res,
                 reference_run=getattr(a, 'reference_run', None),
                 best_k=best_k)
    # k_study.py --eval drives this evaluation: its command (with the arguments it got) reruns it
    prov = provenance(Path(__file__).with_name('k_study.py'), getattr(a, 'argv', None), t0=t0)
    study.update(eval_wall_s=prov['wall_s'], provenance=prov)
    save_json(out/f'k_study{tag}.json', study)
    return study
