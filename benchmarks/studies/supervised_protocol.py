"""How much of a supervised row's distance to the papers is the test, not the set: one finished row's distilled set and
its random real images, tested again under the papers' test protocols (wider test networks, more epochs).

    python benchmarks/studies/supervised_protocol.py runs/supervised_study/c10_1ipc_it2000 --protocols 32x300,32x1000,128x300,128x1000
    python benchmarks/studies/supervised_protocol.py ROW_FOLDER --save 300 --protocols 32x300,32x1000 --json out.json

The file is written after every protocol, and a call into an existing file keeps the protocols it already holds (for
the same set), so an interrupted run resumes. A protocol WIDTHxEPOCHS is a fresh ConvNet of that width (the row's depth
and padding) trained for that many epochs (SGD momentum 0.9, weight decay 5e-4, lr x0.1 half-way, DSA as the row) on
the set at its learned lr, and on the random real images it started from at the row's real lr, with the row's
evaluation seeds: the row's own protocol (its width x 300) repeats its numbers, a check that the rest is read the same
way. Each protocol reports the distilled and random real accuracies and their paired difference (the same seeds) with
a 95% t interval. MTT tests with width 128 and 1,000 epochs, DC with width 128 and 300: the set was distilled against
the row's width-32 experts either way, so a wider test network is a cross-width reading, not MTT's setting.
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
from benchmarks.provenance import provenance

def parse_protocols(text:str) -> list:
    "'32x300,128x1000' -> [(32, 300), (128, 1000)] (refused with a message when malformed)."
    out = []
    for item in text.split(','):
        w, _, e = item.strip().partition('x')
        if not (w.isdigit() and e.isdigit() and int(w) > 0 and int(e) > 0):
            sys.exit(f"--protocols takes WIDTHxEPOCHS items such as 32x300,128x1000, got {item!r}.")
        out.append((int(w), int(e)))
    return out

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('row', help="a finished supervised row's folder (results.json, set_<save>/)")
    ap.add_argument('--save', default=None, help="the save to test (default: the row's chosen one)")
    ap.add_argument('--protocols', default='32x300,32x1000,128x300,128x1000', help='WIDTHxEPOCHS, comma-separated')
    ap.add_argument('--json', default=None, help='where to write the results (default: ROW/protocol.json)')
    a = ap.parse_args(argv)
    t0, argv = time.time(), sys.argv[1:] if argv is None else argv
    from kdd_explore.core import load_json, save_json
    from kdd_explore.distill import SyntheticSet
    from kdd_explore.evaluate import gap
    from kdd_explore.supervised import SupervisedRecipe, _split, evaluate_set, supervised_arch
    row = Path(a.row)
    if not (row/'results.json').exists(): sys.exit(f"{row} holds no results.json: give a supervised row's folder.")
    res = load_json(row/'results.json')
    save = a.save or res.get('chosen')
    if save is None: sys.exit(f"{row} is not finished (no chosen save yet): name a save it has tested with --save "
                              f"({', '.join(res['saves']) or 'none yet'}).")
    if save not in res['saves']: sys.exit(f"{row} has no save {save}; it has {', '.join(res['saves']) or 'none yet'}.")
    recipe = SupervisedRecipe(**dict(res['recipe'], saves=tuple(res['recipe']['saves']),
                                     eval_seeds=tuple(res['recipe']['eval_seeds'])))
    (x, y), _, (xt, yt), info = _split(recipe, False)
    syn = SyntheticSet.load(row/f'set_{save}')
    init = syn.meta['init_indices']
    if recipe.distill.get('learn_labels'):
        sys.exit("The set learned its labels; the random real row needs the starting labels.")
    real_images, targets = x[init], syn.targets.detach()  # fixed labels: the starting images' own
    k, seeds = info['data'].n_classes, recipe.eval_seeds
    dest = Path(a.json) if a.json else row/'protocol.json'
    out = dict(kind='supervised_protocol', row=str(row), save=save, recipe=res['recipe'], seeds=list(seeds),
               learned_lr=round(float(syn.lr), 5), real_lr=recipe.real_lr, protocols={})
    if dest.exists():  # an earlier, interrupted call: keep its protocols when it read the same set
        old = load_json(dest)
        if all(old.get(k) == out[k] for k in ('row', 'save', 'seeds', 'learned_lr')): out['protocols'] = old['protocols']
    for width, epochs in parse_protocols(a.protocols):
        if f'{width}x{epochs}' in out['protocols']: continue  # measured by an earlier call
        arch = supervised_arch(info['data'].shape, k, width, recipe.depth, recipe.first_padding)
        t = time.time()
        got = {name: evaluate_set(im, tg, lr, arch, xt, yt, seeds, epochs, augment=recipe.augment)
               for name, im, tg, lr in (('distilled', syn.images.detach(), targets, syn.lr),
                                        ('random_real', real_images, targets, recipe.real_lr))}
        rows = [dict(method=m, label_fraction=1.0, accs=r['accuracies'], seeds=list(seeds), acc_std=r['std'])
                for m, r in got.items()]
        out['protocols'][f'{width}x{epochs}'] = dict(width=width, epochs=epochs, **got,
                                                   gain=gap(rows, 'distilled', 'random_real')[1.0],
                                                   seconds=round(time.time() - t, 1))
        out['provenance'] = provenance(__file__, argv, t0=t0)
        save_json(dest, out)  # after every protocol: an interrupted call loses at most the one it was on
        print(f"width {width}, {epochs} epochs: distilled {got['distilled']['mean']:.2f} ± {got['distilled']['std']:.2f},"
              f" random real {got['random_real']['mean']:.2f} ± {got['random_real']['std']:.2f} "
              f"({time.time() - t:.0f} s)", flush=True)
    own = out['protocols'].get(f"{recipe.width}x{recipe.eval_epochs}")
    if own is not None:  # the row's own protocol must repeat the row's numbers
        out['repeats_row'] = own['distilled']['accuracies'] == res['saves'][save]['test']['accuracies']
    out['provenance'] = provenance(__file__, argv, t0=t0)
    save_json(dest, out)
    return out

if __name__ == '__main__': main()
