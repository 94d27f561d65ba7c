"""The class-select mask head predicts detectron2's masks without the (R, K, M, M) logits."""
import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY, MaskRCNNConvUpsampleHead
from detectron2.structures import Boxes, Instances

from lt_det.modeling.mask_head import ClassSelectMaskRCNNConvUpsampleHead


def _heads(num_classes):
    torch.manual_seed(0)
    kwargs = dict(input_shape=ShapeSpec(channels=8, height=7, width=7), num_classes=num_classes, conv_dims=[8, 8])
    stock = MaskRCNNConvUpsampleHead(**kwargs).eval()
    torch.nn.init.normal_(stock.predictor.weight, std=0.5)  # detectron2's init (std 0.001) is near 0
    torch.nn.init.normal_(stock.predictor.bias, std=0.5)
    ours = ClassSelectMaskRCNNConvUpsampleHead(**kwargs, inference_chunk_size=3).eval()
    ours.load_state_dict(stock.state_dict())  # same modules: checkpoints are interchangeable
    return stock, ours


def _instances(counts, num_classes):
    out = []
    for n in counts:
        inst = Instances((50, 50))
        inst.pred_boxes = Boxes(torch.rand(n, 4) * 20 + torch.tensor([0, 0, 25, 25]))
        inst.pred_classes = torch.randint(num_classes, (n,))
        out.append(inst)
    return out


@pytest.mark.parametrize("num_classes, counts", [(11, [5, 0, 4]), (1, [4, 3]), (11, [0])])
def test_masks_equal_detectron2(num_classes, counts):
    stock, ours = _heads(num_classes)
    x = torch.randn(sum(counts), 8, 7, 7)
    torch.manual_seed(1)
    got = ours(x, _instances(counts, num_classes))
    torch.manual_seed(1)
    expected = stock(x, _instances(counts, num_classes))
    for e, g in zip(expected, got):
        assert g.pred_masks.shape == e.pred_masks.shape == (len(e), 1, 14, 14)
        torch.testing.assert_close(g.pred_masks, e.pred_masks, rtol=0, atol=1e-6)


def test_registered_for_config():
    assert ROI_MASK_HEAD_REGISTRY.get("ClassSelectMaskRCNNConvUpsampleHead") is ClassSelectMaskRCNNConvUpsampleHead


def test_cosine_predictor_by_hand():
    from lt_det.modeling.cosine import CosineConv2d

    conv = CosineConv2d(2, 2, temperature=20.0)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]])[:, :, None, None])
        conv.bias.copy_(torch.tensor([0.5, -1.0]))
    x = torch.tensor([3.0, 4.0])[None, :, None, None]  # unit direction (0.6, 0.8)
    # t * (x/|x|) . (w/|w|) + b = (20 * 0.6 + 0.5, 20 * 0.8 - 1)
    torch.testing.assert_close(conv(x).flatten(), torch.tensor([12.5, 15.0]), rtol=0, atol=1e-4)
    torch.testing.assert_close(conv(5 * x), conv(x))  # invariant to the feature scale


def test_cosine_head_selects_the_same_masks_as_its_full_predictor():
    from detectron2.modeling.roi_heads.mask_head import mask_rcnn_inference

    torch.manual_seed(0)
    head = ClassSelectMaskRCNNConvUpsampleHead(input_shape=ShapeSpec(channels=8, height=7, width=7), num_classes=11,
                                               conv_dims=[8, 8], inference_chunk_size=3, cosine_temperature=20.0).eval()
    torch.nn.init.normal_(head.predictor.weight, std=0.5)
    x = torch.randn(7, 8, 7, 7)
    torch.manual_seed(1)
    got = head(x, _instances([4, 3], 11))
    torch.manual_seed(1)
    expected = _instances([4, 3], 11)
    with torch.no_grad():
        mask_rcnn_inference(head.layers(x), expected)  # all K class logits, then detectron2's selection
    for e, g in zip(expected, got):
        torch.testing.assert_close(g.pred_masks, e.pred_masks, rtol=0, atol=1e-5)
