"""Which memories a frame reads, and where a live stream keeps them.

`SelectionRule.select` is the one memory-selection rule (the official `SAM2Base.
_prepare_memory_conditioned_features`), used by StreamTracker, VideoPredictor and training alike:

- the prompted (conditioning) frames' memories, at temporal position 0: all of them, or the
  `max_prompted` closest (the official `select_closest_cond_frames`; the others are then read as
  tracked frames);
- the memories of the `num_maskmem - 1` frames before the current one (after it, in reverse), at
  their distance 1..6;
- the pointers of prompted frames that are not in the future, at their signed distance, and of the
  `max_obj_ptrs - 1` frames before (after) the current one, at their distance, both divided by
  `min(num_frames, max_obj_ptrs) - 1`.

It maps stored frame numbers to picks; where the memories live is each session's business.
`MemoryBank` is a live stream's store: per object, a FIFO of prompted-frame memories, a ring of
recent-frame memories and a ring of object pointers, preallocated for a declared number of objects
in an array namespace (`NUMPY` here, an arena.Arena on the device path). When more frames are
prompted than the FIFO holds, the oldest prompted frame leaves (the official predictor keeps them
all), so a stream's rule keeps every stored prompted frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Container, NamedTuple

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
    masks on the official ones (docs/design.md, "Correctness").
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) & np.uint32(0xFFFF0000)
    if out is None:
        return rounded.view(np.float32)
    out.view(np.uint32)[...] = rounded
    return out


class NumpyArrays:
    """The CPU path's array namespace: numpy. arena.Arena has the same three methods over
    DeviceArrays, so the pipeline and the bank allocate and store the same way on both paths."""

    @staticmethod
    def zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
        return np.zeros(shape, dtype)

    @staticmethod
    def leading(buffer: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The first prod(shape) elements of `buffer` as `shape` (a view)."""
        return buffer.reshape(-1)[: int(np.prod(shape))].reshape(shape)

    @staticmethod
    def store_bfloat16(dst: np.ndarray, src) -> None:
        round_to_bfloat16(np.asarray(src), out=dst)


NUMPY = NumpyArrays()


class Pick(NamedTuple):
    """One memory or pointer a frame reads: the stored frame, its temporal position (an int for
    memories, a normalised signed distance for pointers), and whether it is stored as a prompted
    frame's (a prompted frame beyond `max_prompted` is read at a tracked frame's position)."""

    frame: int
    tpos: float
    prompted: bool


@dataclass(frozen=True)
class Selection:
    memories: tuple[Pick, ...]
    pointers: tuple[Pick, ...]


@dataclass(frozen=True)
class MemorySources:
    """What one object's memory attention reads, in the selection's order: memories [mem, g, g]
    with their temporal positions, pointers [d] with their normalised distances (numpy arrays or
    DeviceArrays)."""

    memories: tuple[tuple[Any, int], ...] = ()
    pointers: tuple[tuple[Any, float], ...] = ()


NO_MEMORY = MemorySources()  # an initial prompted frame: the model adds no_mem_embed instead


@dataclass(frozen=True)
class SelectionRule:
    """The official memory selection, with what differs between sessions as parameters:
    `max_prompted` (None: every prompted frame, as a stream's FIFO and training keep them; a number:
    the closest, as the offline video predictor picks them) and `tracked_memories` (False: only the
    prompted frames' memories and pointers, the memory-off ablation of training/evaluate.py)."""

    num_maskmem: int
    max_prompted: int | None = None
    tracked_memories: bool = True
    max_obj_ptrs: int = MAX_OBJ_PTRS

    def select(
        self,
        frame: int,
        prompted: Collection[int],
        tracked: Container[int],
        reverse: bool = False,
        num_frames: int | None = None,
        tracked_pointers: Container[int] | None = None,
    ) -> Selection:
        """The picks for `frame` among the stored frames: `prompted` (in the order they are to be
        read), `tracked` (frames with a tracked memory) and `tracked_pointers` (frames with a
        tracked pointer, default `tracked`). `num_frames`: the video's length (None: a stream)."""
        direction = -1 if reverse else 1
        tracked_pointers = tracked if tracked_pointers is None else tracked_pointers
        chosen, unselected = self._prompted_frames(frame, list(prompted))
        max_ptrs = self.max_obj_ptrs if num_frames is None else min(num_frames, self.max_obj_ptrs)
        scale = max(max_ptrs - 1, 1)
        end = num_frames if num_frames is not None else float("inf")

        memories = [Pick(f, 0, True) for f in chosen]
        pointers = [Pick(f, (frame - f) * direction / scale, True) for f in chosen if (f - frame) * direction <= 0]
        if self.tracked_memories:
            for distance in range(1, self.num_maskmem):
                prev = frame - distance * direction
                if prev in tracked or prev in unselected:
                    memories.append(Pick(prev, distance, prev not in tracked))
            for distance in range(1, max_ptrs):
                prev = frame - distance * direction
                if not 0 <= prev < end:
                    break
                if prev in tracked_pointers or prev in unselected:
                    pointers.append(Pick(prev, distance / scale, prev not in tracked_pointers))
        return Selection(tuple(memories), tuple(pointers))

    def _prompted_frames(self, frame: int, frames: list[int]) -> tuple[list[int], set[int]]:
        """Every prompted frame while they fit; beyond, the official select_closest_cond_frames
        (closest before, closest after, then the nearest)."""
        if self.max_prompted is None or len(frames) <= self.max_prompted:
            return frames, set()
        chosen = []
        before = [f for f in frames if f < frame]
        after = [f for f in frames if f >= frame]
        if before:
            chosen.append(max(before))
        if after:
            chosen.append(min(after))
        rest = sorted((f for f in frames if f not in chosen), key=lambda f: abs(f - frame))
        chosen += rest[: self.max_prompted - len(chosen)]
        return chosen, {f for f in frames if f not in chosen}


