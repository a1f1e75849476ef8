"""The memory bank: per object, a FIFO of prompted-frame memories, a ring of recent-frame memories
and a ring of object pointers, preallocated for a declared number of objects.

The arrays have exactly the memory attention graph's input layout ([objects, slots, ...]), so a
step passes views of them to the graph and writes one slot per object: nothing grows with the
stream. Which slots a frame attends to follows the official rules (`SAM2Base.
_prepare_memory_conditioned_features`):

- every prompted (conditioning) frame's memory, at temporal position 0;
- the memories of the `num_maskmem - 1` frames before the current one (after it, in reverse), at
  their distance 1..6;
- the pointers of prompted frames that are not in the future, at their signed distance, and of the
  `max_obj_ptrs - 1` frames before (after) the current one, at their distance, both divided by
  `min(num_frames, max_obj_ptrs) - 1`.

When more frames are prompted than the FIFO holds, the oldest prompted frame leaves (the official
model keeps them all; its default attends to all of them).
"""

from __future__ import annotations

import numpy as np

from .contracts import ModelDims

MAX_OBJ_PTRS = 16  # the official max_obj_ptrs_in_encoder


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> the bfloat16 bits (uint16) of its nearest bfloat16: half the storage."""
    return (round_to_bfloat16(x).view(np.uint32) >> 16).astype(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def round_to_bfloat16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), kept as float32.

    The official video predictor stores memories in bfloat16; reproducing the rounding keeps our
    masks on the official ones (DESIGN.md, correctness bars).
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) & np.uint32(0xFFFF0000)
    if out is None:
        return rounded.view(np.float32)
    out.view(np.uint32)[...] = rounded
    return out


class HostArrays:
    """Where the bank keeps its two big arrays (memories, pointers): numpy, on the CPU path. The
    device path passes cuda_memory.DeviceArena, which has the same two methods; every other array of
    the bank (which frame is in which slot, the selection flags) is bookkeeping and stays in numpy."""

    @staticmethod
    def zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
        return np.zeros(shape, dtype)

    @staticmethod
    def store_bfloat16(dst: np.ndarray, src: np.ndarray) -> None:
        round_to_bfloat16(src, out=dst)


class MemoryBank:
    """Preallocated memories and pointers of up to `max_objects` objects (rows)."""

    def __init__(self, dims: ModelDims, max_objects: int, arrays=HostArrays) -> None:
        if max_objects < 1:
            raise ValueError(f"MemoryBank | received max_objects={max_objects}; expected >= 1")
        self.arrays = arrays
        self.dims = dims
        self.max_objects = max_objects
        self.prompted_slots = dims.max_prompted_frames
        self.recent_slots = dims.num_maskmem - 1
        self.recent_ptr_slots = dims.pointer_slots - self.prompted_slots
        n, g = max_objects, dims.feat_size
        self.memory = arrays.zeros((n, dims.memory_slots, dims.mem_dim, g, g), np.float32)
        self.memory_frame = np.full((n, dims.memory_slots), -1, np.int64)
        self.obj_ptrs = arrays.zeros((n, dims.pointer_slots, dims.d_model), np.float32)
        self.ptr_frame = np.full((n, dims.pointer_slots), -1, np.int64)
        # Prompted frames leave the FIFO oldest first: the order they arrived in, per slot.
        self._prompt_age = np.zeros((n, self.prompted_slots), np.int64)
        self._prompt_counter = 0
        # The graph's selection inputs, rewritten by `select` each step.
        self.memory_tpos = np.zeros((n, dims.memory_slots), np.int32)
        self.memory_valid = np.zeros((n, dims.memory_slots), bool)
        self.obj_ptr_tpos = np.zeros((n, dims.pointer_slots), np.float32)
        self.obj_ptr_valid = np.zeros((n, dims.pointer_slots), bool)

    @property
    def nbytes(self) -> int:
        arrays = (self.memory, self.memory_frame, self.obj_ptrs, self.ptr_frame, self.memory_tpos,
                  self.memory_valid, self.obj_ptr_tpos, self.obj_ptr_valid, self._prompt_age)
        return sum(a.nbytes for a in arrays)

    def clear(self, row: int) -> None:
        """Forget everything about one object (its row can be reused)."""
        self.memory_frame[row] = -1
        self.ptr_frame[row] = -1
        self._prompt_age[row] = 0

    def has_prompt(self, row: int) -> bool:
        return bool((self.memory_frame[row, : self.prompted_slots] >= 0).any())

    def prompted_frames(self, row: int) -> list[int]:
        frames = self.memory_frame[row, : self.prompted_slots]
        return sorted(int(f) for f in frames if f >= 0)

    def write_prompted(self, row: int, frame: int, memory: np.ndarray, obj_ptr: np.ndarray) -> None:
        """Store a prompted frame's memory (rounded to bfloat16) and pointer. The frame replaces an
        earlier memory of the same frame, else takes a free slot, else the oldest prompted frame's."""
        frames = self.memory_frame[row, : self.prompted_slots]
        same = np.flatnonzero(frames == frame)
        free = np.flatnonzero(frames < 0)
        slot = int(same[0] if same.size else free[0] if free.size else np.argmin(self._prompt_age[row]))
        self._prompt_counter += 1
        self._prompt_age[row, slot] = self._prompt_counter
        self.arrays.store_bfloat16(self.memory[row, slot], memory)
        self.memory_frame[row, slot] = frame
        self.obj_ptrs[row, slot] = obj_ptr
        self.ptr_frame[row, slot] = frame
        # A prompted frame is no longer a recent (non-conditioning) frame.
        recent = slice(self.prompted_slots, None)
        self.memory_frame[row, recent][self.memory_frame[row, recent] == frame] = -1
        self.ptr_frame[row, recent][self.ptr_frame[row, recent] == frame] = -1

    def write_recent(self, row: int, frame: int, memory: np.ndarray, obj_ptr: np.ndarray) -> None:
        """Store a tracked frame's memory (rounded to bfloat16) and pointer in the rings. Frames are
        placed by index modulo the ring size, so any run of consecutive frames, forward or in
        reverse, keeps the latest ones."""
        slot = self.prompted_slots + frame % self.recent_slots
        self.arrays.store_bfloat16(self.memory[row, slot], memory)
        self.memory_frame[row, slot] = frame
        ptr_slot = self.prompted_slots + frame % self.recent_ptr_slots
        self.obj_ptrs[row, ptr_slot] = obj_ptr
        self.ptr_frame[row, ptr_slot] = frame

    def load_row(self, row: int, memories: list[tuple[np.ndarray, int]], pointers: list[tuple[np.ndarray, float]]) -> None:
        """Fill one row's slots from an explicit selection (a session that keeps every frame's
        outputs and applies the selection rules itself): memories as (features, temporal
        position), pointers as (pointer, normalised signed distance)."""
        if len(memories) > self.dims.memory_slots or len(pointers) > self.dims.pointer_slots:
            raise ValueError(
                f"MemoryBank.load_row | received {len(memories)} memories and {len(pointers)} pointers; "
                f"expected at most {self.dims.memory_slots} and {self.dims.pointer_slots}"
            )
        self.memory_valid[row] = False
        self.obj_ptr_valid[row] = False
        for slot, (features, tpos) in enumerate(memories):
            self.memory[row, slot] = features
            self.memory_tpos[row, slot] = tpos
            self.memory_valid[row, slot] = True
        for slot, (pointer, tpos) in enumerate(pointers):
            self.obj_ptrs[row, slot] = pointer
            self.obj_ptr_tpos[row, slot] = tpos
            self.obj_ptr_valid[row, slot] = True

    def move_row(self, src: int, dst: int) -> None:
        """Move an object's memories to another row (keeps a session's rows contiguous)."""
        for array in (self.memory, self.memory_frame, self.obj_ptrs, self.ptr_frame, self._prompt_age):
            array[dst] = array[src]
        self.clear(src)

    def select(
        self,
        rows: slice,
        frame: int,
        reverse: bool = False,
        num_frames: int | None = None,
    ) -> None:
        """Fill memory_tpos / memory_valid / obj_ptr_tpos / obj_ptr_valid of `rows` for `frame`."""
        direction = -1 if reverse else 1
        max_ptrs = MAX_OBJ_PTRS if num_frames is None else min(num_frames, MAX_OBJ_PTRS)
        p = self.prompted_slots

        mem_frames = self.memory_frame[rows]
        distance = (frame - mem_frames) * direction
        valid, tpos = self.memory_valid[rows], self.memory_tpos[rows]
        valid[:, :p] = mem_frames[:, :p] >= 0
        tpos[:, :p] = 0
        recent = distance[:, p:]
        valid[:, p:] = (mem_frames[:, p:] >= 0) & (recent >= 1) & (recent <= self.recent_slots)
        tpos[:, p:] = np.where(valid[:, p:], recent, 0)

        ptr_frames = self.ptr_frame[rows]
        ptr_distance = (frame - ptr_frames) * direction
        ptr_valid, ptr_tpos = self.obj_ptr_valid[rows], self.obj_ptr_tpos[rows]
        ptr_valid[:, :p] = (ptr_frames[:, :p] >= 0) & (ptr_distance[:, :p] >= 0)
        ptr_valid[:, p:] = (ptr_frames[:, p:] >= 0) & (ptr_distance[:, p:] >= 1) & (ptr_distance[:, p:] <= max_ptrs - 1)
        ptr_tpos[...] = np.where(ptr_valid, ptr_distance / max(max_ptrs - 1, 1), 0.0)

    def forget_memory_of_rows(self, rows: slice) -> None:
        """Attend to nothing on this step (an initial prompted frame: `no_mem_embed` instead)."""
        self.memory_valid[rows] = False
        self.obj_ptr_valid[rows] = False
