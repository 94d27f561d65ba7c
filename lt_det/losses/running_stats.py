"""Per-class running statistics that a loss keeps in buffers and checkpoints (EQLv2's gradient sums,
LOCE's mean scores), tied to the class count K they were collected for.

detectron2's ``DetectionCheckpointer`` (fvcore's ``Checkpointer._load_model``) drops every
checkpoint tensor whose shape differs from the model's with only a warning, so a statistic
collected for another K would silently restart from its initial value. A scalar buffer
``stats_num_classes`` = K has the same shape for every K, so it always reaches the loss's
``_load_from_state_dict``, which refuses such a checkpoint with an error naming the loss, both
class counts and MODEL.ROI_HEADS.NUM_CLASSES.
"""
from typing import Optional, Sequence, Tuple

import torch

COUNT_BUFFER = "stats_num_classes"


class RunningClassStatistics:
    """Mixin, listed before :class:`lt_det.losses.base.LTLoss` in a loss's bases, for a loss whose
    buffers hold per-class statistics: each has K entries, or K plus a fixed number of extra ones
    (LOCE's background column).

    The loss registers its statistic buffers, then calls :meth:`track_statistics` once in
    ``__init__``; that adds the ``stats_num_classes`` buffer (saved in checkpoints with them).
    """

    _statistics_loss_name: str = ""
    _statistic_buffers: Tuple[str, ...] = ()

    def track_statistics(self, loss_name: str, buffers: Sequence[str]) -> None:
        """Tie the (already registered) buffers ``buffers`` to ``self.num_classes``; ``loss_name``
        is the loss's MODEL.LT_LOSS.NAME, for the error."""
        self._statistics_loss_name = loss_name
        self._statistic_buffers = tuple(buffers)
        self.register_buffer(COUNT_BUFFER, torch.tensor(self.num_classes, dtype=torch.long))

    def saved_num_classes(self, state_dict, prefix: str) -> Optional[int]:
        """K of the statistics in ``state_dict`` (None when it holds none of them): the length of a
        statistic that differs from this model's, else the saved ``stats_num_classes``."""
        saved = None
        count = state_dict.get(prefix + COUNT_BUFFER)
        if count is not None:
            saved = int(count)
        for name in self._statistic_buffers:
            value = state_dict.get(prefix + name)
            extra = getattr(self, name).numel() - self.num_classes  # entries beyond the K classes
            if value is not None and value.numel() != self.num_classes + extra:
                saved = value.numel() - extra
        return saved

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        saved = self.saved_num_classes(state_dict, prefix)
        if saved is not None and saved != self.num_classes:
            keys = ", ".join(f"'{prefix}{name}'" for name in self._statistic_buffers)
            raise ValueError(
                f"Loss '{self._statistics_loss_name}' (MODEL.LT_LOSS.NAME): the checkpoint's statistics ({keys}) "
                f"were collected for K = {saved} classes, but this model has MODEL.ROI_HEADS.NUM_CLASSES = "
                f"{self.num_classes}. Resume with the config the checkpoint was trained with, or remove the keys "
                f"{keys} and '{prefix}{COUNT_BUFFER}' from the checkpoint to start the statistics afresh."
            )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
