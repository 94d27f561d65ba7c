"""Model components; importing this package registers the ROI heads and the mask head."""
from .fast_rcnn import LTFastRCNNOutputLayers
from .mask_head import ClassSelectMaskRCNNConvUpsampleHead
from .roi_heads import LTCascadeROIHeads, LTStandardROIHeads

__all__ = ["LTFastRCNNOutputLayers", "LTStandardROIHeads", "LTCascadeROIHeads", "ClassSelectMaskRCNNConvUpsampleHead"]
