"""A loss written in another project, outside lt_det/, trains through lt_det's own train_net.py
with nothing in lt_det edited: ``--import`` registers it and its config keys."""
import textwrap

DOWNSTREAM = textwrap.dedent(
    '''
    import logging

    from detectron2.config import CfgNode as CN
    from detectron2.config import configurable
    from torch.nn import functional as F

    from lt_det.losses import LTLoss, register_loss


    @register_loss("downstream_label_smoothing")
    class LabelSmoothingCE(LTLoss):
        @configurable
        def __init__(self, *, num_classes, smoothing):
            super().__init__(num_classes)
            self.smoothing = smoothing
            logging.getLogger("lt_det").info(f"downstream loss built with smoothing={smoothing}")

        @classmethod
        def add_config(cls, cfg):
            cfg.MODEL.LT_LOSS.LABEL_SMOOTHING = CN()
            cfg.MODEL.LT_LOSS.LABEL_SMOOTHING.EPSILON = 0.1  # epsilon of the smoothed target

        @classmethod
        def from_config(cls, cfg):
            return {"num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                    "smoothing": cfg.MODEL.LT_LOSS.LABEL_SMOOTHING.EPSILON}

        def loss(self, logits, gt_classes, **extras):
            return F.cross_entropy(logits, gt_classes, label_smoothing=self.smoothing)

        def scores(self, logits):
            return F.softmax(logits, dim=-1)
    '''
)


def test_a_downstream_loss_trains_through_train_net(train_net, tmp_path, monkeypatch):
    project = tmp_path / "my_project"
    project.mkdir()
    (project / "my_losses.py").write_text(DOWNSTREAM)
    monkeypatch.setenv("PYTHONPATH", str(project))
    out = tmp_path / "run"
    log = train_net("--import", "my_losses",
                    "--config-file", "configs/quick_schedules/mask_rcnn_R_18_FPN_synthetic_lt_instant_test.yaml",
                    "MODEL.ROI_HEADS.NUM_CLASSES", "12", "MODEL.LT_LOSS.NAME", "downstream_label_smoothing",
                    "MODEL.LT_LOSS.LABEL_SMOOTHING.EPSILON", "0.3", "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(out))
    assert "downstream loss built with smoothing=0.3" in log
    assert (out / "model_final.pth").exists()
