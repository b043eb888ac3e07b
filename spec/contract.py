"""Names of the served models and their tensors: the contract between `export` and every client."""

TEXT_ENCODER = "text_encoder"  # ensemble: raw text -> vectors
TEXT_TOKENIZER = "text_tokenizer"  # python backend step of the ensemble
TEXT_NET = "text_encoder_net"  # the exported text graph
FRAME_ENCODER = "frame_encoder"  # the exported frame graph
VIDEO_HEAD = "video_head"  # a trained video head: frames -> clips -> video; absent when the checkpoint has none

TEXT_IN = "text"
TEXT_NET_INPUTS = ("input_ids", "attention_mask", "phrase_ids")
TEXT_OUTPUTS = ("sentence", "phrases", "phrase_mask", "tokens")
FRAME_INPUTS = ("frames",)
FRAME_OUTPUTS = ("vectors",)
VIDEO_HEAD_INPUTS = ("frames", "frame_mask", "clip_ids", "clip_mask")
VIDEO_HEAD_OUTPUTS = ("frame_vectors", "clip_vectors", "video_vector")

# Speech recognition (ASR): one request is one window of 16 kHz mono float PCM; the answer is its timed segments.
SPEECH_RECOGNIZER = "speech_recognizer"  # python backend: faster-whisper over Whisper tiny.en (CTranslate2)
SPEECH_SAMPLE_RATE = 16_000  # Hz, what Whisper's feature extractor expects
SPEECH_MAX_WINDOW_S = 30.0  # Whisper's receptive field: one window is decoded in one pass
SPEECH_INPUTS = ("audio",)  # FP32 [samples], batch first
SPEECH_OUTPUTS = ("start_s", "end_s", "text")  # FP32 [K], FP32 [K], BYTES [K]: seconds from the window's start
