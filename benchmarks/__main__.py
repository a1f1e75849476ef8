"""`python -m benchmarks NAME [options]`: one entry point for every benchmark.

    python -m benchmarks side_by_side --config tiny --image-size 512   # ours vs official sam2 and SAM
    python -m benchmarks stream_memory --frames 2000                   # memory flat along a stream
    python -m benchmarks export_models                                 # all official configs export
    python -m benchmarks memory_attention_forms                        # fixed slots vs exact counts
    python -m benchmarks fp16_accuracy                                 # FP16 graphs against FP32
    python -m benchmarks multi_stream --streams 1 2 4 8                # N cameras: one batched process vs N
    python -m benchmarks precision_accuracy                            # INT8, OpenVINO, BF16 masks against FP32
    python -m benchmarks precision_speed                               # per-frame speed of each precision
    python -m benchmarks ort_memory                                    # ONNX Runtime's memory settings, A/B
    python -m benchmarks attention_kernels                             # exported attention vs fused kernels
    python -m benchmarks frame_accounting                              # a frame's ms in and outside the graphs
    python -m benchmarks graph_profile                                 # each graph's ms by operator type

Each writes JSON, markdown (and a plot where there is a curve) under benchmarks/results/, named by
machine, with the command that made it.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("side_by_side", "stream_memory", "export_models", "memory_attention_forms", "fp16_accuracy", "multi_stream", "precision_accuracy", "precision_speed", "ort_memory",
              "attention_kernels", "frame_accounting", "graph_profile")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(__doc__, file=sys.stderr)
        received = repr(argv[0]) if argv else "nothing"
        print(f"python -m benchmarks | received {received}; expected one of {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    importlib.import_module(f"benchmarks.{argv[0]}").main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
