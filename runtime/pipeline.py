"""The four graphs over buffers allocated once: what every session runs per frame.

Rows are objects: a session keeps its objects in rows 0..n-1 and runs a graph on a slice of rows,
so all objects go through one call per graph. Every buffer is allocated here, at open, for
`max_objects`; a step only writes into them.
"""

from __future__ import annotations

import numpy as np

from .backend import Backend
from .contracts import IMAGE_ENCODER, LABEL_PADDING, MASK_DECODER, MEMORY_ATTENTION, MEMORY_ENCODER, MEMORY_SLOTS, POINTER_SLOTS
from .image_ops import preprocess_frame
from .memory_bank import MemoryBank

# Each slot axis of memory_attention and the input that flags its filled slots.
SLOT_FLAGS = {MEMORY_SLOTS: "memory_valid", POINTER_SLOTS: "obj_ptr_valid"}


def open_pipeline(backend: Backend, max_objects: int, resize: str = "pil_bicubic"):
    """The pipeline for a backend: a device backend (one with an `arena` of device buffers,
    runtime/device_backends.py) gets the DevicePipeline, whose buffers and memory bank live on the
    device; every other backend this one, over numpy buffers. Both have the same methods."""
    if getattr(backend, "arena", None) is not None:
        from .device_pipeline import DevicePipeline

        return DevicePipeline(backend, max_objects, resize)
    return Pipeline(backend, max_objects, resize)


def model_constants(constants: dict) -> tuple[np.ndarray, np.float32, np.ndarray, np.ndarray]:
    """The manifest's constants that the runtime applies itself, on both paths: mask_downsample's
    weight [4, 4] and bias, no_obj_ptr [C] and no_mem_embed [C, 1, 1]."""
    return (
        np.asarray(constants["mask_downsample"]["weight"], np.float32),
        np.float32(constants["mask_downsample"]["bias"]),
        np.asarray(constants["no_obj_ptr"], np.float32),
        np.asarray(constants["no_mem_embed"], np.float32)[:, None, None],
    )


def downsample_mask(mask: np.ndarray, weight: np.ndarray, bias: np.float32) -> np.ndarray:
    """The model's `mask_downsample` (a 4x4, stride-4 convolution) of a [S, S] mask: [S/4, S/4]. On
    the host on both paths: a mask prompt comes from the host."""
    s = mask.shape[-1] // 4
    blocks = mask.reshape(s, 4, s, 4)
    return np.einsum("aibj,ij->ab", blocks, weight) + bias


