"""streamsam.engines: ONNX graphs -> TensorRT FP16 engines with a sidecar that pins the GPU and
TensorRT version they were built for. Needs the [trt] extra and TensorRT itself (JetPack on a
Jetson, NVIDIA's package index on a desktop)."""
