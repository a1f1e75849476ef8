"""The four graphs over buffers allocated once: what every session runs, on every backend.

Rows are objects: a session keeps its objects in rows 0..n-1 and runs a graph on a slice of rows,
so all objects go through one call per graph. A call's frames are the contracts' `frames` axis:
the image encoder encodes several frames (one per stream) in one call, and each row of the other
graphs reads the features of its own frame (`row_frame`; 0 where there is one frame). Every buffer
is allocated here, at open, for
`max_objects`, from the backend's array namespace: numpy on the CPU (memory_bank.NUMPY), the
backend's arena on the device path (arena.Arena: DeviceArrays in CUDA memory, or in host memory
where CI runs it). A step only writes into them; what differs between the two is:

- the slot policy: memory attention gets each row's selected memories and pointers gathered into
  staging buffers, `count` slots per row with validity flags. "filled" (ONNX Runtime, whose graphs
  keep the slot axes symbolic) passes as many slots as the fullest row has: attention costs per
  slot passed. "capacity" (TensorRT, whose profiles fix the slot axes) passes the whole capacity;
- a row with no memory at all (an initial prompted frame) gets image_embed + no_mem_embed: on numpy
  buffers the pipeline adds it and skips the graph, on DeviceArrays the graph does the same add
  (export/graphs/memory_attention.py), so nothing comes back to the host;
- the frame is resized and normalised on the host on both (so both see the same image) and
  uploaded on the device path.

The image encoder writes into one of two feature buffers, so a frame whose later graphs fail
leaves the current frame's features as they were (the session keeps the one it committed). The
current buffer holds each stream's current frame at the stream's slot (`commit_features`): a step
over every stream swaps the two, a step over some streams copies theirs in, so a stream that sits
a step out keeps its frame's features for its prompts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .backend import Backend
from .contracts import FRAMES, IMAGE_ENCODER, LABEL_PADDING, MASK_DECODER, MEMORY_ATTENTION, MEMORY_ENCODER
from .errors import GraphError, InputError
from .image_ops import import_frame_libraries, preprocess_frame
from .memory_bank import NUMPY, MemorySources

SLOT_POLICIES = ("filled", "capacity")
HOST_MAX_POINTS = 64  # per object, where the backend sets no limit (TensorRT's points profile does)



class Features(dict):
    """The image encoder's outputs (image_embed, high_res_feats_0, high_res_feats_1), [frames, ...]
    views of one of the pipeline's two feature buffers (`buffer`: which)."""

    def __init__(self, arrays: dict, buffer: int) -> None:
        super().__init__(arrays)
        self.buffer = buffer


def model_constants(constants: dict) -> tuple[np.ndarray, np.float32, np.ndarray, np.ndarray]:
    """The manifest's constants that the runtime applies itself: mask_downsample's weight [4, 4] and
    bias, no_obj_ptr [C] and no_mem_embed [C, 1, 1]."""
    return (
        np.asarray(constants["mask_downsample"]["weight"], np.float32),
        np.float32(constants["mask_downsample"]["bias"]),
        np.asarray(constants["no_obj_ptr"], np.float32),
        np.asarray(constants["no_mem_embed"], np.float32)[:, None, None],
    )


