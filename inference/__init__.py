"""Running the encoders: one `Encoder` interface (Triton or in-process ONNX Runtime) and preprocessing."""