class MemoryBank:
    """Preallocated memories and pointers of up to `max_objects` objects (rows), in the layout of
    memory attention's inputs ([objects, slots, ...]): a frame writes one slot per object and nothing
    grows with the stream."""

    def __init__(self, dims: ModelDims, max_objects: int, arrays=NUMPY) -> None:
        if max_objects < 1:
            raise ValueError(f"MemoryBank | received max_objects={max_objects}; expected >= 1")
        self.arrays = arrays
        self.dims = dims
        self.max_objects = max_objects
        self.prompted_slots = dims.max_prompted_frames
        self.recent_slots = dims.num_maskmem - 1
        self.recent_ptr_slots = dims.pointer_slots - self.prompted_slots
        # The FIFO holds the stored prompted frames: the rule reads all of them.
        self.rule = SelectionRule(dims.num_maskmem)
        n, g = max_objects, dims.feat_size
        self.memory = arrays.zeros((n, dims.memory_slots, dims.mem_dim, g, g), np.float32)
        self.memory_frame = np.full((n, dims.memory_slots), -1, np.int64)
        self.obj_ptrs = arrays.zeros((n, dims.pointer_slots, dims.d_model), np.float32)
        self.ptr_frame = np.full((n, dims.pointer_slots), -1, np.int64)
        # Prompted frames leave the FIFO oldest first: the order they arrived in, per slot.
        self._prompt_age = np.zeros((n, self.prompted_slots), np.int64)
        self._prompt_counter = 0

    @property
    def nbytes(self) -> int:
        arrays = (self.memory, self.memory_frame, self.obj_ptrs, self.ptr_frame, self._prompt_age)
        return sum(a.nbytes for a in arrays)

    def close(self) -> None:
        """Give the rings back to the arena they came from (numpy's go with the last reference)."""
        free = getattr(self.arrays, "free", None)
        if free is not None:
            free(self.memory)
            free(self.obj_ptrs)

    def sources(self, row: int, frame: int) -> MemorySources:
        """What object `row` reads on `frame`: the rule's picks among the stored frames, as views of
        the rings (prompted frames in slot order)."""
        p = self.prompted_slots
        prompted = {int(f): slot for slot, f in enumerate(self.memory_frame[row, :p]) if f >= 0}
        tracked = {int(f): slot for slot, f in enumerate(self.memory_frame[row, p:], start=p) if f >= 0}
        tracked_ptrs = {int(f): slot for slot, f in enumerate(self.ptr_frame[row, p:], start=p) if f >= 0}
        selection = self.rule.select(frame, prompted, tracked, tracked_pointers=tracked_ptrs)
        return MemorySources(
            tuple((self.memory[row, (prompted if k.prompted else tracked)[k.frame]], k.tpos) for k in selection.memories),
            tuple((self.obj_ptrs[row, (prompted if k.prompted else tracked_ptrs)[k.frame]], k.tpos) for k in selection.pointers),
        )

    def clear(self, row: int) -> None:
        """Forget everything about one object (its row can be reused)."""
        self.memory_frame[row] = -1
        self.ptr_frame[row] = -1
        self._prompt_age[row] = 0

    def write_prompted(self, row: int, frame: int, memory, obj_ptr) -> None:
        """Store a prompted frame's memory (rounded to bfloat16) and pointer. The frame replaces an
        earlier memory of the same frame, else takes a free slot, else the oldest prompted frame's."""
        frames = self.memory_frame[row, : self.prompted_slots]
        same = np.flatnonzero(frames == frame)
        free = np.flatnonzero(frames < 0)
        slot = int(same[0] if same.size else free[0] if free.size else np.argmin(self._prompt_age[row]))
        self.arrays.store_bfloat16(self.memory[row, slot], memory)
        self.obj_ptrs[row, slot] = obj_ptr
        self._prompt_counter += 1
        self._prompt_age[row, slot] = self._prompt_counter
        self.memory_frame[row, slot] = frame
        self.ptr_frame[row, slot] = frame
        # A prompted frame is no longer a recent (non-conditioning) frame.
        recent = slice(self.prompted_slots, None)
        self.memory_frame[row, recent][self.memory_frame[row, recent] == frame] = -1
        self.ptr_frame[row, recent][self.ptr_frame[row, recent] == frame] = -1

    def write_recent(self, row: int, frame: int, memory, obj_ptr) -> None:
        """Store a tracked frame's memory (rounded to bfloat16) and pointer in the rings. Frames are
        placed by index modulo the ring size, so any run of consecutive frames keeps the latest."""
        slot = self.prompted_slots + frame % self.recent_slots
        self.arrays.store_bfloat16(self.memory[row, slot], memory)
        self.memory_frame[row, slot] = frame
        ptr_slot = self.prompted_slots + frame % self.recent_ptr_slots
        self.obj_ptrs[row, ptr_slot] = obj_ptr
        self.ptr_frame[row, ptr_slot] = frame

    def move_row(self, src: int, dst: int) -> None:
        """Move an object's memories to another row (keeps a session's rows contiguous)."""
        for array in (self.memory, self.memory_frame, self.obj_ptrs, self.ptr_frame, self._prompt_age):
            array[dst] = array[src]
        self.clear(src)
