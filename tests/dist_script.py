"""What tests/test_distributed.py launches with torchrun (and alone, for the one-process reference); not a test module itself.

    python tests/dist_script.py experts --crash-at N --forbid K,K -- ARGS...   `kdd-explore experts ARGS`, where rank 1's N-th new
        expert raises (a simulated crash; 0: never), and recording an expert listed in --forbid again is an error (it was finished before)
    python tests/dist_script.py evaluate OUT.json [EXPERTS]                    `compare` on toy methods, then (with EXPERTS) `kdd-explore distill
        --experts-per-iteration 3`, which two processes must refuse; rank 0 writes the rows and the refusal into OUT.json
"""
import json, sys
from pathlib import Path
import torch

def experts(argv):
    from kdd_explore import cli, kd
    from kdd_explore.distributed import dist_info
    crash_at, forbid, rest = 0, set(), list(argv)
    while rest and rest[0] != '--':
        opt, val = rest.pop(0), rest.pop(0)
        if opt == '--crash-at': crash_at = int(val)
        elif opt == '--forbid': forbid = {int(v) for v in val.split(',') if v}
    real, made = kd._record_one, [0]
    def record(arch, x, targets, k, *a):
        if k in forbid:
            raise AssertionError(f'expert {k} was finished before the crash: it must be read back, not recorded again')
        made[0] += 1
        if dist_info().rank == 1 and made[0] == crash_at:
            raise RuntimeError(f'simulated crash of rank 1 before expert {k}')
        return real(arch, x, targets, k, *a)
    kd._record_one = record
    return cli.main(rest[1:])

def evaluate(out, experts_path=None):
    import contextlib, io
    from kdd_explore import cli
    from kdd_explore.data import load_dataset
    from kdd_explore.distributed import init_distributed, is_main
    from kdd_explore.evaluate import PretrainSet, compare, kd_method, kd_student
    init_distributed('cpu')
    d = load_dataset('fake', shape=(1, 8, 8), n_classes=3, n_train=60, n_test=30, seed=0)
    x = d.normalize(d.x_train)
    reps = torch.nn.functional.one_hot(d.y_train, 3).float() @ torch.randn(3, 6,
                                                                           generator=torch.Generator().manual_seed(0))
    arch = dict(name='convnet', in_channels=1, im_size=8, width=4, depth=2)
    methods = {'no_pretrain': lambda s: kd_student(arch, 6, s).eval(),
               'kd': kd_method(arch, PretrainSet(x[:20], reps[:20]), epochs=2, batch_size=8)}
    # 6 jobs: 3 per rank
    rows = compare(methods, d, fractions=(0.2, 0.5), seeds=(0, 1, 2), progress=False, kd_data=(x, reps))
    res = dict(rows=rows)
    if experts_path:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(['distill', '--experts', experts_path, '--out', str(Path(out).parent/'indivisible'),
                             '--iterations', '1', '--experts-per-iteration', '3', '--device', 'cpu', '--quiet'])
        res['indivisible'] = dict(code=code, stderr=err.getvalue())
    # its folder may be new: tests run in any order
    if is_main(): Path(out).parent.mkdir(parents=True, exist_ok=True); Path(out).write_text(json.dumps(res))
    return 0

if __name__ == '__main__':
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({'experts': lambda: experts(args), 'evaluate': lambda: evaluate(*args)}[cmd]())
