"""Buffers allocated once and addressed by pointer: the device path's array namespace.

An `Arena` hands out `DeviceArray`s (pointer, shape, dtype) from one memory, and is also the
namespace the pipeline and the memory bank allocate from (`zeros`, `leading`, `store_bfloat16`),
as they allocate from `memory_bank.NUMPY` on the CPU path. The memory itself is one of two:

- `cuda_memory.CudaMemory`: device memory, one CUDA stream, the bfloat16 rounding kernel
  (`DeviceArena`, what ONNX Runtime CUDA and TensorRT run on);
- `HostMemory` (here): host memory behind the same calls, pointers real addresses, copies
  `memmove`, the rounding the kernel's formula in numpy (`HostArena`). It runs the device path,
  everything but the CUDA calls, in CI: the pipeline over DeviceArrays, the memory bank on the
  arena, and ONNX Runtime's I/O binding to raw pointers (backend.OnnxRuntimeArenaBackend).
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

from .cuda_memory import CudaMemory
from .errors import StreamSamError
from .memory_bank import round_to_bfloat16


def contiguous_index(shape: tuple[int, ...], itemsize: int, key) -> tuple[int, tuple[int, ...]]:
    """(byte offset, shape) of `array[key]` for a C-contiguous array, where `key` is what stays
    contiguous: ints on leading axes, optionally ending in one step-1 slice, or `...` (all of it).
    Rows (the leading axis: objects) are contiguous, so a ring slot `memory[row, slot]` is one
    pointer offset."""
    if key is Ellipsis:
        return 0, tuple(shape)
    key = key if isinstance(key, tuple) else (key,)
    if len(key) > len(shape) or any(not isinstance(k, (int, np.integer)) for k in key[:-1]) or not isinstance(key[-1], (int, np.integer, slice)):
        raise StreamSamError(
            f"DeviceArray{list(shape)} | received index {key!r}; expected ints on leading axes, optionally ending in "
            "one slice (a contiguous region). Download it with np.asarray(...) to index it otherwise."
        )
    strides = [math.prod(shape[i + 1 :]) * itemsize for i in range(len(shape))]
    offset = 0
    for axis, k in enumerate(key[:-1]):
        offset += _checked_int(int(k), shape[axis], axis) * strides[axis]
    axis, last = len(key) - 1, key[-1]
    if isinstance(last, slice):
        start, stop, step = last.indices(shape[axis])
        if step != 1:
            raise StreamSamError(f"DeviceArray{list(shape)} | received slice step {step}; expected 1 (contiguous rows)")
        stop = max(stop, start)
        return offset + start * strides[axis], (stop - start,) + tuple(shape[axis + 1 :])
    return offset + _checked_int(int(last), shape[axis], axis) * strides[axis], tuple(shape[axis + 1 :])


def _checked_int(index: int, size: int, axis: int) -> int:
    if not -size <= index < size:
        raise StreamSamError(f"DeviceArray | received index {index} on axis {axis}; expected -{size} <= index < {size}")
    return index % size


class DeviceArray:
    """A C-contiguous array in an arena's memory: pointer, shape, dtype. Views share the arena's
    allocation; nothing here allocates. `np.asarray(a)` downloads (and waits for the stream);
    `a[key] = value` copies a numpy array (upload) or a DeviceArray (device to device) in."""

    def __init__(self, arena: "Arena", ptr: int, shape: tuple[int, ...], dtype) -> None:
        self.arena, self.ptr, self.shape, self.dtype = arena, int(ptr), tuple(int(s) for s in shape), np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"DeviceArray({self.dtype} {list(self.shape)} at 0x{self.ptr:x})"

    def __getitem__(self, key) -> "DeviceArray":
        offset, shape = contiguous_index(self.shape, self.dtype.itemsize, key)
        return DeviceArray(self.arena, self.ptr + offset, shape, self.dtype)

    def __setitem__(self, key, value) -> None:
        self[key].copy_from(value)

    def view(self, shape: tuple[int, ...]) -> "DeviceArray":
        """The first prod(shape) elements as a contiguous array of `shape` (e.g. a prompt's
        [objects, points, 2] in a buffer sized for the most points)."""
        if math.prod(shape) > self.size:
            raise StreamSamError(f"{self!r} | received view shape {list(shape)}; expected at most {self.size} elements")
        return DeviceArray(self.arena, self.ptr, shape, self.dtype)

    def copy_from(self, source) -> None:
        """Copy a numpy array or scalar (upload, broadcast to this shape) or a DeviceArray of this
        shape (device to device), on the stream."""
        if isinstance(source, DeviceArray):
            if source.shape != self.shape or source.dtype != self.dtype:
                raise StreamSamError(f"{self!r} | received {source!r}; expected the same dtype and shape")
            self.arena.memcpy(self.ptr, source.ptr, self.nbytes, "DeviceToDevice")
            return
        host = np.ascontiguousarray(np.broadcast_to(np.asarray(source, self.dtype), self.shape))
        self.arena.memcpy(self.ptr, host.ctypes.data, self.nbytes, "HostToDevice")

    def download(self, out: np.ndarray | None = None) -> np.ndarray:
        """Copy to the host (after everything queued on the stream) and wait for it."""
        out = np.empty(self.shape, self.dtype) if out is None else out
        if out.shape != self.shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise StreamSamError(f"{self!r} | received host buffer {out.dtype} {out.shape}; expected a contiguous {self.dtype} {self.shape}")
        self.arena.memcpy(out.ctypes.data, self.ptr, self.nbytes, "DeviceToHost")
        self.arena.synchronize()
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        host = self.download()
        return host if dtype is None else host.astype(dtype, copy=False)

    def __float__(self) -> float:
        if self.size != 1:
            raise TypeError(f"{self!r} | received float() of {self.size} elements; expected one")
        return float(self.download().reshape(()))


class Arena:
    """Every buffer of a session in one memory: allocated (and zeroed) by `zeros` while a session
    opens, freed by `free` when it closes, or all together by `close`. `memory` does the calls:
    malloc, free, memset, memcpy (kind: HostToDevice, DeviceToHost, DeviceToDevice), synchronize,
    round_to_bfloat16 (in place, on a float32 region), mem_get_info, close; `ort_device` and
    `device_id` say where ONNX Runtime binds its buffers."""

    def __init__(self, memory) -> None:
        self.memory = memory
        self.ort_device, self.device_id = memory.ort_device, memory.device_id
        self._allocations: set[int] = set()
        self._closed = False

    @property
    def stream_handle(self) -> int:
        """The stream as an integer address: what ONNX Runtime and TensorRT take."""
        return self.memory.stream_handle

    def zeros(self, shape: tuple[int, ...], dtype) -> DeviceArray:
        """A zeroed buffer (zeroed so an empty ring slot is never NaN, even masked out)."""
        self._require_open()
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        nbytes = max(math.prod(shape) * dtype.itemsize, 1)
        ptr = self.memory.malloc(nbytes)
        self._allocations.add(ptr)
        self.memory.memset(ptr, nbytes)
        return DeviceArray(self, ptr, shape, dtype)

    def free(self, array: DeviceArray) -> None:
        """Give back a buffer `zeros` allocated (after the stream is done with it)."""
        if array.ptr in self._allocations:
            self.memory.synchronize()
            self._allocations.remove(array.ptr)
            self.memory.free(array.ptr)

    @staticmethod
    def leading(buffer: DeviceArray, shape: tuple[int, ...]) -> DeviceArray:
        """The first prod(shape) elements of `buffer` as `shape` (memory_bank.NUMPY has the same)."""
        return buffer.view(shape)

    def memcpy(self, dst: int, src: int, nbytes: int, kind: str) -> None:
        self._require_open()
        self.memory.memcpy(dst, src, nbytes, kind)

    def synchronize(self) -> None:
        self.memory.synchronize()

    def store_bfloat16(self, dst: DeviceArray, src) -> None:
        """Store `src` rounded to bfloat16 (kept as float32) in `dst`, as MemoryBank stores memories."""
        dst.copy_from(src)
        if dst.dtype != np.float32:
            raise StreamSamError(f"{dst!r} | received {dst.dtype}; expected float32 to round to bfloat16")
        self.memory.round_to_bfloat16(dst.ptr, dst.size)

    def mem_get_info(self) -> tuple[int, int]:
        """(free, total) bytes of the memory."""
        return self.memory.mem_get_info()

    def check_usable(self) -> None:
        """After a failed graph: raise DeviceLostError if the memory can no longer be used (a sticky
        CUDA error shows on the next synchronize)."""
        if not self._closed:
            self.memory.synchronize()

    def close(self) -> None:
        """Wait for the stream, free every buffer, release the memory. Views must not be used after."""
        if self._closed:
            return
        self.memory.synchronize()
        for ptr in self._allocations:
            self.memory.free(ptr)
        self._allocations.clear()
        self.memory.close()
        self._closed = True

    def _require_open(self) -> None:
        if self._closed:
            raise StreamSamError("arena | received a call after close(); expected an open arena. Open a new backend")

    def __enter__(self) -> "Arena":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HostMemory:
    """CudaMemory's calls on host memory: what lets CI run the device path without a GPU. Copies
    are synchronous, so `synchronize` has nothing to wait for."""

    ort_device, device_id, stream_handle = "cpu", 0, 0
    ALIGNMENT = 64  # as ONNX Runtime's CPU allocator

    def __init__(self) -> None:
        self._buffers: dict[int, np.ndarray] = {}

    def malloc(self, nbytes: int) -> int:
        raw = np.empty(nbytes + self.ALIGNMENT, np.uint8)
        ptr = raw.ctypes.data + (-raw.ctypes.data) % self.ALIGNMENT
        self._buffers[ptr] = raw
        return ptr

    def free(self, ptr: int) -> None:
        del self._buffers[ptr]

    def memset(self, ptr: int, nbytes: int) -> None:
        ctypes.memset(ptr, 0, nbytes)

    def memcpy(self, dst: int, src: int, nbytes: int, kind: str) -> None:
        ctypes.memmove(dst, src, nbytes)

    def synchronize(self) -> None:
        pass  # every copy above has finished when it returns: there is no stream to wait for

    def round_to_bfloat16(self, ptr: int, count: int) -> None:
        bits = np.ctypeslib.as_array((ctypes.c_float * count).from_address(ptr))
        round_to_bfloat16(bits, out=bits)

    def mem_get_info(self) -> tuple[int, int]:
        held = sum(b.nbytes for b in self._buffers.values())
        return -held, 0  # free falls as buffers are held: what a flat-memory check compares

    def close(self) -> None:
        self._buffers.clear()


class HostArena(Arena):
    """An arena in host memory: the device path, run where there is no GPU."""

    def __init__(self) -> None:
        super().__init__(HostMemory())


class DeviceArena(Arena):
    """An arena on a CUDA device: one stream, cudaMalloc'd buffers, the rounding kernel."""

    def __init__(self, device_id: int = 0) -> None:
        super().__init__(CudaMemory(device_id))
