"""What every results file under `benchmarks/results/` records about the run that made it: the command, the machine, the
date and the wall time (its `provenance`, which the study pages and the README print beside the numbers).

    from benchmarks.provenance import provenance
    study['provenance'] = provenance(__file__, argv, t0=t0)
"""
from __future__ import annotations
import os, platform, shlex, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the project root

def cpu_name() -> str:
    "The CPU's model name (from /proc/cpuinfo where there is one, else what `platform` knows)."
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()

def machine(note:str|None=None, # what else shared the machine, e.g. 'beside another job'
           ) -> str:
    "This machine in words: CPU model, cores, torch version and its threads (and `note`)."
    import torch
    text = (f"{cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread(s)")
    return f"{text}, {note}" if note else text

def command(script:str|Path, # the script's path (`__file__`)
            argv:list|None=None, # its arguments (default: this process's)
           ) -> str:
    "The command line that reruns `script` with `argv`, its path relative to the project root."
    p = Path(script).resolve()
    rel = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
    return shlex.join(['python', str(rel), *map(str, sys.argv[1:] if argv is None else argv)])

def provenance(script:str|Path, # the script's path (`__file__`)
               argv:list|None=None, # its arguments (default: this process's)
               t0:float|None=None, # when the run started (`time.time()`): adds `wall_s`
               note:str|None=None, # what else shared the machine
              ) -> dict:
    "A results file's `provenance`: the command that reruns it, the machine, the UTC date (and the seconds since `t0`)."
    out = dict(command=command(script, argv), machine=machine(note), date=time.strftime('%Y-%m-%d', time.gmtime()))
    if t0 is not None: out['wall_s'] = round(time.time() - t0, 1)
    return out
