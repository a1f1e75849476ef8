"""What a session returns for a frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .image_ops import resize_logits


@dataclass(frozen=True)
class FrameResult:
    """The objects' masks on one frame.

    `low_res_logits` [n, h, w] are the model's mask logits (after hole filling); masks at the source
    resolution are computed from them when first asked for, so a caller that only wants some objects
    or only the scores pays for nothing else.
    """

    frame_index: int
    object_ids: tuple[int, ...]
    low_res_logits: np.ndarray  # [n, h, w] float32
    ious: np.ndarray  # [n] predicted IoU of each chosen mask
    object_scores: np.ndarray  # [n] occlusion logits: > 0 means the object is visible
    source_size: tuple[int, int]  # (height, width) of the frame
    _masks: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def visible(self) -> np.ndarray:
        return self.object_scores > 0

    def logits(self, obj_id: int | None = None) -> np.ndarray:
        """Mask logits at the source resolution: [n, H, W], or [H, W] for one object."""
        key = ("logits", obj_id)
        if key not in self._masks:
            rows = self.low_res_logits if obj_id is None else self.low_res_logits[[self._row(obj_id)]]
            out = resize_logits(rows, *self.source_size)
            self._masks[key] = out if obj_id is None else out[0]
        return self._masks[key]

    def mask(self, obj_id: int) -> np.ndarray:
        """One object's boolean mask at the source resolution [H, W]."""
        return self.logits(obj_id) > 0

    @property
    def masks(self) -> np.ndarray:
        """All objects' boolean masks at the source resolution [n, H, W]."""
        return self.logits() > 0

    def _row(self, obj_id: int) -> int:
        try:
            return self.object_ids.index(obj_id)
        except ValueError:
            raise KeyError(f"FrameResult | received object id {obj_id}; expected one of {list(self.object_ids)}") from None
