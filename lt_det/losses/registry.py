"""The registry of box-classification losses.

Call contract of a registered loss (see :class:`lt_det.losses.base.LTLoss`): the class is an
``nn.Module`` whose ``__init__`` is ``@configurable`` (so ``cls(cfg)`` builds it from a config and
``cls(num_classes=..., ...)`` from plain arguments) and which implements ``num_logits``,
``init_classifier``, ``loss`` and ``scores``.

Downstream projects register their own loss from any module::

    from lt_det.losses import LTLoss, register_loss

    @register_loss("my_loss")
    class MyLoss(LTLoss):
        ...

and select it with ``MODEL.LT_LOSS.NAME: "my_loss"``.
"""
from typing import List, Type

from lt_det.registry import NameRegistry

_LOSSES = NameRegistry("loss", "losses", "MODEL.LT_LOSS.NAME", "the model is built")


def register_loss(name: str):
    """Class decorator registering a loss under ``name`` (the value of MODEL.LT_LOSS.NAME)."""
    return _LOSSES.register(name)


def list_losses() -> List[str]:
    """Sorted names of every registered loss."""
    return _LOSSES.names()


def get_loss_class(name: str) -> Type:
    """The class registered as ``name``; an unknown name fails with the list of valid names."""
    return _LOSSES.get(name)
