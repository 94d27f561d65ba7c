"""lt_det: long-tailed object detection methods as one detectron2 project extension.

Importing lt_det or any of its modules registers no dataset and patches nothing; an entry point
calls :func:`lt_det.builtin.setup_environment` once per process.
"""
__version__ = "0.1.0"
