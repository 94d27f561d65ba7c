"""The calibration stage inside the model: the box predictor applies TEST.CALIBRATION to its test
scores before detectron2's inference, for any loss; "none" and identity settings leave every
detection bit-equal."""
import pytest
import torch
from detectron2.modeling import build_model

from lt_det.calibration.norcal import NorCal

IMAGE_SIZE = 96


def detect(cfg, state=None):
    """The model's detections on one fixed image, with the weights ``state`` (or a seeded init)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    if state is not None:
        model.load_state_dict(state)
    model.eval()
    image = torch.randint(0, 255, (3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(1)).float()
    with torch.no_grad():
        instances = model([{"image": image, "height": IMAGE_SIZE, "width": IMAGE_SIZE}])[0]["instances"]
    return model, instances


def low_threshold(quick_cfg, *opts):
    # An untrained model scores every class near 1 / (K + 1): keep them all
    return quick_cfg("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, *opts)


@pytest.mark.parametrize("method, key", [("norcal", "GAMMA"), ("logit_adjustment", "TAU"), ("tau_norm", "TAU")])
def test_identity_setting_leaves_detections_bit_equal(quick_cfg, method, key):
    model, plain = detect(low_threshold(quick_cfg))
    _, same = detect(low_threshold(quick_cfg, "TEST.CALIBRATION.METHOD", method,
                                   f"TEST.CALIBRATION.{method.upper()}.{key}", 0.0), model.state_dict())
    assert len(plain) > 0
    assert torch.equal(plain.scores, same.scores) and torch.equal(plain.pred_classes, same.pred_classes)
    assert torch.equal(plain.pred_boxes.tensor, same.pred_boxes.tensor)


def test_the_predictor_applies_the_configured_calibration(quick_cfg):
    cfg = low_threshold(quick_cfg, "TEST.CALIBRATION.METHOD", "norcal", "TEST.CALIBRATION.NORCAL.GAMMA", 1.0)
    model, _ = detect(low_threshold(quick_cfg))
    calibrated_model, calibrated = detect(cfg, model.state_dict())
    predictor = calibrated_model.roi_heads.box_predictor
    assert isinstance(predictor.calibration, NorCal)
    logits = torch.randn(5, predictor.cls_score.out_features)
    proposals = [type("P", (), {"__len__": lambda self: 5})()]
    (probs,) = predictor.predict_probs((logits, None), proposals)
    torch.testing.assert_close(probs, predictor.calibration(predictor.cls_loss.scores(logits), logits,
                                                            predictor.cls_loss, predictor.cls_score))
    assert not torch.allclose(probs, predictor.cls_loss.scores(logits))
    assert len(calibrated) > 0 and torch.isfinite(calibrated.scores).all()


@pytest.mark.parametrize("loss", ["softmax_ce", "sigmoid_ce", "gumbel_ce", "bags", "seesaw", "eqlv2", "ecm"])
@pytest.mark.parametrize("method", ["logit_adjustment", "norcal", "fracal", "tau_norm"])
def test_each_method_runs_on_each_kind_of_score(quick_cfg, loss, method):
    """FRACAL computes the fractal dimensions from the training json here (no file given)."""
    opts = ("MODEL.LT_LOSS.NAME", loss, "TEST.CALIBRATION.METHOD", method,
            "TEST.CALIBRATION.NORCAL.GAMMA", 0.5)
    if method == "tau_norm" and loss == "seesaw":
        opts += ("MODEL.LT_LOSS.COSINE_TEMPERATURE", 0.0)  # τ-norm refuses a cosine classifier
    _, instances = detect(low_threshold(quick_cfg, *opts))
    assert torch.isfinite(instances.scores).all() and (instances.scores >= 0).all()


def test_a_cascade_computes_the_fractal_dimensions_once(quick_cfg, monkeypatch):
    """Each of a cascade's three box predictors builds FRACAL: the json is read once, and every
    stage gets the same calibration."""
    from lt_det.calibration import fracal

    calls, compute = [], fracal.fractal_dimensions_from_json

    def counting(path, max_grid):
        calls.append(path)
        return compute(path, max_grid=max_grid)

    fracal._cached_fractal_dimensions.cache_clear()
    monkeypatch.setattr(fracal, "fractal_dimensions_from_json", counting)
    cfg = quick_cfg("MODEL.ROI_HEADS.NAME", "LTCascadeROIHeads", "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True,
                    "TEST.CALIBRATION.METHOD", "fracal")
    predictors = build_model(cfg).roi_heads.box_predictor
    assert len(predictors) == 3 and len(calls) == 1
    for predictor in predictors:
        torch.testing.assert_close(predictor.calibration.logit_shift, predictors[0].calibration.logit_shift)
    fracal._cached_fractal_dimensions.cache_clear()
