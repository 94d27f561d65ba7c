"""Training/test mapper: detectron2's DatasetMapper, with failures that name the image file."""
from detectron2.data import DatasetMapper


class LTDatasetMapper(DatasetMapper):
    """detectron2's ``DatasetMapper`` whose errors name the image they happened on.

    Without this, an unreadable image surfaces as a bare PIL/OSError from a data-loader worker,
    without the dataset entry it came from. Nothing is skipped silently: the error is re-raised.
    The LVIS image-level labels (``neg_category_ids``, ``not_exhaustive_category_ids``) pass
    through unchanged, as every key the parent does not consume does.
    """

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except Exception as e:
            raise RuntimeError(f"Failed to load or transform image '{dataset_dict.get('file_name')}': {e}") from e
