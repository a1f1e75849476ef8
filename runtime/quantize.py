"""`streamsam quantize`: the INT8 image encoder, written once beside the FP32 graphs and recorded in
manifest.json (Manifest.int8_graphs), so `precision="int8"` opens it without quantizing per open.

It lives in the graphs folder because it is derived from exactly those weights: the folder stays
the one unit a user passes, and the manifest's sha256 and size check it like the others. Only the
image encoder is quantized (most of the FLOPs, a trunk of MatMuls); memory attention, the mask
decoder's heads and the memory encoder stay FP32 (benchmarks/precision_accuracy.py measures masks).
Dynamic quantization of the MatMuls (ONNX Runtime's quantize_dynamic, weights INT8 per channel in
a reduced range, activations quantized per call): no calibration set, and the same graph runs on
OpenVINO.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np

from .contracts import IMAGE_ENCODER
from .errors import InputError, require
from .manifest import MANIFEST_NAME, GraphFile, file_sha256, read_manifest

MODES = {"dynamic": ".int8.onnx", "static": ".int8-qdq.onnx"}  # mode: the INT8 file's suffix
CALIBRATION_FRAMES = 8
QUANTIZED_OPS = ("MatMul",)
# 7-bit weights: without VNNI (AVX2), u8 x s8 products saturate their int16 pairs; on the demo model
# the full range gave 5x the image_embed error (0.22 against 0.044) and lost an object on the clip.
REDUCE_RANGE = True


def calibration_images(video: str | Path, size: int, count: int = CALIBRATION_FRAMES) -> list[np.ndarray]:
    """`count` frames spread over a video, preprocessed as the pipeline does: [1, 3, size, size]."""
    from .image_ops import preprocess_frame
    from .video_frames import VideoFrames

    frames = VideoFrames(str(video))
    images = []
    for index in np.linspace(0, len(frames) - 1, count).astype(int):
        image = np.zeros((1, 3, size, size), np.float32)
        preprocess_frame(frames[int(index)], image)
        images.append(image)
    return images


def quantize_folder(onnx_dir: str | Path, mode: str = "dynamic", calibration: str | Path | None = None) -> GraphFile:
    """Write the INT8 image encoder into `onnx_dir` and record it in its manifest. "dynamic": the
    MatMuls, activations quantized per call; "static": QDQ MatMuls and Convs with activation ranges
    from `calibration` (a video; default the bundled demo clip)."""
    ort = require("onnxruntime", "ort")
    require("onnx", "export")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if mode not in MODES:
        raise InputError(f"quantize mode | received {mode!r}; expected one of {', '.join(MODES)}")
    onnx_dir = Path(onnx_dir)
    manifest = read_manifest(onnx_dir)
    fp32 = manifest.graphs[IMAGE_ENCODER]
    out = onnx_dir / fp32.file.replace(".onnx", MODES[mode])
    with tempfile.TemporaryDirectory() as tmp:
        # The export feeds MatMul weights through Casts and Transposes: ONNX Runtime's basic
        # (portable) optimizations fold them into constants, which the quantizer needs to see.
        folded = Path(tmp) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(onnx_dir / fp32.file), options, providers=["CPUExecutionProvider"])
        if mode == "dynamic":
            quantize_dynamic(folded, out, op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                             weight_type=QuantType.QInt8, reduce_range=REDUCE_RANGE, extra_options={"MatMulConstBOnly": True})
        else:
            if calibration is None:
                from .demo import demo_clip

                calibration = demo_clip()[0]
            images = iter(calibration_images(calibration, manifest.dims.image_size))

            class Frames(CalibrationDataReader):
                def get_next(self):
                    image = next(images, None)
                    return None if image is None else {"image": image}

            quantize_static(folded, out, Frames(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul", "Conv"],
                            per_channel=True, reduce_range=REDUCE_RANGE, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8)
    # The INT8 encoder against FP32 on one seeded image: recorded as the FP32 graphs' parity is.
    image = np.random.default_rng(0).standard_normal(manifest.contracts[IMAGE_ENCODER].inputs[0].concrete_shape(frames=1)).astype(np.float32)
    runs = [ort.InferenceSession(str(onnx_dir / f), providers=["CPUExecutionProvider"]).run(None, {"image": image})
            for f in (fp32.file, out.name)]
    names = [s.name for s in manifest.contracts[IMAGE_ENCODER].outputs]
    errors = {n: float(np.abs(a - b).max()) for n, a, b in zip(names, *runs)}
    entry = GraphFile(out.name, file_sha256(out), out.stat().st_size, errors)
    path = onnx_dir / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["int8_graphs"] = {IMAGE_ENCODER: dataclasses.asdict(entry)}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return entry


def run_quantize(args: argparse.Namespace) -> int:
    onnx_dir = Path(args.onnx_dir)
    if not (onnx_dir / MANIFEST_NAME).is_file():
        raise InputError(f"--onnx-dir | received {onnx_dir}, which has no {MANIFEST_NAME}; expected a folder written by `streamsam export`")
    entry = quantize_folder(onnx_dir, args.mode, args.calibration)
    print(f"{onnx_dir / entry.file}: {entry.size_bytes / 1e6:.1f} MB, max abs error against FP32 "
          + ", ".join(f"{n} {e:.3g}" for n, e in entry.max_abs_error.items())
          + "; use it with --precision int8 (Python: precision='int8')")
    return 0


def add_quantize_command(commands) -> None:
    quantize = commands.add_parser("quantize", help="write the INT8 image encoder beside exported graphs (for --precision int8)")
    quantize.add_argument("--onnx-dir", required=True, help="graphs written by `streamsam export`")
    quantize.add_argument("--mode", default="dynamic", choices=list(MODES),
                          help="dynamic (default): MatMuls, no calibration; static: QDQ MatMuls and Convs calibrated on --calibration")
    quantize.add_argument("--calibration", help="with --mode static: a video whose frames calibrate the activation ranges (default: the demo clip)")
    quantize.set_defaults(run=run_quantize)
