"""The four graphs over device buffers: the Pipeline's methods, with every graph input and output,
and the memory bank's memories and pointers, in device memory allocated once at open.

Per tracked frame, what crosses between host and device:
- up: the frame, resized and normalised on the host exactly as the CPU path does (so both paths see
  the same image; moving this to the device, from a uint8 upload, is DESIGN.md's next step), and the
  bank's selection (which slots are valid, their temporal positions: a few bytes per object);
- down: only what the session reads with np.asarray: the low-res logits, IoUs and object scores.
Features, conditioned features, masks at the model size, memories and pointers stay on the device:
the memory encoder's output is copied into its ring slot device to device and rounded to bfloat16
there (cuda_memory's kernel). Writing it straight into the slot is impossible for more than one
object: the bank is [objects, slots, ...] (memory attention's layout), so one slot of several rows
is strided, and graph outputs must be contiguous.

The CPU path's host-side rules, and where they run here:
- a row with no memory (an initial prompted frame) gets image_embed + no_mem_embed: the CPU path
  adds it on the host to skip the graph; here the memory attention graph runs and does the same add
  itself (export/graphs/memory_attention.py), so nothing comes back to the host;
- a prompted frame's memory is encoded from hole-filled logits upsampled on the host (the CPU
  path's code): those logits come down and the [1, 1, S, S] mask goes up, on prompts only;
- mask prompts are downsampled on the host (they come from the host) and uploaded.
"""

from __future__ import annotations

import numpy as np

from .contracts import IMAGE_ENCODER, LABEL_PADDING, MASK_DECODER, MEMORY_ATTENTION, MEMORY_ENCODER
from .cuda_memory import DeviceArray
from .errors import StreamSamError
from .image_ops import preprocess_frame
from .memory_bank import MemoryBank
from .pipeline import downsample_mask, model_constants

SELECTION = ("memory_tpos", "memory_valid", "obj_ptr_tpos", "obj_ptr_valid")


