"""``SafeCheckpointer``: detectron2's DetectionCheckpointer with atomic writes and a resume that
survives a corrupt newest checkpoint.

fvcore's ``Checkpointer.save`` writes ``model_XXXX.pth`` in place and then ``last_checkpoint``: a
process killed mid-write (pre-emption, a full disk) leaves a truncated file that ``last_checkpoint``
may already name, and ``--resume`` then fails with torch's zip error or a bare ``EOFError``
without the file name. Here both files are written to a temporary name in the same folder and
renamed (``os.replace``, atomic on POSIX), and ``resume_or_load`` skips an unreadable checkpoint
for the newest readable model checkpoint, with a warning naming both.
"""
import logging
import os
import pickle
import re
import zipfile
from typing import List

import torch

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["SafeCheckpointer", "UnreadableCheckpointError", "check_checkpoint_readable", "MODEL_CHECKPOINT"]

logger = logging.getLogger(__name__)

# What torch.load raises on a truncated, empty or foreign file.
UNREADABLE = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError)

# The model checkpoints a run writes into its OUTPUT_DIR: detectron2's PeriodicCheckpointer
# ("{file_prefix}_{iteration:07d}" and "{file_prefix}_final", file_prefix "model", the prefix
# lt_det's trainers use) and lt_det's CrashCheckpointer ("model_crash"). Other .pth files there
# (exact resume's stream_state_rank{r}.pth, a copied stage-1 model) are not checkpoints of this run.
MODEL_CHECKPOINT = re.compile(r"model_(\d{7,}|final|crash)\.pth")


def _replace_atomically(path: str, write) -> None:
    """``write(f)`` into ``path + '.tmp'``, then rename it to ``path``."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class UnreadableCheckpointError(RuntimeError):
    """A checkpoint file torch cannot read (truncated, empty, not a checkpoint)."""


def check_checkpoint_readable(path: str, *, full: bool = True) -> None:
    """Raises :class:`UnreadableCheckpointError` naming the local file ``path`` when torch cannot
    read it (truncated, empty, not a checkpoint).

    Args:
        full: read it in full, as loading it does (every tensor record's header is checked too).
            False: a zip-format file (torch's format since 1.6) is opened with ``mmap=True``: torch
            reads its central directory (at the end of the file: a truncated file has none) and the
            pickled structure, and maps the tensors without reading them, so a multi-GB checkpoint
            costs what a small one does; that catches a truncated, empty or foreign file, not a
            damaged record inside an intact archive (the full read when it is loaded names that).
            A file that is not a zip (torch's legacy format) has no index to check: it is read in
            full either way.
    """
    try:
        if not full and zipfile.is_zipfile(path):
            torch.load(path, map_location="cpu", mmap=True, weights_only=False)
        else:
            torch.load(path, map_location="cpu", weights_only=False)
    except UNREADABLE as e:
        raise UnreadableCheckpointError(f"Checkpoint {path} is unreadable (truncated or not a checkpoint): "
                                        f"{type(e).__name__}: {e}") from e


class SafeCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer (same arguments) whose local checkpoints are written atomically and
    whose resume falls back to the newest readable checkpoint (remote ``save_dir`` paths keep
    fvcore's behaviour)."""

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk or not os.path.isdir(self.save_dir):
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        _replace_atomically(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not os.path.isdir(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        _replace_atomically(os.path.join(self.save_dir, "last_checkpoint"),
                            lambda f: f.write(last_filename_basename.encode()))

    def load(self, path: str, checkpointables=None):
        """fvcore's load; a local .pth file torch cannot read is an error naming it (detectron2's
        .pkl weights are pickles that detectron2 reads itself)."""
        if path and path.endswith(".pth") and os.path.isfile(path):
            check_checkpoint_readable(path)  # read in full before anything is loaded: a bad file changes nothing
        return super().load(path, checkpointables)

    def resume_or_load(self, path: str, *, resume: bool = True):
        if not (resume and self.has_checkpoint()):
            return super().resume_or_load(path, resume=resume)
        last = self.get_checkpoint_file()
        for candidate in self._resume_candidates(last):
            try:
                extra = self.load(candidate)
            except UnreadableCheckpointError as e:
                logger.warning(f"{e}; skipping it")
                continue
            if candidate != last:
                logger.warning(f"Resuming from {candidate}, the newest readable checkpoint")
            return extra
        raise RuntimeError(f"No readable checkpoint in {self.save_dir} to resume from (last_checkpoint: {last})")

    def _resume_candidates(self, last: str) -> List[str]:
        """The tagged last checkpoint, then the folder's other model checkpoints
        (:data:`MODEL_CHECKPOINT`), newest first. Any other readable .pth would be taken for one:
        detectron2 loads a file without "model" (a stream state) as if all of it were weights
        (0.6 stops on "Unsupported type found in checkpoint", naming no file), and a stage-1
        model would bring another run's weights and iteration."""
        others = sorted((p for p in self.get_all_checkpoint_files()
                         if p != last and MODEL_CHECKPOINT.fullmatch(os.path.basename(p))),
                        key=os.path.getmtime, reverse=True)
        return ([last] if os.path.isfile(last) else []) + others
