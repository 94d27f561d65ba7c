"""What every process must agree on before a multi-process evaluation."""
import torch
import torch.distributed as dist
from torch import nn

from detectron2.utils import comm

__all__ = ["broadcast_buffers_from_main"]


@torch.no_grad()
def broadcast_buffers_from_main(model: nn.Module) -> None:
    """Copies the main process's buffers (BatchNorm running statistics, ...) to every process.

    detectron2 wraps the model in DistributedDataParallel with ``broadcast_buffers=False``, so each
    process's BatchNorm running statistics follow its own batches. An evaluation in which process
    r runs inference on its shard of the test set with its own statistics scores a model that no
    checkpoint holds (the main process saves its own). After this call every process evaluates
    the main process's model: the one ``model_final.pth`` holds. PyTorch's DDP has a buffer sync
    only as a private method, hence this loop; a no-op in a single process.
    """
    if comm.get_world_size() == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
