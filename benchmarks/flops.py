"""FLOPs per graph, counted once with torch.utils.flop_counter, and two ceilings, so that latencies
also read as a fraction of what the hardware can do: ONNX Runtime's measured FP32 GEMM rate (what
our graphs' matrix work can reach) and the CPU's nominal FP32 peak from a vendor / family table.

FlopCounterMode counts matrix products, convolutions and attention (2 FLOPs per multiply-add), not
element-wise work: the usual convention, and what a peak figure is about.
"""

from __future__ import annotations

import time
from pathlib import Path

# FP32 FLOPs per cycle and core, by vendor and family: the flags alone cannot say (AMD's Zen 4 and
# Zen 5 both report avx512f; Zen 4 runs AVX-512 double-pumped on two 256-bit FMA pipes, 2 x 8 x 2 =
# 32, Zen 5's server and desktop parts on four 512-bit-wide pipes, 2 x 16 x 2 = 64). The first row
# whose vendor, family and required flags match wins; where none does, the measured GEMM rate is
# the ceiling alone.
FLOPS_PER_CYCLE_TABLE = (
    # (vendor, family or None for any, required flag, FP32 FLOPs per cycle per core, name)
    ("AuthenticAMD", 26, "avx512f", 64, "AMD Zen 5 (AVX-512, full-width)"),
    ("AuthenticAMD", 25, "avx512f", 32, "AMD Zen 4 (AVX-512 double-pumped)"),
    ("AuthenticAMD", 25, "avx2", 32, "AMD Zen 3 (AVX2, two FMA pipes)"),
    ("AuthenticAMD", 23, "avx2", 32, "AMD Zen 2 (AVX2, two FMA pipes)"),
    ("GenuineIntel", None, "avx512f", 64, "Intel with AVX-512 (two FMA ports)"),
    ("GenuineIntel", None, "avx2", 32, "Intel with AVX2 (two FMA ports)"),
)


def flops_per_cycle(vendor: str, family: int | None, flags: set[str]) -> tuple[int, str] | None:
    """(FP32 FLOPs per cycle per core, why) from the table, or None for a CPU it does not know."""
    for row_vendor, row_family, flag, per_cycle, name in FLOPS_PER_CYCLE_TABLE:
        if vendor == row_vendor and row_family in (None, family) and flag in flags and "fma" in flags:
            return per_cycle, name
    return None


def graph_flops(model, dims, objects: int = 1) -> dict[str, int]:
    """FLOPs of one call of each graph with `objects` objects and one point, memory attention at a
    stream's steady state after one prompt: the slots the CPU runtime passes then (num_maskmem
    memories, 16 pointers), which is what the official model attends to."""
    import torch

    from streamsam.contracts import MEMORY_SLOTS, POINTER_SLOTS, graph_contracts
    from streamsam.export.onnx_export import GRAPH_WRAPPERS, example_inputs
    from streamsam.memory_bank import MAX_OBJ_PTRS

    from .official_side import flops_of  # one counter for both sides (it counts CPU attention too)

    steady = {MEMORY_SLOTS: dims.num_maskmem, POINTER_SLOTS: min(MAX_OBJ_PTRS, dims.pointer_slots)}
    counts = {}
    for name, contract in graph_contracts(dims).items():
        wrapper = GRAPH_WRAPPERS[name](model).eval()
        # One frame: the exporter traces two to keep the frames axis symbolic, a tracked frame has one.
        inputs = example_inputs(contract, dims, objects=objects, points=1, slots=steady, frames=1)
        args = [torch.from_numpy(inputs[n]) for n in contract.input_names]
        with torch.no_grad():
            counts[name] = flops_of(lambda: wrapper(*args))
    return counts


def cpu_peak_gflops(threads: int) -> dict:
    """Nominal FP32 peak of `threads` cores: /proc/cpuinfo's clock x the table's FLOPs per cycle."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux: no peak figure rather than a guessed one
        return {"gflops": None, "why": "no /proc/cpuinfo"}
    flags = set(fields.get("flags", "").split())
    family = int(fields["cpu family"]) if fields.get("cpu family", "").isdigit() else None
    mhz = float(fields["cpu MHz"]) if "cpu MHz" in fields else None
    known = flops_per_cycle(fields.get("vendor_id", ""), family, flags)
    if known is None or mhz is None:
        return {"gflops": None, "why": f"{fields.get('vendor_id')} family {family} is not in flops.FLOPS_PER_CYCLE_TABLE: the measured GEMM rate is the ceiling",
                "avx512": "avx512f" in flags}
    per_cycle, name = known
    return {
        "gflops": threads * mhz / 1e3 * per_cycle,
        "why": f"{threads} core(s) x {mhz:.0f} MHz (cpuinfo) x {per_cycle} FP32 FLOPs/cycle ({name}, family {family})",
        "avx512": "avx512f" in flags,
    }


def measured_gemm_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """The best FP32 matrix product rate of ONNX Runtime on this machine with `threads` threads (one
    MatMul graph, size^3): the ceiling our graphs' matrix work can reach."""
    import numpy as np
    import onnxruntime
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((size, size), np.float32) for n in "ab"}
    session.run(None, feeds)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def measured_sgemm_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """The best FP32 matrix product rate of torch (oneDNN) with `threads` threads: the official
    side's ceiling, reported beside ours (measured_gemm_gflops)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9

