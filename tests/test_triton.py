"""The real Triton serves the exported encoders: same vectors as in-process, batching, clean errors."""

from __future__ import annotations

import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from vidstrata.inference.encoder import EncoderInputError, EncoderUnavailable
from vidstrata.inference.factory import open_encoder
from vidstrata.spec.preprocess import TextTokenizer, center_crop_square
from vidstrata.inference.triton_encoder import TritonEncoder
from vidstrata.inference.triton_model import triton_error
from tests.photos import CAPTIONS, load_photo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def encoder(triton):
    enc = TritonEncoder(triton.grpc_url)
    yield enc
    enc.close()


@pytest.fixture(scope="module")
def local(model_repository):
    """In-process ONNX Runtime on the very graphs Triton serves."""
    return open_encoder(repository=model_repository)


def test_outputs_equal_the_in_process_encoder(encoder, local):
    texts = ["a red circle moves left, then a blue square appears", "a cat", "rocket launch while people watch"]
    remote, here = encoder.encode_text(texts), local.encode_text(texts)
    for name in ("sentence", "phrases", "tokens"):
        np.testing.assert_allclose(getattr(remote, name), getattr(here, name), atol=1e-5)
    np.testing.assert_array_equal(remote.phrase_mask, here.phrase_mask)
    assert remote.phrase_mask.sum(1).tolist() == [2, 1, 2]
    expected = [["a red circle moves left", "a blue square appears"], ["a cat"], ["rocket launch", "people watch"]]
    assert [[p for p in row if p] for row in remote.phrase_texts] == expected  # split once, inside Triton
    assert remote.phrase_texts == here.phrase_texts
    frames = np.stack([center_crop_square(load_photo(name), 224) for name in list(CAPTIONS)[:5]])
    np.testing.assert_allclose(encoder.encode_frames(frames), local.encode_frames(frames), atol=1e-5)


def test_short_queries_run_on_their_real_tokens_with_bit_identical_vectors(local, model_repository):
    """Padding every query to max_tokens (64) costs twice the encoder time and changes no bit of the vectors."""
    texts = ["a cat", "a red circle moves left, then a blue square appears"]
    pre = local.manifest.preprocessing
    padded = TextTokenizer(model_repository / "text_tokenizer" / "1" / pre.tokenizer, pre.max_tokens, pre.max_phrases,
                           pre.max_text_bytes, fixed_length=True)
    for text in texts:  # alone, as Search sends them
        trimmed = local.tokenizer([text])
        assert trimmed.input_ids.shape[1] < pre.max_tokens
        full = padded([text])
        sentence, phrases, mask, _ = local.text.run(None, {
            "input_ids": full.input_ids, "attention_mask": full.attention_mask, "phrase_ids": full.phrase_ids})
        served = local.encode_text([text])
        np.testing.assert_array_equal(served.sentence, sentence)
        np.testing.assert_array_equal(served.phrases, phrases)
        np.testing.assert_array_equal(served.phrase_mask, mask > 0)


def test_info_comes_from_the_served_models(encoder, local):
    info = encoder.info()
    assert (info.dim, info.image_size, info.max_phrases, info.video_head) == (384, 224, 8, False)
    assert len(info.model_version) == 16 and info.model_version == local.info().model_version
    with pytest.raises(RuntimeError, match="serves no video_head"):  # the default checkpoint has no trained heads
        encoder.encode_video(np.ones((2, 384), np.float32), np.zeros(2, np.int64), 1)


def _batch_stats(triton, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) from Triton's metrics endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{triton.ports.metrics}/metrics", timeout=5).read().decode()
    def value(metric: str) -> int:
        match = re.search(rf'^{metric}{{model="{model}",version="1"}} (\d+)', text, re.M)
        return int(match.group(1)) if match else 0
    return value("nv_inference_count"), value("nv_inference_exec_count")


def test_concurrent_single_requests_are_batched(triton, encoder):
    frame = np.zeros((1, 224, 224, 3), dtype=np.uint8)
    before = _batch_stats(triton, "frame_encoder")
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: encoder.encode_frames(frame), range(64)))
    inferences, executions = (a - b for a, b in zip(_batch_stats(triton, "frame_encoder"), before))
    assert inferences == 64
    assert executions < inferences, "the dynamic batcher never merged concurrent requests"


def _runs_and_failures(client: grpcclient.InferenceServerClient, model: str) -> tuple[int, int]:
    """Items the model has run, and requests it failed (a rejection from the queue is one), since it started."""
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats["inference_stats"]["fail"].get("count", 0))


def test_a_request_queued_past_its_timeout_is_rejected_not_run(triton, encoder):
    """Issue 22 (8): while the frame encoder is busy, a request whose timeout passes in the queue is rejected
    (UNAVAILABLE, which the client maps to EncoderUnavailable, retried by callers) and never run; the encoder sends
    its own deadline, so its request is dropped too once it gives up."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    busy = np.zeros((64, 224, 224, 3), dtype=np.uint8)  # one full batch: about 1.7 s on 2 idle cores
    runs, failures = _runs_and_failures(client, "frame_encoder")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(client.infer, "frame_encoder", [_frames_input(busy)])
        time.sleep(0.3)
        with pytest.raises(EncoderUnavailable):
            encoder.encode_frames(busy[:1], timeout_s=0.3)
        with pytest.raises(InferenceServerException) as rejected:
            client.infer("frame_encoder", [_frames_input(busy[:1])], timeout=1, client_timeout=60)  # 1 µs in the queue, 60 s to answer
        running.result()
    assert rejected.value.status() == "StatusCode.UNAVAILABLE" and "timeout" in rejected.value.message().lower()
    assert isinstance(triton_error(rejected.value, "frame_encoder"), EncoderUnavailable)
    time.sleep(0.5)  # let the batcher drop the encoder's request
    now_runs, now_failures = _runs_and_failures(client, "frame_encoder")
    assert now_runs - runs == 64, "a request whose caller had given up was run"
    assert now_failures - failures == 2


def _frames_input(frames: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("frames", list(frames.shape), "UINT8")
    tensor.set_data_from_numpy(frames)
    return tensor


@pytest.mark.parametrize("text, reason", [("", "empty"), ("   ", "empty"), ("x" * 100_000, "bytes")])
def test_bad_text_gets_a_clean_error_and_the_server_keeps_serving(encoder, text, reason):
    with pytest.raises(EncoderInputError, match=reason):
        encoder.encode_text([text])
    assert encoder.encode_text(["still serving"]).sentence.shape == (1, 384)


def test_wrong_dtype_or_shape_is_rejected(triton, encoder):
    with pytest.raises(EncoderInputError, match="uint8"):
        encoder.encode_frames(np.zeros((1, 224, 224, 3), dtype=np.float32))
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    for shape, dtype, triton_type in (((1, 100, 100, 3), np.uint8, "UINT8"), ((1, 224, 224, 3), np.float32, "FP32")):
        tensor = grpcclient.InferInput("frames", list(shape), triton_type)
        tensor.set_data_from_numpy(np.zeros(shape, dtype=dtype))
        with pytest.raises(InferenceServerException) as raised:
            client.infer("frame_encoder", [tensor])
        assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert encoder.ready()


def test_unknown_model_gets_a_clean_error(triton):
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    tensor = grpcclient.InferInput("text", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"hi"]], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="unknown model|not found"):
        client.infer("no_such_model", [tensor])
    assert client.is_server_ready()
