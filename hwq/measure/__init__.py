"""`hwq measure`: a `lut` profile measured on this machine with a real runtime.

`backend.py` (the runtime plug-in protocol and registry), `onnxruntime_backend.py` (onnxruntime's
CPU, CUDA and TensorRT providers), `shapes.py` (the distinct layer shapes of a graph),
`single_layer.py` (single-layer ONNX models per pair), `timing.py` (warm-up, repeats, median,
spread), `end_to_end.py` (whole networks exported and timed), `fit.py` (the `lut` kind's network
terms fitted on them), `profile_writer.py` (profile.yaml, measured.csv, end_to_end.csv) and
`run.py` (`measure(...)`, the command).
"""