class Pipeline:
    def __init__(self, backend: Backend, max_objects: int, resize: str = "pil_bicubic", max_frames: int = 1) -> None:
        """`max_objects`: rows of one call (all streams' objects); `max_frames`: frames of one call (streams)."""
        engine_objects = getattr(backend, "max_objects", None)
        if engine_objects is not None and max_objects > engine_objects:
            raise InputError(
                f"max_objects | received {max_objects}; expected at most {engine_objects}, the engines' objects "
                f"profile. Open the session with max_objects <= {engine_objects}, or rebuild with streamsam build --max-objects {max_objects}"
            )
        engine_frames = getattr(backend, "max_frames", None)
        if engine_frames is not None and max_frames > engine_frames:
            raise InputError(
                f"max_streams | received {max_frames}; expected at most {engine_frames}, the engines' frames profile. "
                f"Open the session with max_streams <= {engine_frames}, or rebuild with streamsam build --max-streams {max_frames}"
            )
        self.backend, self.resize, self.max_objects, self.max_frames = backend, resize, max_objects, max_frames
        import_frame_libraries(resize)
        self.arrays = getattr(backend, "arena", None) or NUMPY
        self.slot_policy = getattr(backend, "slot_policy", "filled")
        if self.slot_policy not in SLOT_POLICIES:
            raise InputError(f"slot_policy | received {self.slot_policy!r}; expected one of {SLOT_POLICIES}")
        self.max_points = getattr(backend, "max_points", None) or HOST_MAX_POINTS
        self.dims = dims = backend.manifest.dims
        contracts = backend.manifest.contracts
        self._buffers = []

        def alloc(graph: str, io: str) -> dict:
            specs = contracts[graph].inputs if io == "in" else contracts[graph].outputs
            shape = dict(objects=max_objects, points=self.max_points, frames=max_frames, **dims.slot_capacity)
            return {s.name: self._zeros(s.concrete_shape(**shape), s.dtype) for s in specs}

        image_shape = contracts[IMAGE_ENCODER].inputs[0].concrete_shape(**{FRAMES: max_frames})
        self.image = self._zeros(image_shape, np.float32)
        self.host_image = self.image if isinstance(self.image, np.ndarray) else np.zeros(image_shape, np.float32)
        self._encoded = (Features(alloc(IMAGE_ENCODER, "out"), 0), Features(alloc(IMAGE_ENCODER, "out"), 1))
        self.features: Features = self._encoded[0]  # the current frames', as the sessions committed them
        # Which frame each row reads: one buffer, the same for the three graphs that take it.
        self.row_frame = self._zeros((max_objects,), np.int32)
        self.attention_in = {k: v for k, v in alloc(MEMORY_ATTENTION, "in").items() if k not in ("image_embed", "row_frame")}
        self.conditioned = alloc(MEMORY_ATTENTION, "out")["conditioned_embed"]
        self.decoder_in = alloc(MASK_DECODER, "in")
        self.decoder_out = alloc(MASK_DECODER, "out")
        self.memory_in = alloc(MEMORY_ENCODER, "in")  # a prompt's host-side mask and score go in here
        self.memory_out = alloc(MEMORY_ENCODER, "out")["maskmem_features"]
        (self.mask_downsample_weight, self.mask_downsample_bias, self.no_obj_ptr,
         self.no_mem_embed) = model_constants(backend.manifest.constants)

    def _zeros(self, shape, dtype):
        buffer = self.arrays.zeros(shape, dtype)
        self._buffers.append(buffer)
        return buffer

    def close(self) -> None:
        """Give the buffers back to the arena (numpy's go with the last reference)."""
        free = getattr(self.arrays, "free", None)
        for buffer in self._buffers:
            if free is not None:
                free(buffer)
        self._buffers.clear()

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._buffers)

    # -- the four graphs

    @property
    def frame_nbytes(self) -> int:
        """The features of one frame (in each of the two buffers)."""
        return sum(v.nbytes for v in self.features.values()) // self.max_frames

    def encode_image(self, frames) -> Features:
        """Run the image encoder on RGB uint8 frames (one, or a sequence: one call for all) into the
        feature buffers the current frames do not use; returns [len(frames), ...] views of them.
        The session makes them current (`self.features = ...` or `commit_features`) once its step is done."""
        frames = [frames] if isinstance(frames, np.ndarray) else list(frames)
        k = len(frames)
        spare = self._encoded[1 - self.features.buffer]
        for i, frame in enumerate(frames):
            preprocess_frame(frame, self.host_image[i : i + 1], self.resize)
        image = self.arrays.leading(self.image, (k,) + tuple(self.image.shape[1:]))
        if self.image is not self.host_image:
            image[...] = self.host_image[:k]
        out = Features({name: self.arrays.leading(v, (k,) + tuple(v.shape[1:])) for name, v in spare.items()}, spare.buffer)
        self._run(IMAGE_ENCODER, {"image": image}, out)
        return out

    def commit_features(self, features: Features, slots: Sequence[int], occupied: Sequence[int]) -> None:
        """Make a step's frames current: frame i of `features` becomes the current frame of slot
        `slots[i]`. When the step holds every occupied slot in order (one stream, or every stream),
        the buffers swap; otherwise the step's frames are copied into their slots of the current
        buffer, so the slots that sat the step out keep theirs."""
        spare = self._encoded[features.buffer]
        if list(slots) == list(range(len(slots))) and set(occupied) <= set(slots):
            self.features = spare
            return
        current = self.features
        for i, slot in enumerate(slots):
            for name in current:
                current[name][slot] = features[name][i]

    def _rows_read(self, rows: slice, row_frame) -> dict:
        """The row_frame input of a call on `rows` (an int: every row reads that frame)."""
        n = rows.stop - rows.start
        staged = self.arrays.leading(self.row_frame, (n,))
        staged[...] = np.broadcast_to(np.asarray(row_frame, np.int32), (n,))
        return {"row_frame": staged}

    def attend(self, features: Features, rows: slice, sources: Sequence[MemorySources], row_frame=0):
        """Memory attention for `rows`, each reading its own sources and its frame (`row_frame`: an
        int for all rows, or one per row) -> conditioned features [n, d, g, g]."""
        n = rows.stop - rows.start
        out = self.conditioned[rows]
        memories = max(len(s.memories) for s in sources)
        pointers = max(len(s.pointers) for s in sources)
        if memories == 0 and pointers == 0 and isinstance(out, np.ndarray):
            # Initial prompted frames only: the graph would add no_mem_embed and nothing else.
            frame_of_row = np.broadcast_to(np.asarray(row_frame), (n,))
            np.add(features["image_embed"][frame_of_row], self.no_mem_embed, out=out)
            return out
        if self.slot_policy == "capacity":
            memories, pointers = self.dims.memory_slots, self.dims.pointer_slots
        inputs = {"image_embed": features["image_embed"], **self._rows_read(rows, row_frame)}
        inputs.update(self._gather("memory", "memory_tpos", "memory_valid", [s.memories for s in sources], n, max(memories, 1)))
        inputs.update(self._gather("obj_ptrs", "obj_ptr_tpos", "obj_ptr_valid", [s.pointers for s in sources], n, max(pointers, 1)))
        self._run(MEMORY_ATTENTION, inputs, {"conditioned_embed": out})
        return out

    def _gather(self, values: str, tpos: str, valid: str, picks: list, n: int, count: int) -> dict:
        """Each row's picks, first and in order, into [n, count, ...] staging views; the rest of a
        row's slots flagged empty (their values are whatever the buffer holds: masked out)."""
        buffer = self.attention_in[values]
        staged = self.arrays.leading(buffer, (n, count) + tuple(buffer.shape[2:]))
        host_tpos = np.zeros((n, count), self.attention_in[tpos].dtype)
        host_valid = np.zeros((n, count), bool)
        for row, row_picks in enumerate(picks):
            for slot, (value, position) in enumerate(row_picks):
                staged[row, slot] = value
                host_tpos[row, slot], host_valid[row, slot] = position, True
        staged_tpos = self.arrays.leading(self.attention_in[tpos], (n, count))
        staged_valid = self.arrays.leading(self.attention_in[valid], (n, count))
        staged_tpos[...], staged_valid[...] = host_tpos, host_valid
        return {values: staged, tpos: staged_tpos, valid: staged_valid}

    def decode(self, features: Features, rows: slice, conditioned, point_coords, point_labels, mask_input, multimask: bool, row_frame=0) -> dict:
        """The mask decoder for `rows` on `conditioned` features (and their frames' high-res features,
        `row_frame` as in attend). Without points, one padding point (as the official model);
        `point_coords` [n, k, 2] are in model input pixels, host arrays like `mask_input`. Returns
        views of the output buffers."""
        n = rows.stop - rows.start
        if point_coords is None:
            point_coords = np.zeros((n, 1, 2), np.float32)
            point_labels = np.full((n, 1), LABEL_PADDING, np.int32)
        points = np.shape(point_coords)[1]
        if points > self.max_points:
            raise InputError(
                f"prompt | received {points} points on one object; expected at most {self.max_points} (the buffers, "
                "and on TensorRT the engines' points profile, are sized once). Give fewer clicks, or a mask"
            )
        coords = self.arrays.leading(self.decoder_in["point_coords"], (n, points, 2))
        labels = self.arrays.leading(self.decoder_in["point_labels"], (n, points))
        coords[...], labels[...] = np.asarray(point_coords, np.float32), np.asarray(point_labels, np.int32)
        inputs = {
            "conditioned_embed": conditioned,
            "high_res_feats_0": features["high_res_feats_0"],
            "high_res_feats_1": features["high_res_feats_1"],
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": self.decoder_in["mask_input"][rows],
            "has_mask_input": self.decoder_in["has_mask_input"][rows],
            "multimask_output": self.decoder_in["multimask_output"][rows],
            **self._rows_read(rows, row_frame),
        }
        if mask_input is not None:
            inputs["mask_input"][...] = np.asarray(mask_input, np.float32)
        inputs["has_mask_input"][...] = np.float32(0.0 if mask_input is None else 1.0)
        inputs["multimask_output"][...] = np.bool_(multimask)
        outputs = {k: v[rows] for k, v in self.decoder_out.items()}
        self._run(MASK_DECODER, inputs, outputs)
        return outputs

    def encode_memory(self, features: Features, rows: slice, from_points: bool, high_res_masks=None, object_score_logits=None, row_frame=0):
        """The memory encoder for `rows` on their frames' own (unconditioned) features: of the mask
        decoder's last outputs for these rows, or of host arrays (a prompt's upsampled mask and score)."""
        inputs = {"image_embed": features["image_embed"], "is_mask_from_pts": self.memory_in["is_mask_from_pts"][rows],
                  **self._rows_read(rows, row_frame)}  # fmt: skip
        inputs["is_mask_from_pts"][...] = np.bool_(from_points)
        if high_res_masks is None:
            inputs["high_res_masks"] = self.decoder_out["high_res_masks"][rows]
            inputs["object_score_logits"] = self.decoder_out["object_score_logits"][rows]
        else:
            for name, value in (("high_res_masks", high_res_masks), ("object_score_logits", object_score_logits)):
                inputs[name] = self.memory_in[name][rows]
                inputs[name][...] = np.asarray(value, np.float32)
        out = self.memory_out[rows]
        self._run(MEMORY_ENCODER, inputs, {"maskmem_features": out})
        return out

    def downsample_mask_prompt(self, mask: np.ndarray) -> np.ndarray:
        """The model's `mask_downsample` (a 4x4, stride-4 convolution) of a [S, S] mask: [S/4, S/4].
        On the host on both paths: a mask prompt comes from the host."""
        s = mask.shape[-1] // 4
        blocks = mask.reshape(s, 4, s, 4)
        return np.einsum("aibj,ij->ab", blocks, self.mask_downsample_weight) + self.mask_downsample_bias

    def _run(self, graph: str, inputs: dict, outputs: dict) -> None:
        """One graph call; whatever fails inside the backend becomes a GraphError naming the graph
        (a DeviceLostError when the device is left unusable), and nothing the session committed changed."""
        try:
            self.backend.run(graph, inputs, outputs)
        except GraphError:
            raise
        except Exception as exc:
            check = getattr(self.arrays, "check_usable", None)
            if check is not None:
                check()  # raises DeviceLostError after a sticky CUDA error
            raise GraphError(
                f"{graph} | received {type(exc).__name__} from the backend ({exc}); expected the graph to run. "
                "The call changed nothing: retry it, or reopen the session if it keeps failing"
            ) from exc


