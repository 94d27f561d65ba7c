"""LVIS image-level labels carried to the box head, for EQL's image-label option.

detectron2's GeneralizedRCNN hands the ROI heads only the gt ``Instances`` of each image, and
StandardROIHeads copies every ``gt_*`` field of them to the proposals matched to each gt
(LTCascadeROIHeads does the same for this field in its later stages). So the
image-level label set travels as a ``gt_image_labels`` field: (num_instances, K) bool, every row
the image's verified classes, i.e. the classes annotated in it (LVIS ``pos_category_ids``) plus its
``neg_category_ids`` (contiguous ids, as :func:`lt_det.data.datasets.load_lvis_format_json`
stores them). Each sampled proposal then carries its image's (K,) row.
"""
import torch

from detectron2.config import configurable

from .mapper import LTDatasetMapper

IMAGE_LABELS_FIELD = "gt_image_labels"


def verified_class_mask(dataset_dict: dict, num_classes: int) -> torch.Tensor:
    """(K,) bool: classes annotated in the image or listed in its ``neg_category_ids``."""
    if "neg_category_ids" not in dataset_dict:
        raise KeyError(
            f"Image '{dataset_dict.get('file_name')}' has no 'neg_category_ids': the EQL image-label "
            "option needs a dataset registered with lt_det.data.register_lvis_format (LVIS json)."
        )
    classes = [a["category_id"] for a in dataset_dict.get("annotations", [])]
    classes += list(dataset_dict["neg_category_ids"])
    mask = torch.zeros(num_classes, dtype=torch.bool)
    mask[torch.as_tensor(classes, dtype=torch.long)] = True
    return mask


class ImageLabelDatasetMapper(LTDatasetMapper):
    """LTDatasetMapper that adds the ``gt_image_labels`` field to the training instances."""

    @configurable
    def __init__(self, is_train: bool = True, *, num_classes: int, **kwargs):
        super().__init__(is_train, **kwargs)
        self.num_classes = num_classes

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["num_classes"] = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        return ret

    def __call__(self, dataset_dict):
        mask = verified_class_mask(dataset_dict, self.num_classes) if self.is_train else None
        mapped = super().__call__(dataset_dict)
        if mask is not None and "instances" in mapped:
            instances = mapped["instances"]
            instances.set(IMAGE_LABELS_FIELD, mask.expand(len(instances), self.num_classes))
        return mapped
