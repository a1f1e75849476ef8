"""Graphs that store their weights in float16 and compute in float32: half the download.

The bundled demo model ships inside the package, so its size matters more than a trained model's
last bits. `round_parameters_to_float16` rounds a model's parameters to float16 values (kept in
float32); after export, `store_float16_initializers` rewrites every initializer whose values are all
exactly representable in float16 as a float16 tensor followed by a Cast to float32. Tables the
graph computes from constants (RoPE angles, position encodings) are not representable and stay
float32, so the graph computes exactly what the rounded PyTorch model computes: the export check
compares the two as usual. ONNX Runtime folds the Casts when it loads the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

MIN_ELEMENTS = 256  # smaller tensors are not worth a Cast node


def round_parameters_to_float16(model: nn.Module) -> nn.Module:
    """Round every floating parameter of `model` in place to its nearest float16 value."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dtype == torch.float32:
                parameter.copy_(parameter.half().float())
    return model


def store_float16_initializers(path: str | Path) -> tuple[int, int]:
    """Rewrite `path` in place; returns (initializers converted, bytes saved)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    kept, casts, converted, saved = [], [], 0, 0
    for init in graph.initializer:
        values = numpy_helper.to_array(init)
        halves = values.astype(np.float16) if values.dtype == np.float32 else None
        if halves is None or values.size < MIN_ELEMENTS or not np.array_equal(halves.astype(np.float32), values):
            kept.append(init)
            continue
        stored = numpy_helper.from_array(halves, f"{init.name}__float16")
        kept.append(stored)
        casts.append(onnx.helper.make_node("Cast", [stored.name], [init.name], to=onnx.TensorProto.FLOAT))
        converted += 1
        saved += values.nbytes - halves.nbytes
    del graph.initializer[:]
    graph.initializer.extend(kept)
    # The Casts go first: every consumer of an initializer comes after them in topological order.
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return converted, saved
