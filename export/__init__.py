"""Checkpoint -> ONNX (parity-checked) -> TensorRT plan, and the Triton model repository around them."""