class Pipeline:
    def __init__(self, backend: Backend, max_objects: int, resize: str = "pil_bicubic") -> None:
        self.backend = backend
        self.resize = resize
        self.dims = dims = backend.manifest.dims
        self.max_objects = max_objects
        contracts = backend.manifest.contracts

        def alloc(graph: str, io: str) -> dict[str, np.ndarray]:
            specs = contracts[graph].inputs if io == "in" else contracts[graph].outputs
            return {s.name: np.zeros(s.concrete_shape(objects=max_objects, points=1, **dims.slot_capacity), s.dtype) for s in specs}

        self.encoder_out = alloc(IMAGE_ENCODER, "out")
        self.image = np.zeros(contracts[IMAGE_ENCODER].inputs[0].shape, np.float32)
        self.conditioned = alloc(MEMORY_ATTENTION, "out")["conditioned_embed"]
        # memory_attention's inputs by slot axis (named as the bank's arrays), and flat buffers the
        # filled slots are gathered into (see `attend`).
        self.slot_inputs = {axis: [s.name for s in contracts[MEMORY_ATTENTION].inputs if axis in s.shape] for axis in SLOT_FLAGS}
        self.filled = {k: v.reshape(-1) for k, v in alloc(MEMORY_ATTENTION, "in").items() if k != "image_embed"}
        self.decoder_in = alloc(MASK_DECODER, "in")
        self.decoder_out = alloc(MASK_DECODER, "out")
        self.memory_out = alloc(MEMORY_ENCODER, "out")["maskmem_features"]
        self.is_mask_from_pts = np.zeros(max_objects, bool)
        self.bank = MemoryBank(dims, max_objects)
        (self.mask_downsample_weight, self.mask_downsample_bias, self.no_obj_ptr,
         self.no_mem_embed) = model_constants(backend.manifest.constants)

    @property
    def image_embed(self) -> np.ndarray:
        return self.encoder_out["image_embed"]

    def encode_image(self, frame: np.ndarray) -> None:
        """Run the image encoder on an RGB uint8 frame; its features stay in `encoder_out`."""
        preprocess_frame(frame, self.image, self.resize)
        self.backend.run(IMAGE_ENCODER, {"image": self.image}, self.encoder_out)

    def attend(self, rows: slice) -> np.ndarray:
        """Memory attention for `rows` with the bank's current selection -> conditioned features."""
        bank = self.bank
        flags = {axis: getattr(bank, name)[rows] for axis, name in SLOT_FLAGS.items()}
        out = self.conditioned[rows]
        if not any(valid.any() for valid in flags.values()):
            # Initial prompted frames only: the graph would add no_mem_embed and nothing else.
            np.add(self.image_embed, self.no_mem_embed, out=out)
            return out
        inputs = {"image_embed": self.image_embed}
        for axis, valid in flags.items():
            inputs.update(self._filled_slots(valid, {name: getattr(bank, name)[rows] for name in self.slot_inputs[axis]}))
        self.backend.run(MEMORY_ATTENTION, inputs, {"conditioned_embed": out})
        return out

    def _filled_slots(self, valid: np.ndarray, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The filled slots of each row, first and in slot order, as many as the fullest row has: the
        attention's cost is per slot passed, and the ring's empty slots (the bank's spare prompted
        frames, the first frames after a prompt) would be paid for and masked out. Rows with fewer keep
        validity flags for the rest. The bank's own arrays when every slot is filled."""
        objects, capacity = valid.shape
        count = max(int(valid.sum(axis=1).max()), 1)
        if count == capacity:
            return arrays
        order = np.argsort(~valid, axis=1, kind="stable")[:, :count]
        gathered = {}
        for name, array in arrays.items():
            shape = (objects, count) + array.shape[2:]
            staged = self.filled[name][: int(np.prod(shape))].reshape(shape)
            for row in range(objects):
                np.take(array[row], order[row], axis=0, out=staged[row])
            gathered[name] = staged
        return gathered

    def decode(
        self,
        rows: slice,
        features: np.ndarray,
        point_coords: np.ndarray | None,
        point_labels: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> dict[str, np.ndarray]:
        """The mask decoder for `rows`. Without points, one padding point (as the official model);
        `point_coords` are in model input pixels. Returns views of the output buffers."""
        n = rows.stop - rows.start
        if point_coords is None:
            point_coords = np.zeros((n, 1, 2), np.float32)
            point_labels = np.full((n, 1), LABEL_PADDING, np.int32)
        inputs = dict(self.decoder_in)
        inputs["conditioned_embed"] = features
        inputs["high_res_feats_0"] = self.encoder_out["high_res_feats_0"]
        inputs["high_res_feats_1"] = self.encoder_out["high_res_feats_1"]
        inputs["point_coords"] = np.ascontiguousarray(point_coords, np.float32)
        inputs["point_labels"] = np.ascontiguousarray(point_labels, np.int32)
        mask_buffer, has_mask = self.decoder_in["mask_input"][rows], self.decoder_in["has_mask_input"][rows]
        if mask_input is None:
            has_mask[...] = 0.0
        else:
            mask_buffer[...] = mask_input
            has_mask[...] = 1.0
        inputs["mask_input"], inputs["has_mask_input"] = mask_buffer, has_mask
        multimask_buffer = self.decoder_in["multimask_output"][rows]
        multimask_buffer[...] = multimask
        inputs["multimask_output"] = multimask_buffer
        outputs = {k: v[rows] for k, v in self.decoder_out.items()}
        self.backend.run(MASK_DECODER, inputs, outputs)
        return outputs

    def encode_memory(self, rows: slice, high_res_masks: np.ndarray, object_score_logits: np.ndarray, from_points: bool) -> np.ndarray:
        """The memory encoder for `rows` on the current frame's own (unconditioned) features."""
        flags = self.is_mask_from_pts[rows]
        flags[...] = from_points
        out = self.memory_out[rows]
        inputs = {
            "image_embed": self.image_embed,
            "high_res_masks": np.ascontiguousarray(high_res_masks, np.float32),
            "object_score_logits": np.ascontiguousarray(object_score_logits, np.float32),
            "is_mask_from_pts": flags,
        }
        self.backend.run(MEMORY_ENCODER, inputs, {"maskmem_features": out})
        return out

    def downsample_mask_prompt(self, mask: np.ndarray) -> np.ndarray:
        """The model's `mask_downsample` (a 4x4, stride-4 convolution) of a [S, S] mask: [S/4, S/4]."""
        return downsample_mask(mask, self.mask_downsample_weight, self.mask_downsample_bias)
