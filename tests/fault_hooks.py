"""Hooks that inject failures into a training run, shared by the resume tests."""
from detectron2.engine import HookBase


class FailAt(HookBase):
    """Raises RuntimeError("simulated crash") before the step of iteration ``iteration``."""

    def __init__(self, iteration):
        self.iteration = iteration

    def before_step(self):
        if self.trainer.iter == self.iteration:
            raise RuntimeError("simulated crash")
