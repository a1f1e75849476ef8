"""`streamsam track` and `streamsam segment`: a source in, an overlay video and masks out."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from .checks import positive_int
from .errors import InputError
from .progress import Progress
from .sources import FrameSource, SourceDisconnected


def parse_xy(text: str, count: int, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        example = "X,Y" if count == 2 else "X0,Y0,X1,Y1"
        raise InputError(f"{what} | received {text!r}; expected {example} in source pixels")
    return values


def resolve_graphs(args: argparse.Namespace) -> Path:
    """The folder of ONNX graphs: --onnx-dir as given, --checkpoint exported once into a cache, or
    else the bundled demo model."""
    if args.onnx_dir:
        return Path(args.onnx_dir)
    if args.checkpoint:
        import hashlib

        from .errors import require

        require("torch", "export")
        from streamsam.export.onnx_export import ExportOptions, export_checkpoint

        checkpoint = Path(args.checkpoint)
        key = hashlib.sha256(f"{checkpoint.resolve()}:{checkpoint.stat().st_size}:{args.image_size}".encode()).hexdigest()[:16]
        out = Path.home() / ".cache" / "streamsam" / f"{checkpoint.stem}-{args.image_size}-{key}"
        if not (out / "manifest.json").exists():
            print(f"exporting {checkpoint} to {out} (once)")
            export_checkpoint(checkpoint, out, image_size=args.image_size, options=ExportOptions())
        return out
    from .demo import DEMO_MODEL

    if (DEMO_MODEL / "manifest.json").is_file():
        print(f"model: the bundled demo model ({DEMO_MODEL}); --checkpoint, --onnx-dir or --engine-dir picks another")
        return DEMO_MODEL
    raise InputError(
        "model | received no --checkpoint, --onnx-dir or --engine-dir, and this install has no bundled demo model; "
        "expected one of them (an official checkpoint: --checkpoint sam2.1_hiera_tiny.pt)"
    )


def open_backend(args: argparse.Namespace):
    """TensorRT engines for --engine-dir (on an NVIDIA GPU), else --backend (ONNX Runtime) on the CPU at --precision."""
    if getattr(args, "engine_dir", None):
        if args.precision != "fp32" or args.backend:
            raise InputError(f"--precision/--backend | received {args.precision}/{args.backend} with --engine-dir; "
                             "expected them only for the CPU backends (TensorRT's precision is chosen by `streamsam build`)")
        from .device_backends import TensorRTBackend

        return TensorRTBackend(args.engine_dir, onnx_dir=args.onnx_dir)
    from . import backend

    return backend.open_backend(resolve_graphs(args), args.precision, args.backend, threads=args.threads)


def run_track(args: argparse.Namespace) -> int:
    from . import StreamTracker
    from .overlay import draw_result
    from .writers import writer_for

    points = [parse_xy(p, 2, "--point") for p in args.point or []]
    boxes = [parse_xy(b, 4, "--box") for b in args.box or []]
    if not points and not boxes:
        raise InputError("prompt | received no --point and no --box; expected at least one object to track")
    source = FrameSource(args.source, live=True if args.live else None, topic=args.topic)
    outputs = [writer_for(path, stamp_of=source.stamp_of) for path in args.out or []]  # paths checked before the model loads
    backend = open_backend(args)
    tracker = StreamTracker(backend, max_objects=len(points) + len(boxes), resize=args.resize)
    print(f"{source.spec.describe()}; model {args.engine_dir or backend.onnx_dir}; {len(points) + len(boxes)} object(s); outputs: {', '.join(args.out or ['none'])}")
    status, code = "", 0
    with source:
        total = None if source.spec.live else source.expected_frames
        if total and args.max_frames:
            total = min(total, args.max_frames)
        progress = Progress(total, source.spec.live)
        count = 0
        try:
            for index, frame in source:
                result = tracker.track(frame)
                if count == 0:
                    for obj_id, point in enumerate(points, start=1):
                        result = tracker.add_points(obj_id, [point])
                    for obj_id, box in enumerate(boxes, start=len(points) + 1):
                        result = tracker.add_box(obj_id, box)
                count += 1
                progress.update(count, source.dropped)
                for out in outputs:
                    out.write(draw_result(frame.copy(), result, fps=progress.fps()) if out.takes_overlay else result)
                if args.max_frames and count >= args.max_frames:
                    break
        except SourceDisconnected as exc:
            status, code = f"stopped: {exc}", 1
        finally:
            for out in outputs:
                out.close()
            progress.close()
    if not status and source.ended_early and not args.max_frames:
        status = f"the file ended early: {source.frames_read} frames read" + (
            f" of the {source.expected_frames} its header announced" if source.expected_frames else ""
        ) + (f" ({source.decode_error})" if source.decode_error else "")
    elapsed = time.perf_counter() - progress.start
    print(f"{count} frames in {elapsed:.1f} s ({count / max(elapsed, 1e-9):.1f} FPS){', ' + str(source.dropped) + ' stale frames dropped' if source.spec.live else ''}")
    if status:
        print(status)
    return code


def run_segment(args: argparse.Namespace) -> int:
    from . import ImagePredictor
    from .results import FrameResult
    from .overlay import draw_result
    from .video_frames import read_image
    from .writers import check_image_output, save_image

    path = Path(args.image)
    if not path.is_file():
        raise InputError(f"image | received {str(path)!r}, which is not a file; expected an image (jpg, png, ...)")
    out = check_image_output(args.out, "--out")
    overlay = check_image_output(args.overlay, "--overlay") if args.overlay else None
    image = read_image(path)
    predictor = ImagePredictor(open_backend(args))
    predictor.set_image(image)
    point = parse_xy(args.point, 2, "--point") if args.point else None
    box = parse_xy(args.box, 4, "--box") if args.box else None
    masks, ious, low_res = predictor.predict(point_coords=[point] if point else None, point_labels=[1] if point else None, box=box, multimask_output=False)
    save_image(masks[0].astype(np.uint8) * 255, out)
    print(f"mask of {int(masks[0].sum())} pixels (predicted IoU {ious[0]:.3f}) written to {out}")
    if overlay:
        result = FrameResult(0, (1,), low_res[:1], ious[:1], np.ones(1, np.float32), image.shape[:2])
        save_image(draw_result(image.copy(), result), overlay)
        print(f"overlay written to {overlay}")
    return 0


def add_model_options(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--onnx-dir", help="graphs written by `streamsam export`")
    model.add_argument("--checkpoint", help="an official .pt checkpoint, exported once into ~/.cache/streamsam (needs the [export] extra)")
    model.add_argument("--image-size", type=int, default=1024, help="with --checkpoint: the model input size (default 1024)")
    model.add_argument("--engine-dir", help="TensorRT engines from `streamsam build` (NVIDIA GPU; --onnx-dir, if given, is checked against them)")
    model.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    add_precision_options(model)


def add_precision_options(group) -> None:
    from .precision import BACKENDS, PRECISIONS

    group.add_argument("--precision", default="fp32", choices=PRECISIONS,
                       help="fp32 (default); int8: the INT8 image encoder (`streamsam quantize` first); bf16: OpenVINO on CPUs with AVX512_BF16/AMX")
    group.add_argument("--backend", default=None, choices=BACKENDS, help="onnxruntime (default) or openvino (pip install 'streamsam[openvino]')")


def add_commands(commands) -> None:
    track = commands.add_parser("track", help="track objects through a video, a folder of images, a camera or a stream")
    track.add_argument("--source", required=True, help="video file, image folder, camera index, /dev/videoN, csi://N, rtsp://..., a GStreamer pipeline, or a rosbag2 (.mcap, .db3, a bag folder; with --topic)")
    track.add_argument("--point", action="append", metavar="X,Y", help="a click on the first frame; each --point is a new object")
    track.add_argument("--box", action="append", metavar="X0,Y0,X1,Y1", help="a box on the first frame; each --box is a new object")
    track.add_argument("--topic", help="with a rosbag2 source (.mcap, .db3, a bag folder): its Image or CompressedImage topic")
    track.add_argument("--out", action="append", metavar="PATH", help="out.mp4 (overlay video), masks.jsonl (COCO RLE), masks.mcap / masks.db3 (a rosbag2 of label images, the source's stamps) or a folder (PNG masks); repeatable")
    track.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many frames (>= 1)")
    track.add_argument("--live", action="store_true", help="replay a video file as a camera: real-time pace, stale frames dropped")
    track.add_argument("--resize", default="pil_bicubic", choices=["pil_bicubic", "antialias_bilinear", "fast"], help="frame resizing (default: as the official video predictor)")
    add_model_options(track)
    track.set_defaults(run=run_track)

    segment = commands.add_parser("segment", help="segment one object in an image (SAM's image mode)")
    segment.add_argument("image")
    segment.add_argument("--point", metavar="X,Y")
    segment.add_argument("--box", metavar="X0,Y0,X1,Y1")
    segment.add_argument("--out", default="mask.png", help="the mask as a PNG (default mask.png)")
    segment.add_argument("--overlay", help="also write the image with the mask drawn on it")
    add_model_options(segment)
    segment.set_defaults(run=run_segment)
