"""Device memory for the CUDA path, on cuda-python (`cuda.bindings`): one stream, buffers allocated
once when a session opens, row views by pointer offset, copies on that stream, and the bfloat16
rounding of stored memories as one tiny kernel.

cuda-python rather than pycuda: pycuda does not build on our machines, and NVIDIA's own samples moved
to cuda-python. It is imported when a device backend opens, never by `import streamsam`.

Every CUDA call goes through `cuda_call`, which turns a failing status (or a driver library that
cannot be loaded) into a StreamSamError naming the call, the code and what the code means.

Copies from and to numpy arrays use pageable host memory: cudaMemcpyAsync from pageable memory
returns only once the source has been staged, and to pageable memory only once the copy is done, so
a temporary host array can never be read after it is freed. Pinned staging buffers would let uploads
overlap the graphs; they are the next step where uploads show in a profile, not a guess made here.

bfloat16 rounding: the official predictor stores memories in bfloat16 and the CPU path rounds them
with integer arithmetic (memory_bank.round_to_bfloat16). The device path runs the same integer
formula (BFLOAT16_ROUNDING) in a one-line kernel compiled with NVRTC at open, so ONNX Runtime CUDA
and the CPU store bit-identical memories from identical features. The alternatives were worse: a
round trip of every memory through the host each frame (what the device path exists to avoid), an
extra graph (an engine to build and ship per model just for a cast), or skipping the rounding (logits
near zero flip masks: DESIGN.md, correctness bars).

CUDA graphs, where they would pay (not written: nothing here has run on a GPU yet, and a capture
that is wrong fails silently): with TensorRT, per object count, capture `set_input_shape` +
`execute_async_v3` of memory attention, the mask decoder and the memory encoder of a tracked frame
(one padding point, so shapes depend only on the object count) between cudaStreamBeginCapture and
cudaStreamEndCapture on this stream, then replay the instantiated graph each frame: every address is
fixed (buffers allocated once, rings by row offset), except the ring slot of the memory copy, which
changes with the frame and would become a kernel node parameter update (cudaGraphExecKernelNodeSetParams)
or stay outside the graph. ONNX Runtime has its own switch (CUDA EP `enable_cuda_graph`), which needs
every bound address fixed across runs; the rows a frame runs change with the object count, so it
would need one session per count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import MissingDependencyError, StreamSamError

CUDA_PYTHON_MISSING = (
    "cuda-python | received ImportError ({error}); expected cuda-python for the CUDA device path. "
    "Install it with: pip install 'streamsam[ort-gpu]' (ONNX Runtime CUDA) or 'streamsam[trt]' (TensorRT); "
    "on a Jetson, the cuda-python release matching JetPack's CUDA"
)
NO_DRIVER_HINT = "an NVIDIA GPU with a working driver (nvidia-smi lists it)"

# The CPU path's rounding (memory_bank.round_to_bfloat16) on one uint32 `b`: round to nearest,
# ties to even, on the bit pattern; unsigned arithmetic wraps in C as numpy's uint32 does.
BFLOAT16_ROUNDING = "(b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u"
ROUNDING_KERNEL = f"""
extern "C" __global__ void round_to_bfloat16(unsigned int* bits, unsigned long long count) {{
    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) {{
        unsigned int b = bits[i];
        bits[i] = {BFLOAT16_ROUNDING};
    }}
}}
"""
ROUNDING_BLOCK = 256


def import_cuda():
    """(runtime, driver, nvrtc) modules of cuda-python, or MissingDependencyError naming the extra."""
    try:
        from cuda.bindings import driver, nvrtc, runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cuda as driver, cudart as runtime, nvrtc  # older cuda-python
        except ImportError as exc:
            raise MissingDependencyError(CUDA_PYTHON_MISSING.format(error=exc)) from exc
    return runtime, driver, nvrtc


def _error_text(module, err) -> str:
    """'cudaErrorMemoryAllocation (out of memory)' for a runtime, driver or NVRTC status."""
    runtime, driver, nvrtc = module
    if isinstance(err, runtime.cudaError_t):
        name, text = runtime.cudaGetErrorName(err)[1], runtime.cudaGetErrorString(err)[1]
    elif isinstance(err, driver.CUresult):
        name, text = driver.cuGetErrorName(err)[1], driver.cuGetErrorString(err)[1]
    else:
        name, text = nvrtc.nvrtcGetErrorString(err)[1], ""
    decode = lambda s: s.decode(errors="replace") if isinstance(s, bytes) else str(s)  # noqa: E731
    return f"{decode(name)} ({decode(text)})" if text else decode(name)


def cuda_call(module, call: str, function, *args) -> Any:
    """Run one cuda-python call; return its values (None, one value, or a tuple), or raise a
    StreamSamError that names `call` and the status. A driver library that cannot be loaded (no GPU,
    no driver) surfaces as the same error from the first call."""
    try:
        result = function(*args)
    except RuntimeError as exc:  # cuda.pathfinder's DynamicLibNotFoundError and kin
        raise StreamSamError(f"{call} | received {type(exc).__name__} ({exc}); expected {NO_DRIVER_HINT}") from exc
    err, values = result[0], result[1:]
    if int(getattr(err, "value", err)) != 0:
        raise StreamSamError(f"{call} | received {_error_text(module, err)}; expected success. It needs {NO_DRIVER_HINT} and enough free device memory")
    return None if not values else values[0] if len(values) == 1 else values


def contiguous_index(shape: tuple[int, ...], itemsize: int, key) -> tuple[int, tuple[int, ...]]:
    """(byte offset, shape) of `array[key]` for a C-contiguous array, where `key` is what stays
    contiguous: ints on leading axes, optionally ending in one step-1 slice. Rows (the leading
    axis: objects) are contiguous, so a ring slot `memory[row, slot]` is one pointer offset."""
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
    """A C-contiguous array in device memory: pointer, shape, dtype. Views share the arena's
    allocation; nothing here allocates. `np.asarray(a)` downloads (and waits for the stream)."""

    def __init__(self, arena: "DeviceArena", ptr: int, shape: tuple[int, ...], dtype) -> None:
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
        """Copy a numpy array (upload) or a DeviceArray (device to device) of this shape, on the stream."""
        if isinstance(source, DeviceArray):
            if source.shape != self.shape or source.dtype != self.dtype:
                raise StreamSamError(f"{self!r} | received {source!r}; expected the same dtype and shape")
            self.arena.memcpy(self.ptr, source.ptr, self.nbytes, "cudaMemcpyDeviceToDevice")
            return
        host = np.ascontiguousarray(np.broadcast_to(np.asarray(source, self.dtype), self.shape))
        self.arena.memcpy(self.ptr, host.ctypes.data, self.nbytes, "cudaMemcpyHostToDevice")

    def download(self, out: np.ndarray | None = None) -> np.ndarray:
        """Copy to the host (after everything queued on the stream) and wait for it."""
        out = np.empty(self.shape, self.dtype) if out is None else out
        if out.shape != self.shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise StreamSamError(f"{self!r} | received host buffer {out.dtype} {out.shape}; expected a contiguous {self.dtype} {self.shape}")
        self.arena.memcpy(out.ctypes.data, self.ptr, self.nbytes, "cudaMemcpyDeviceToHost")
        self.arena.synchronize()
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        host = self.download()
        return host if dtype is None else host.astype(dtype, copy=False)

    def __float__(self) -> float:
        if self.size != 1:
            raise TypeError(f"{self!r} | received float() of {self.size} elements; expected one")
        return float(self.download().reshape(()))


class DeviceArena:
    """One device, one stream, every buffer of a session: allocated (and zeroed) by `zeros` while a
    session opens, freed together by `close`. Also the bank's array namespace (`zeros`,
    `store_bfloat16`), so MemoryBank keeps its rings here as it keeps them in numpy on the CPU."""

    def __init__(self, device_id: int = 0) -> None:
        self.cuda = import_cuda()
        runtime, driver, nvrtc = self.cuda
        self.device_id = device_id
        self._allocations: list[int] = []
        self._closed = False
        self.call("cudaSetDevice", runtime.cudaSetDevice, device_id)
        self.call("cudaFree(0) (creates the primary context)", runtime.cudaFree, 0)
        self.stream = self.call("cudaStreamCreateWithFlags", runtime.cudaStreamCreateWithFlags, runtime.cudaStreamNonBlocking)
        try:
            self._round = self._compile_rounding_kernel()
        except BaseException:
            self.call("cudaStreamDestroy", runtime.cudaStreamDestroy, self.stream)
            raise

    @property
    def stream_handle(self) -> int:
        """The stream as an integer address: what ONNX Runtime and TensorRT take."""
        return int(self.stream)

    def call(self, name: str, function, *args):
        return cuda_call(self.cuda, name, function, *args)

    def zeros(self, shape: tuple[int, ...], dtype) -> DeviceArray:
        """A zeroed buffer (zeroed so an empty ring slot is never NaN, even masked out)."""
        runtime = self.cuda[0]
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        nbytes = max(math.prod(shape) * dtype.itemsize, 1)
        ptr = int(self.call(f"cudaMalloc({nbytes} bytes)", runtime.cudaMalloc, nbytes))
        self._allocations.append(ptr)
        self.call("cudaMemsetAsync", runtime.cudaMemsetAsync, ptr, 0, nbytes, self.stream)
        return DeviceArray(self, ptr, shape, dtype)

    def memcpy(self, dst: int, src: int, nbytes: int, kind: str) -> None:
        runtime = self.cuda[0]
        self.call(f"cudaMemcpyAsync ({kind}, {nbytes} bytes)", runtime.cudaMemcpyAsync, dst, src, nbytes, getattr(runtime.cudaMemcpyKind, kind), self.stream)

    def synchronize(self) -> None:
        self.call("cudaStreamSynchronize", self.cuda[0].cudaStreamSynchronize, self.stream)

    def store_bfloat16(self, dst: DeviceArray, src) -> None:
        """Store `src` rounded to bfloat16 (kept as float32) in `dst`, as MemoryBank stores memories."""
        if not isinstance(src, DeviceArray):
            from .memory_bank import round_to_bfloat16

            dst.copy_from(round_to_bfloat16(np.asarray(src, np.float32)))  # a host memory: round it there
            return
        dst.copy_from(src)
        self.round_in_place(dst)

    def round_in_place(self, array: DeviceArray) -> None:
        if array.dtype != np.float32:
            raise StreamSamError(f"{array!r} | received {array.dtype}; expected float32 to round to bfloat16")
        driver = self.cuda[1]
        pointer, count = np.array([array.ptr], np.uint64), np.array([array.size], np.uint64)
        params = np.array([pointer.ctypes.data, count.ctypes.data], np.uint64)  # cuda-python's documented kernelParams form
        blocks = (array.size + ROUNDING_BLOCK - 1) // ROUNDING_BLOCK
        self.call(
            "cuLaunchKernel(round_to_bfloat16)", driver.cuLaunchKernel, self._round,
            blocks, 1, 1, ROUNDING_BLOCK, 1, 1, 0, driver.CUstream(self.stream_handle), params.ctypes.data, 0,
        )  # fmt: skip

    def mem_get_info(self) -> tuple[int, int]:
        """(free, total) bytes of the device (cudaMemGetInfo)."""
        return self.call("cudaMemGetInfo", self.cuda[0].cudaMemGetInfo)

    def close(self) -> None:
        """Wait for the stream, free every buffer, destroy the stream. Views must not be used after."""
        if self._closed:
            return
        runtime = self.cuda[0]
        self.synchronize()
        for ptr in self._allocations:
            self.call("cudaFree", runtime.cudaFree, ptr)
        self._allocations.clear()
        self.call("cudaStreamDestroy", runtime.cudaStreamDestroy, self.stream)
        self._closed = True

    def __enter__(self) -> "DeviceArena":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _compile_rounding_kernel(self):
        """ROUNDING_KERNEL -> PTX for this GPU (NVRTC) -> a loaded function (the driver JITs the PTX),
        as cuda-python's own examples do."""
        runtime, driver, nvrtc = self.cuda
        attr = runtime.cudaDeviceAttr
        major = self.call("cudaDeviceGetAttribute", runtime.cudaDeviceGetAttribute, attr.cudaDevAttrComputeCapabilityMajor, self.device_id)
        minor = self.call("cudaDeviceGetAttribute", runtime.cudaDeviceGetAttribute, attr.cudaDevAttrComputeCapabilityMinor, self.device_id)
        try:
            program = self.call("nvrtcCreateProgram", nvrtc.nvrtcCreateProgram, ROUNDING_KERNEL.encode(), b"round_to_bfloat16.cu", 0, [], [])
        except StreamSamError as exc:
            raise MissingDependencyError(
                f"NVRTC | received {exc}; expected CUDA's runtime compiler (libnvrtc) for the bfloat16 rounding of "
                "stored memories. Install it with: pip install 'cuda-python[all]' (or use JetPack's CUDA on a Jetson)"
            ) from exc
        options = [f"--gpu-architecture=compute_{major}{minor}".encode()]
        try:
            err = nvrtc.nvrtcCompileProgram(program, len(options), options)[0]
            if int(getattr(err, "value", err)) != 0:
                log = b" " * self.call("nvrtcGetProgramLogSize", nvrtc.nvrtcGetProgramLogSize, program)
                self.call("nvrtcGetProgramLog", nvrtc.nvrtcGetProgramLog, program, log)
                raise StreamSamError(f"nvrtcCompileProgram(round_to_bfloat16, {options}) | received {_error_text(self.cuda, err)}: {log.decode(errors='replace').strip()}; expected PTX")
            size = self.call("nvrtcGetPTXSize", nvrtc.nvrtcGetPTXSize, program)
            ptx = b" " * size
            self.call("nvrtcGetPTX", nvrtc.nvrtcGetPTX, program, ptx)
        finally:
            self.call("nvrtcDestroyProgram", nvrtc.nvrtcDestroyProgram, program)
        module = self.call("cuModuleLoadData", driver.cuModuleLoadData, np.char.array(ptx))
        return self.call("cuModuleGetFunction", driver.cuModuleGetFunction, module, b"round_to_bfloat16")
