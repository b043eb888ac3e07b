"""Torch encoders: backbones, multi-level heads and clip/video aggregation, saved as checkpoints."""
