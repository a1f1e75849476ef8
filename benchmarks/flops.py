"""FLOPs per graph, counted once with torch.utils.flop_counter, and the CPU's FP32 peak, so that
latencies also read as a fraction of what the hardware can do.

FlopCounterMode counts matrix products, convolutions and attention (2 FLOPs per multiply-add), not
element-wise work: the usual convention, and what a peak figure is about.
"""

from __future__ import annotations

import time
from pathlib import Path

# FP32 FLOPs per cycle and core: two 256-bit FMA pipes (AVX2; Zen 4 runs AVX-512 on the same two
# pipes, double-pumped) = 2 pipes x 8 lanes x 2. One pipe without FMA: 8.
FLOPS_PER_CYCLE = {"fma": 32, "avx": 8}


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
        inputs = example_inputs(contract, dims, objects=objects, points=1, slots=steady)
        args = [torch.from_numpy(inputs[n]) for n in contract.input_names]
        with torch.no_grad():
            counts[name] = flops_of(lambda: wrapper(*args))
    return counts


def cpu_peak_gflops(threads: int) -> dict:
    """Theoretical FP32 peak of `threads` cores from /proc/cpuinfo's clock and vector flags."""
    mhz, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz") and mhz is None:
                mhz = float(line.split(":")[1])
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":")[1].split())
    except OSError:  # not Linux: no peak figure rather than a guessed one
        return {"gflops": None, "why": "no /proc/cpuinfo"}
    per_cycle = FLOPS_PER_CYCLE["fma"] if "fma" in flags and "avx2" in flags else FLOPS_PER_CYCLE["avx"]
    return {
        "gflops": threads * (mhz or 0) / 1e3 * per_cycle,
        "why": f"{threads} core(s) x {mhz:.0f} MHz (cpuinfo) x {per_cycle} FP32 FLOPs/cycle",
        "avx512": "avx512f" in flags,
    }


def measured_sgemm_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """The best FP32 matrix product rate of this machine with `threads` threads (torch / oneDNN):
    the practical ceiling for the graphs' matrix work."""
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

