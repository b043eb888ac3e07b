"""Checkpoints: a folder with a versioned `manifest.json`, `weights.safetensors` and `tokenizer.json`.

The manifest is the one source of preprocessing (image size, mean, std, tokenizer, token limits):
export bakes it into the ONNX graphs and the Triton configs, so no client repeats those constants.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

MANIFEST_VERSION = 2  # 2 added `heads`; a version-1 manifest (no heads) loads as the parameter-free path
SUPPORTED_VERSIONS = (1, 2)
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.safetensors"
TOKENIZER_FILE = "tokenizer.json"

Backbone = Literal["minilm-effnet-bridge", "hf-clip"]


class Preprocessing(BaseModel):
    """How raw frames and text become model inputs."""

    image_size: int = Field(gt=0, description="frames are resized and centre-cropped to this square")
    mean: tuple[float, float, float] = Field(description="per-channel mean on the 0..1 scale")
    std: tuple[float, float, float] = Field(description="per-channel std on the 0..1 scale")
    tokenizer: str = Field(default=TOKENIZER_FILE, description="tokenizers JSON file inside the checkpoint")
    max_tokens: int = Field(gt=2, description="texts are padded/truncated to this many tokens")
    max_phrases: int = Field(gt=0, description="phrase slots per text; extra clauses merge into the last")
    max_text_bytes: int = Field(default=2048, gt=0, description="longer texts are rejected")


class HeadConfig(BaseModel):
    """Trainable multi-level heads on the backbone; each starts as the identity of the parameter-free path.

    Text (inside `text_encoder_net`): token refinement, learned words->phrases and phrases->sentence pooling.
    Frames (inside `frame_encoder`): a projection of the backbone's pooled features added to its vector.
    Video (its own `video_head` graph): temporal self-attention over a video's frame vectors, learned
    frames->clips and clips->video pooling over the clips that `aggregate_video` segments.
    """

    hidden: int = Field(default=512, gt=0, description="width of the residual MLPs")
    attention_heads: int = Field(default=4, gt=0, description="heads of the temporal self-attention")
    attention_layers: int = Field(default=1, ge=0, description="temporal self-attention blocks (0: none)")
    video_head: bool = Field(
        default=True, description="add the video head; without it clips and video stay the parameter-free pooling"
    )
    text_unfrozen_blocks: int = Field(
        default=0, ge=0, description="last transformer blocks of the text backbone trained with the heads (minilm only)"
    )


class Manifest(BaseModel):
    """Everything needed to rebuild the nets from `weights.safetensors`."""

    format_version: int = MANIFEST_VERSION
    backbone: Backbone
    dim: int = Field(gt=0, description="joint embedding size")
    preprocessing: Preprocessing
    backbone_config: dict[str, Any] = Field(description="architecture config of the backbone")
    bridge_temperature: float | None = Field(
        default=None, description="softmax temperature of the ImageNet-class bridge (minilm-effnet-bridge only)"
    )
    heads: HeadConfig | None = Field(default=None, description="trained heads; None: the parameter-free path")
    training: dict[str, Any] | None = Field(default=None, description="how the heads were trained: config, seed, figures")
    description: str = ""

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST_FILE).write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a vidstrata checkpoint: {MANIFEST_FILE} is missing")
        data = json.loads(path.read_text())
        version = data.get("format_version")
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"{path}: manifest format_version {version} is not supported (want one of {SUPPORTED_VERSIONS})"
            )
        return cls.model_validate(data | {"format_version": MANIFEST_VERSION})


def file_digest(*paths: Path) -> str:
    """First 16 hex digits of the SHA-256 of the files' bytes, one after another: names the exact graphs served
    (the text graph: a query cache keys on it; the frame graph and video head: the version of visual rows)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
