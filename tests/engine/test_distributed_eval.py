"""Multi-process evaluation scores the model the main process saves."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lt_det.engine.distributed import broadcast_buffers_from_main


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", world_size=2, rank=rank)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    model.train()
    model(torch.full((2, 1, 3, 3), float(rank + 1)) * torch.arange(2.0).view(2, 1, 1, 1))  # rank's own stats
    before = {k: v.clone() for k, v in model.state_dict().items()}
    broadcast_buffers_from_main(model)
    torch.save({"before": before, "after": model.state_dict()}, os.path.join(out_dir, f"rank{rank}.pth"))
    dist.destroy_process_group()


def test_buffers_of_every_process_become_the_main_process_buffers(tmp_path):
    torch.manual_seed(0)
    mp.spawn(_worker, nprocs=2, args=(str(tmp_path / "init"), str(tmp_path)))
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pth") for r in (0, 1))
    bn_mean = "1.running_mean"
    assert not torch.equal(rank0["before"][bn_mean], rank1["before"][bn_mean])  # they differed
    for key, value in rank0["before"].items():
        is_buffer = key.startswith("1.running_") or key.endswith("num_batches_tracked")
        assert torch.equal(rank1["after"][key], value if is_buffer else rank1["before"][key]), key
        assert torch.equal(rank0["after"][key], value), key  # the main process keeps its own
