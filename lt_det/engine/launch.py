"""``launch``: detectron2's launcher on GPUs, and a gloo path for multi-process CPU training.

On a machine with CUDA this *is* ``detectron2.engine.launch`` (NCCL, one process per GPU). Without
CUDA, detectron2 0.6's launcher asserts a GPU and hard-codes NCCL, and both 0.6's and main's
``create_ddp_model`` pass ``device_ids=[local_rank]``, which DistributedDataParallel rejects for
CPU modules. The CPU path below spawns the processes itself with the gloo backend, builds the
per-machine process group as detectron2's worker does, and wraps the model in DDP without
``device_ids``. It exists so that data-parallel training can be run and tested on CPUs.
"""
import logging
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import detectron2.engine.defaults as d2_defaults
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

from ..compat import detectron2_flavour

__all__ = ["launch"]

DEFAULT_TIMEOUT = timedelta(minutes=30)
logger = logging.getLogger(__name__)


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None,
           args=(), timeout=DEFAULT_TIMEOUT):
    """Same signature and meaning as ``detectron2.engine.launch``; ``num_gpus_per_machine`` is
    the number of processes per machine (CPU processes when CUDA is unavailable)."""
    world_size = num_machines * num_gpus_per_machine
    if torch.cuda.is_available() or world_size == 1:
        return d2_launch(main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url,
                         args=args, timeout=timeout)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; pass tcp://HOST:PORT")
        from detectron2.engine.launch import _find_free_port

        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.spawn(_cpu_worker, nprocs=num_gpus_per_machine, daemon=False,
             args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout))


def _cpu_ddp_model(model, *, fp16_compression=False, **kwargs):
    """``create_ddp_model`` for CPU modules: DDP without ``device_ids``."""
    if comm.get_world_size() == 1:
        return model
    kwargs.pop("device_ids", None)
    return DistributedDataParallel(model, **kwargs)


def _cpu_worker(local_rank, main_func, world_size, procs_per_machine, machine_rank, dist_url, args, timeout):
    global_rank = machine_rank * procs_per_machine + local_rank
    dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size,
                            rank=global_rank, timeout=timeout)
    if detectron2_flavour() == "main":
        comm.create_local_process_group(procs_per_machine)
    else:  # detectron2 0.6: the same groups, built as its _distributed_worker does
        for i in range(world_size // procs_per_machine):  # every rank creates every group
            group = dist.new_group(list(range(i * procs_per_machine, (i + 1) * procs_per_machine)))
            if i == machine_rank:
                comm._LOCAL_PROCESS_GROUP = group
    d2_defaults.create_ddp_model = _cpu_ddp_model  # DefaultTrainer.__init__ looks it up here
    comm.synchronize()
    main_func(*args)
