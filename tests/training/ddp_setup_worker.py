"""torchrun worker for test_distributed_setup.py: rank 0's setup outlasts the collectives' timeout.

Usage: ddp_setup_worker.py MODE SECONDS, MODE ``setup`` (Distributed.main_first, which waits on
its own long-timeout group) or ``default`` (a plain barrier of the 2 s default group).
"""

import datetime
import sys
import time

import torch
import torch.distributed as dist

from formers.training.distributed import Distributed

mode, seconds = sys.argv[1], float(sys.argv[2])
place = Distributed.from_env()
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=2))  # short, on purpose
place.init(torch.device("cpu"))
if mode == "setup":
    with place.main_first():
        if place.is_main:
            time.sleep(seconds)
else:
    if place.is_main:
        time.sleep(seconds)
    dist.barrier()
dist.barrier()
print(f"rank {place.rank} done", flush=True)
dist.destroy_process_group()
