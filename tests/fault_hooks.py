"""Hooks that inject failures into a training run, shared by the resume tests."""
from detectron2.engine import HookBase


class FailAt(HookBase):
    """Raises RuntimeError("simulated crash") before the step of iteration ``iteration``."""

    def __init__(self, iteration):
        self.iteration = iteration

    def before_step(self):
        if self.trainer.iter == self.iteration:
            raise RuntimeError("simulated crash")


class FailAfterStep(HookBase):
    """Raises RuntimeError("simulated crash after the step") in after_step of iteration
    ``iteration``, as a periodic evaluation out of memory or a full disk would: the optimizer and
    the LR scheduler have taken the step."""

    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            raise RuntimeError("simulated crash after the step")
