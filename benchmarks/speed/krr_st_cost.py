"""KRR-ST's cost beside MKDT's on the quickstart recipe's data (the Fashion-MNIST slice that ships with the package).

Per iteration: MKDT's distillation iteration (the quickstart's `distill` settings: 10 inner steps of batch 32 on 100 images,
the exact bounded meta-gradient) against one KRR-ST outer step (`KRRSTConfig.cpu_default()`: a real batch of 256, the solve,
the pool model's step), measured in alternating rounds so that both see the same load. Wall-clock and CPU seconds of this
process are both reported: on a shared machine the CPU seconds are the steadier figure. Per run: MKDT's 100 iterations
against KRR-ST's pool warm-up plus its 300 iterations (MKDT's experts, recorded once for every MKDT set, are not counted).

    OMP_NUM_THREADS=1 python benchmarks/speed/krr_st_cost.py            # writes benchmarks/results/krr_st_cost.json

The KRR-ST settings are the recipe's `krr_st` (the quickstart's: `KRRSTConfig.cpu_default()`).
"""
import argparse, dataclasses, json, platform, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root (kdd_explore without an install)
from benchmarks.provenance import provenance
import torch
from kdd_explore.data import load_dataset
from kdd_explore.kd import record_experts, teacher_representations, random_indices
from kdd_explore.ssl import default_teacher
from kdd_explore.distill import SyntheticSet, distill
from kdd_explore.krr_st import KRRSTConfig, ModelPool, krr_st
from kdd_explore.pipeline import get_config

def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c

def main(rounds=3, mkdt_iters=4, krr_iters=12, out='benchmarks/results/krr_st_cost.json', config='quickstart', argv=None):
    "Seconds per iteration and per run of MKDT and KRR-ST on `config`'s data, alternating `rounds` times, written to `out`."
    t_start = time.time()
    torch.set_num_threads(1)
    cfg = get_config(config)
    data = load_dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed)
    x = data.normalize(data.x_train)
    reps = teacher_representations(default_teacher(cfg.dataset), x, progress=False)
    arch = cfg.student(data.shape, reps.shape[1])
    n = round(cfg.syn_fraction * len(x))
    syn0 = SyntheticSet.from_real(x, reps, random_indices(len(x), n, seed=0), lr=0.1, meta={'arch': arch})
    dc, kc = cfg.distill_config(), KRRSTConfig(**dict(cfg.krr_st, batch_real=min(cfg.krr_st['batch_real'], len(x))))
    experts = record_experts(arch, x, reps, 1, dc.max_start_epoch - 1 + dc.expert_epochs,
                             batch_size=cfg.expert_batch_size, progress=False)
    per = {'mkdt': [], 'krr_st': []}
    for r in range(rounds):  # alternating, so that both see the same load
        w, c = timed(lambda: distill(experts, syn0, dataclasses.replace(dc, iterations=mkdt_iters), progress=False))
        per['mkdt'].append((w / mkdt_iters, c / mkdt_iters))
        w, c = timed(lambda: krr_st(syn0, x, reps, dataclasses.replace(kc, iterations=krr_iters, warm_start=False),
                                    progress=False))
        per['krr_st'].append((w / krr_iters, c / krr_iters))
        print(f"round {r}: MKDT {per['mkdt'][-1][0]:.3f} s/it wall ({per['mkdt'][-1][1]:.3f} CPU), "
              f"KRR-ST {per['krr_st'][-1][0]:.3f} s/it wall ({per['krr_st'][-1][1]:.3f} CPU)", flush=True)
    pool = ModelPool(arch, reps.shape[1], kc)
    warm = timed(lambda: pool.warm_up(syn0.images, syn0.targets))
    med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in per.items()}
    res = dict(config=config, machine=f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), "
                                      f"{len(__import__('os').sched_getaffinity(0))} cores visible",
               torch=torch.__version__, n_synthetic=n, pool=len(x),
               mkdt=dict(settings=dict(iterations=dc.iterations, syn_steps=dc.syn_steps, batch_syn=dc.batch_syn),
                         s_per_iteration_wall=med['mkdt'][0], s_per_iteration_cpu=med['mkdt'][1],
                         run_wall=med['mkdt'][0] * dc.iterations, run_cpu=med['mkdt'][1] * dc.iterations),
               krr_st=dict(settings=dict(iterations=kc.iterations, n_models=kc.n_models, quota=kc.quota,
                                         batch_real=kc.batch_real),
                           s_per_iteration_wall=med['krr_st'][0], s_per_iteration_cpu=med['krr_st'][1],
                           warm_up_steps=sum(pool.ages), warm_up_wall=warm[0], warm_up_cpu=warm[1],
                           run_wall=warm[0] + med['krr_st'][0] * kc.iterations,
                           run_cpu=warm[1] + med['krr_st'][1] * kc.iterations),
               rounds=per, provenance=provenance(__file__, argv, t0=t_start))
    res['ratio_per_iteration_cpu'] = med['krr_st'][1] / med['mkdt'][1]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=2) + '\n')
    print(json.dumps({k: v for k, v in res.items() if k != 'rounds'}, indent=2))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--out', default='benchmarks/results/krr_st_cost.json')
    p.add_argument('--config', default='quickstart', help="the recipe whose data and settings are measured ('quick': a "
                                                          "toy check)")
    a = p.parse_args()
    main(rounds=a.rounds, out=a.out, config=a.config)
