"""Compatibility shims between detectron2 0.6 / detectron2 main and today's numpy and torch.

Imported first by ``lt_det/__init__.py``; every shim here is a no-op where it is not needed.

Why each exists (measured facts, see ``shared/ENVIRONMENT.md``):

* ``detectron2._C`` is the compiled C++/CUDA extension. The registry's detectron2 0.6 release
  ships without its sources, yet ``detectron2/layers/{deform_conv,rotated_boxes,
  roi_align_rotated}.py`` import it at top level, so ``import detectron2.layers`` fails. Nothing on
  the Mask R-CNN + LVIS path calls into it. We install a placeholder module whose attribute
  access raises an error that names the missing op and the fix.
* numpy >= 1.24 removed ``np.int``, ``np.bool`` and ``np.float`` (numpy 2 brought ``np.bool`` back); detectron2 0.6 uses them
  (``data/build.py``'s class histogram silently disappears, ``structures/masks.py`` crashes on
  empty polygons) and so does lvis-api 0.5.3 (``LVISEval.accumulate``). They were plain aliases
  of the builtins, so restoring exactly those aliases changes nothing else.
"""
import importlib
import importlib.util
import sys
import types
import warnings

import numpy as np

__all__ = ["HAS_COMPILED_OPS"]

# detectron2 0.6 decorates a few box ops with torch.jit.script at import; torch >= 2.10 warns on
# every such call. The ops still work; the warning is noise in every lt_det command.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

# numpy's removed aliases were exactly these builtins.
for _alias, _builtin in (("int", int), ("bool", bool), ("float", float)):
    if not hasattr(np, _alias):
        setattr(np, _alias, _builtin)


def _missing_op_error(op: str) -> RuntimeError:
    return RuntimeError(
        f"detectron2 op '{op}' is unavailable: this detectron2 was installed without its "
        "compiled C++/CUDA extension detectron2._C (the registry's 0.6 release has no C++ "
        "sources). Rotated boxes, deformable convolution and the C++ COCO evaluator need it; "
        "Mask R-CNN / Faster R-CNN on LVIS do not. To use them, build detectron2 from source "
        "(`pip install 'git+https://github.com/facebookresearch/detectron2.git'`)."
    )


class _MissingCompiledOps(types.ModuleType):
    """Stands in for ``detectron2._C`` when detectron2 was installed without its extension.

    Build queries (asked by detectron2's ``collect_env_info`` at every start) answer that the
    extension is absent; every op raises :func:`_missing_op_error`.
    """

    def get_compiler_version(self) -> str:
        return "none: detectron2._C not built"

    def get_cuda_version(self) -> str:
        return "none: detectron2._C not built"

    def has_cuda(self) -> bool:
        return False

    def __getattr__(self, op: str):
        if op.startswith("__"):  # let import machinery and introspection probe dunders
            raise AttributeError(op)
        raise _missing_op_error(op)


def _unavailable(op: str):
    def raise_missing(*args, **kwargs):
        raise _missing_op_error(op)

    return raise_missing


def _install_compiled_ops_placeholder() -> bool:
    """Returns True when the real ``detectron2._C`` is importable."""
    try:
        importlib.import_module("detectron2._C")
        return True
    except ImportError:
        placeholder = _MissingCompiledOps("detectron2._C")
        sys.modules["detectron2._C"] = placeholder
        import detectron2

        detectron2._C = placeholder
        import detectron2.layers
        import detectron2.layers.nms

        # Rotated NMS goes through torch.ops.detectron2, not _C, and would otherwise fail with an
        # opaque "_OpNamespace has no attribute" error. Patched before detectron2.modeling binds
        # these names.
        for op in ("nms_rotated", "batched_nms_rotated"):
            setattr(detectron2.layers.nms, op, _unavailable(op))
            setattr(detectron2.layers, op, _unavailable(op))
        return False


HAS_COMPILED_OPS = _install_compiled_ops_placeholder()