class DevicePipeline:
    """Pipeline's methods over a device backend (OnnxRuntimeCudaBackend or TensorRTBackend): the
    same arguments; results are DeviceArrays (np.asarray downloads one)."""

    def __init__(self, backend, max_objects: int, resize: str = "pil_bicubic") -> None:
        engine_objects = getattr(backend, "max_objects", None)
        if engine_objects is not None and max_objects > engine_objects:
            raise StreamSamError(
                f"max_objects | received {max_objects}; expected at most {engine_objects}, the engines' objects "
                f"profile. Open the session with max_objects <= {engine_objects}, or rebuild with streamsam build --max-objects {max_objects}"
            )
        self.backend, self.resize, self.max_objects = backend, resize, max_objects
        self.dims = dims = backend.manifest.dims
        self.max_points = backend.max_points
        arena = self.arena = backend.arena
        contracts = backend.manifest.contracts

        def alloc(graph: str, io: str) -> dict[str, DeviceArray]:
            specs = contracts[graph].inputs if io == "in" else contracts[graph].outputs
            return {s.name: arena.zeros(s.concrete_shape(objects=max_objects, points=self.max_points, **dims.slot_capacity), s.dtype) for s in specs}

        image_spec = contracts[IMAGE_ENCODER].inputs[0]
        self.host_image = np.zeros(image_spec.shape, np.float32)
        self.image = arena.zeros(image_spec.shape, np.float32)
        self.encoder_out = alloc(IMAGE_ENCODER, "out")
        attention_in = alloc(MEMORY_ATTENTION, "in")
        self.selection = {name: attention_in[name] for name in SELECTION}
        self.conditioned = alloc(MEMORY_ATTENTION, "out")["conditioned_embed"]
        self.decoder_in = alloc(MASK_DECODER, "in")
        self.decoder_out = alloc(MASK_DECODER, "out")
        self.memory_in = alloc(MEMORY_ENCODER, "in")  # a prompt's host-side mask and score go up here
        self.memory_out = alloc(MEMORY_ENCODER, "out")["maskmem_features"]
        self.bank = MemoryBank(dims, max_objects, arrays=arena)
        (self.mask_downsample_weight, self.mask_downsample_bias, self.no_obj_ptr,
         self.no_mem_embed) = model_constants(backend.manifest.constants)

    @property
    def image_embed(self) -> DeviceArray:
        return self.encoder_out["image_embed"]

    def encode_image(self, frame: np.ndarray) -> None:
        """Run the image encoder on an RGB uint8 frame; its features stay on the device."""
        preprocess_frame(frame, self.host_image, self.resize)
        self.image.copy_from(self.host_image)
        self.backend.run(IMAGE_ENCODER, {"image": self.image}, self.encoder_out)

    def attend(self, rows: slice) -> DeviceArray:
        """Memory attention for `rows` with the bank's current selection -> conditioned features.
        The graph itself gives rows without memory image_embed + no_mem_embed."""
        bank = self.bank
        inputs = {"image_embed": self.image_embed, "memory": bank.memory[rows], "obj_ptrs": bank.obj_ptrs[rows]}
        for name, buffer in self.selection.items():
            inputs[name] = buffer[rows]
            inputs[name].copy_from(getattr(bank, name)[rows])  # the host bookkeeping: a few bytes
        out = self.conditioned[rows]
        self.backend.run(MEMORY_ATTENTION, inputs, {"conditioned_embed": out})
        return out

    def decode(self, rows: slice, features: DeviceArray, point_coords, point_labels, mask_input, multimask: bool) -> dict[str, DeviceArray]:
        """The mask decoder for `rows` (Pipeline.decode's arguments; prompts are host arrays). Returns
        views of the device output buffers."""
        n = rows.stop - rows.start
        if point_coords is None:
            point_coords = np.zeros((n, 1, 2), np.float32)
            point_labels = np.full((n, 1), LABEL_PADDING, np.int32)
        points = np.shape(point_coords)[1]
        if points > self.max_points:
            raise StreamSamError(
                f"prompt | received {points} points on one object; expected at most {self.max_points} on the device "
                "path (its buffers, and the engines' points profile, are sized once)"
            )
        inputs = {
            "conditioned_embed": features,
            "high_res_feats_0": self.encoder_out["high_res_feats_0"],
            "high_res_feats_1": self.encoder_out["high_res_feats_1"],
            # Scratch from the buffer's start: a prompt's [n, points, 2] is contiguous there.
            "point_coords": self.decoder_in["point_coords"].view((n, points, 2)),
            "point_labels": self.decoder_in["point_labels"].view((n, points)),
            "mask_input": self.decoder_in["mask_input"][rows],
            "has_mask_input": self.decoder_in["has_mask_input"][rows],
            "multimask_output": self.decoder_in["multimask_output"][rows],
        }
        inputs["point_coords"].copy_from(np.asarray(point_coords, np.float32))
        inputs["point_labels"].copy_from(np.asarray(point_labels, np.int32))
        if mask_input is not None:
            inputs["mask_input"].copy_from(np.asarray(mask_input, np.float32))
        inputs["has_mask_input"].copy_from(np.float32(0.0 if mask_input is None else 1.0))
        inputs["multimask_output"].copy_from(np.bool_(multimask))
        outputs = {k: v[rows] for k, v in self.decoder_out.items()}
        self.backend.run(MASK_DECODER, inputs, outputs)
        return outputs

    def encode_memory(self, rows: slice, high_res_masks, object_score_logits, from_points: bool) -> DeviceArray:
        """The memory encoder for `rows` on the current frame's own features. The decoder's outputs
        (DeviceArrays) are read where they are; host arrays (a prompt's mask) are uploaded first."""
        inputs = {"image_embed": self.image_embed, "is_mask_from_pts": self.memory_in["is_mask_from_pts"][rows]}
        inputs["is_mask_from_pts"].copy_from(np.bool_(from_points))
        for name, value in (("high_res_masks", high_res_masks), ("object_score_logits", object_score_logits)):
            if isinstance(value, DeviceArray):
                inputs[name] = value
            else:
                inputs[name] = self.memory_in[name][rows]
                inputs[name].copy_from(np.asarray(value, np.float32))
        out = self.memory_out[rows]
        self.backend.run(MEMORY_ENCODER, inputs, {"maskmem_features": out})
        return out

    def downsample_mask_prompt(self, mask: np.ndarray) -> np.ndarray:
        return downsample_mask(mask, self.mask_downsample_weight, self.mask_downsample_bias)
