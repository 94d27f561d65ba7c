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
from typing import Dict, List, Type

# name -> loss class. A plain dict: detectron2's Registry names entries by ``__name__`` only, and
# config values here are short snake_case method names.
_LOSSES: Dict[str, Type] = {}


def register_loss(name: str):
    """Class decorator registering a loss under ``name`` (the value of MODEL.LT_LOSS.NAME)."""

    def deco(cls):
        if name in _LOSSES and _LOSSES[name] is not cls:
            raise KeyError(f"A loss named '{name}' is already registered ({_LOSSES[name].__qualname__})")
        _LOSSES[name] = cls
        return cls

    return deco


def list_losses() -> List[str]:
    """Sorted names of every registered loss."""
    return sorted(_LOSSES)


def get_loss_class(name: str) -> Type:
    """The class registered as ``name``; an unknown name fails with the list of valid names."""
    if name not in _LOSSES:
        raise KeyError(
            f"Unknown loss '{name}' (MODEL.LT_LOSS.NAME). Registered losses: {', '.join(list_losses())}. "
            "A loss defined in another project must be imported (importing registers it) before "
            "the model is built."
        )
    return _LOSSES[name]
