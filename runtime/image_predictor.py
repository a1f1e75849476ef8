"""ImagePredictor: SAM-style image mode (set_image, then predict with points / box / mask),
with the official SAM2ImagePredictor's pre- and post-processing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .backend import Backend, as_backend
from .checks import check_box, check_flag, check_frame, check_mask_input, check_points, check_resize
from .errors import InputError
from .image_ops import PREV_MASK_CLAMP, resize_logits
from .memory_bank import NO_MEMORY
from .pipeline import Pipeline
from .prompts import box_prompt, to_model_coords

MASK_THRESHOLD = 0.0


class ImagePredictor:
    """
        predictor = ImagePredictor("graphs/tiny")
        predictor.set_image(image)                                  # H x W x 3 uint8 RGB
        masks, ious, low_res = predictor.predict(point_coords=[(500, 375)], point_labels=[1])
    """

    def __init__(self, graphs: str | Path | Backend, resize: str = "antialias_bilinear", precision: str = "fp32") -> None:
        check_resize(resize)
        backend, self._owns_backend = as_backend(graphs, precision)  # precision: "fp32", "int8", "bf16" (runtime/precision.py)
        self.pipeline = Pipeline(backend, max_objects=1, resize=resize)
        self.dims = self.pipeline.dims
        self._image_size: tuple[int, int] | None = None
        self._features = None  # the image's features with no_mem_embed, as the decoder reads them

    def __enter__(self) -> ImagePredictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Free the predictor's buffers and the backend it opened itself."""
        self.pipeline.close()
        if self._owns_backend:
            self.pipeline.backend.close()

    def set_image(self, image: np.ndarray) -> None:
        """Encode an image once; predict() can then be called with any prompts."""
        image = check_frame(image)
        self._image_size = None
        p = self.pipeline
        p.features = p.encode_image(image)
        # The official image predictor adds no_mem_embed to the stride-16 features (no memory).
        self._features = p.attend(p.features, slice(0, 1), [NO_MEMORY])
        self._image_size = image.shape[:2]

    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for the prompts on the set image: (masks [C, H, W] bool (logits with return_logits),
        ious [C], low-res logits [C, h, w] to feed back as `mask_input`). C is 3 with
        multimask_output, else 1. Points are (x, y) pixels of the image; the box (x0, y0, x1, y1)."""
        if self._image_size is None:
            raise InputError("predict | received no image; expected set_image(image) first")
        size, s, lr = self._image_size, self.dims.image_size, self.dims.low_res_size
        pts, lbl = check_points(point_coords, point_labels, size)
        if box is not None:
            corners, corner_labels = box_prompt(check_box(box, size))
            pts, lbl = np.concatenate([corners, pts]), np.concatenate([corner_labels, lbl])
        if mask_input is not None:
            mask_input = check_mask_input(mask_input, lr)
        multimask_output = check_flag(multimask_output, "multimask_output")
        return_logits = check_flag(return_logits, "return_logits")
        if len(pts) == 0 and mask_input is None:
            raise InputError("predict | received no prompt; expected point_coords, a box or a mask_input")
        coords, labels = (to_model_coords(pts, size, s)[None], lbl[None]) if len(pts) else (None, None)
        out = self.pipeline.decode(self.pipeline.features, slice(0, 1), self._features, coords, labels, mask_input, multimask_output)
        count = 3 if multimask_output else 1
        multimasks = np.asarray(out["low_res_multimasks"][0, :count])  # a download on the device path
        low_res = np.clip(multimasks, -PREV_MASK_CLAMP, PREV_MASK_CLAMP)
        ious = np.array(out["multimask_ious"][0, :count])
        logits = resize_logits(multimasks, *size)
        masks = logits if return_logits else logits > MASK_THRESHOLD
        return masks, ious, low_res.copy()
