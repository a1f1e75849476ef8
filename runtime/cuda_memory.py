"""The CUDA calls of the device path, on cuda-python (`cuda.bindings`): what `arena.CudaMemory`
does for an Arena (arena.py holds DeviceArray and the Arena itself, which run in CI on host memory):
one stream, buffers allocated once when a session opens, copies on that stream, and the bfloat16
rounding of stored memories as one tiny kernel. Only this module needs a GPU.

cuda-python rather than pycuda: pycuda does not build on our machines, and NVIDIA's own samples moved
to cuda-python. It is imported when a device backend opens, never by `import streamsam`.

Every CUDA call goes through `cuda_call`, which turns a failing status (or a driver library that
cannot be loaded) into a GraphError naming the call, the code and what the code means; a sticky
error (the context is unusable until the process exits) into a DeviceLostError.

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
near zero flip masks: docs/design.md, "Correctness").

CUDA graphs, where they would pay (not written: nothing here has run on a GPU yet, and a capture
that is wrong fails silently): with TensorRT, per object count, capture `set_input_shape` +
`execute_async_v3` of memory attention, the mask decoder and the memory encoder of a tracked frame
(one padding point, so shapes depend only on the object count) between cudaStreamBeginCapture and
cudaStreamEndCapture on this stream, then replay the instantiated graph each frame. The gathers of
the selected memories into the attention's staging buffers are device-to-device copies at fixed
addresses but for the ring slot read, which changes with the frame and would become a memcpy node
parameter update or stay outside the graph. ONNX Runtime has its own switch (CUDA EP
`enable_cuda_graph`), which needs every bound address fixed across runs; the rows a frame runs change
with the object count, so it would need one session per count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DeviceLostError, GraphError, MissingDependencyError, StreamSamError

CUDA_PYTHON_MISSING = (
    "cuda-python | received ImportError ({error}); expected cuda-python for the CUDA device path. "
    "Install it with: pip install 'streamsam[ort-gpu]' (ONNX Runtime CUDA) or 'streamsam[trt]' (TensorRT); "
    "on a Jetson, the cuda-python release matching JetPack's CUDA"
)
NO_DRIVER_HINT = "an NVIDIA GPU with a working driver (nvidia-smi lists it)"
# Errors after which the CUDA context is unusable until the process exits (CUDA runtime API docs:
# "the process must be terminated and relaunched").
STICKY_ERRORS = (
    "cudaErrorIllegalAddress", "cudaErrorLaunchFailure", "cudaErrorHardwareStackError", "cudaErrorIllegalInstruction",
    "cudaErrorMisalignedAddress", "cudaErrorInvalidAddressSpace", "cudaErrorInvalidPc", "cudaErrorAssert",
    "cudaErrorECCUncorrectable", "cudaErrorLaunchTimeout", "CUDA_ERROR_ILLEGAL_ADDRESS", "CUDA_ERROR_LAUNCH_FAILED",
)  # fmt: skip

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
    GraphError (DeviceLostError when sticky) that names `call` and the status. A driver library that cannot be loaded (no GPU,
    no driver) surfaces as the same error from the first call."""
    try:
        result = function(*args)
    except RuntimeError as exc:  # cuda.pathfinder's DynamicLibNotFoundError and kin
        raise GraphError(f"{call} | received {type(exc).__name__} ({exc}); expected {NO_DRIVER_HINT}") from exc
    err, values = result[0], result[1:]
    if int(getattr(err, "value", err)) != 0:
        text = _error_text(module, err)
        if text.split(" ")[0] in STICKY_ERRORS:
            raise DeviceLostError(
                f"{call} | received {text}, a sticky CUDA error; expected success. The device is unusable in this "
                "process: the session is closed. Restart the process and open a new session"
            )
        raise GraphError(f"{call} | received {text}; expected success. It needs {NO_DRIVER_HINT} and enough free device memory")
    return None if not values else values[0] if len(values) == 1 else values


class CudaMemory:
    """The CUDA calls an Arena makes (arena.HostMemory makes the same on host memory): one device,
    one non-blocking stream, cudaMalloc'd buffers, copies on that stream, and the rounding kernel."""

    ort_device = "cuda"

    def __init__(self, device_id: int = 0) -> None:
        self.cuda = import_cuda()
        runtime, driver, nvrtc = self.cuda
        self.device_id = device_id
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
        return int(self.stream)

    def call(self, name: str, function, *args):
        return cuda_call(self.cuda, name, function, *args)

    def malloc(self, nbytes: int) -> int:
        return int(self.call(f"cudaMalloc({nbytes} bytes)", self.cuda[0].cudaMalloc, nbytes))

    def free(self, ptr: int) -> None:
        self.call("cudaFree", self.cuda[0].cudaFree, ptr)

    def memset(self, ptr: int, nbytes: int) -> None:
        self.call("cudaMemsetAsync", self.cuda[0].cudaMemsetAsync, ptr, 0, nbytes, self.stream)

    def memcpy(self, dst: int, src: int, nbytes: int, kind: str) -> None:
        runtime = self.cuda[0]
        name = f"cudaMemcpy{kind}"
        self.call(f"cudaMemcpyAsync ({name}, {nbytes} bytes)", runtime.cudaMemcpyAsync, dst, src, nbytes, getattr(runtime.cudaMemcpyKind, name), self.stream)

    def synchronize(self) -> None:
        self.call("cudaStreamSynchronize", self.cuda[0].cudaStreamSynchronize, self.stream)

    def round_to_bfloat16(self, ptr: int, count: int) -> None:
        driver = self.cuda[1]
        pointer, n = np.array([ptr], np.uint64), np.array([count], np.uint64)
        params = np.array([pointer.ctypes.data, n.ctypes.data], np.uint64)  # cuda-python's documented kernelParams form
        blocks = (count + ROUNDING_BLOCK - 1) // ROUNDING_BLOCK
        self.call(
            "cuLaunchKernel(round_to_bfloat16)", driver.cuLaunchKernel, self._round,
            blocks, 1, 1, ROUNDING_BLOCK, 1, 1, 0, driver.CUstream(self.stream_handle), params.ctypes.data, 0,
        )  # fmt: skip

    def mem_get_info(self) -> tuple[int, int]:
        """(free, total) bytes of the device (cudaMemGetInfo)."""
        return self.call("cudaMemGetInfo", self.cuda[0].cudaMemGetInfo)

    def close(self) -> None:
        self.call("cudaStreamDestroy", self.cuda[0].cudaStreamDestroy, self.stream)

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
