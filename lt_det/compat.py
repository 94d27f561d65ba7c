"""Compatibility of detectron2 0.6 / main and lvis-api 0.5.3 with each other and today's numpy.

Applied by :func:`lt_det.builtin.setup_environment`, never at import. (detectron2 0.6's missing
compiled extension ``detectron2._C`` is handled at install time instead: tools/install_detectron2.py
writes a pure-Python stand-in whose ops raise an error naming the op and the fix.)
"""
import numpy as np

__all__ = ["detectron2_flavour", "restore_numpy_aliases"]

# numpy 1.24 removed these aliases of the builtins (numpy 2 brought np.bool back).
_REMOVED_ALIASES = {"int": int, "bool": bool, "float": float}


def detectron2_flavour() -> str:
    """Which detectron2 is installed: "main" (a build of its git main branch) or "0.6".

    Both report ``__version__ == "0.6"``; main is told by a feature 0.6 lacks
    (``detectron2.utils.comm.create_local_process_group``, added after the 0.6 release).
    """
    from detectron2.utils import comm

    return "main" if hasattr(comm, "create_local_process_group") else "0.6"


def restore_numpy_aliases() -> None:
    """Restores ``np.int`` / ``np.bool`` / ``np.float`` where numpy lacks them.

    detectron2 0.6 uses them (``data/build.py``'s class histogram silently disappears without
    ``np.int``; ``structures/masks.py`` needs ``np.bool``), and so does lvis-api 0.5.3
    (``LVISEval.accumulate``, ``np.float``). They were plain aliases of the builtins, so restoring
    exactly those changes nothing else.
    """
    for alias, builtin in _REMOVED_ALIASES.items():
        if not hasattr(np, alias):
            setattr(np, alias, builtin)
