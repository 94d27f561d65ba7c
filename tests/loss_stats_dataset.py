"""A metadata-only dataset with class statistics, for building losses from a config."""
from detectron2.data import MetadataCatalog

NAME = "lt_det_test_loss_stats"
NUM_CLASSES = 6
# Image frequency f = image_count / 1000 over the annotated images (image_count / 1250 over all
# images, 250 of them without annotations): classes 0-1 below 0.01; instance counts span every
# BAGS group (< 10, < 100, < 1000, >= 1000).
IMAGE_COUNT = [1, 5, 20, 60, 300, 900]
INSTANCE_COUNT = [2, 8, 30, 80, 500, 3000]
FREQUENCY = ["r", "r", "c", "c", "f", "f"]


def register():
    meta = MetadataCatalog.get(NAME)
    if not hasattr(meta, "class_statistics"):
        meta.set(
            class_statistics=[
                {"id": i + 1, "name": f"c{i}", "image_count": ic, "instance_count": n, "frequency": f}
                for i, (ic, n, f) in enumerate(zip(IMAGE_COUNT, INSTANCE_COUNT, FREQUENCY))
            ],
            num_annotated_images=1000,
            num_all_images=1250,
        )
    return NAME


def loss_cfg(loss_name, dataset=None, num_classes=NUM_CLASSES):
    from detectron2.config import get_cfg

    from lt_det.losses import add_loss_config

    cfg = get_cfg()
    add_loss_config(cfg)
    cfg.DATASETS.TRAIN = (dataset or register(),)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.LT_LOSS.NAME = loss_name
    cfg.MODEL.LT_LOSS.TAIL_THRESHOLD = 0.01
    return cfg


def no_stats_dataset(num_classes=NUM_CLASSES, name="lt_det_test_no_stats"):
    """A registered dataset that is not LVIS format: class names, no class statistics."""
    from detectron2.data import DatasetCatalog

    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, list)
        MetadataCatalog.get(name).set(thing_classes=["a"] * num_classes)
    return name
