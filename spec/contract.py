"""Names of the served models and their tensors: the contract between `export` and every client."""

TEXT_ENCODER = "text_encoder"  # ensemble: raw text -> vectors
TEXT_TOKENIZER = "text_tokenizer"  # python backend step of the ensemble
TEXT_NET = "text_encoder_net"  # the exported text graph
FRAME_ENCODER = "frame_encoder"  # the exported frame graph
VIDEO_HEAD = "video_head"  # a trained video head: frames -> clips -> video; absent when the checkpoint has none

TEXT_IN = "text"
TEXT_NET_INPUTS = ("input_ids", "attention_mask", "phrase_ids")
TEXT_OUTPUTS = ("sentence", "phrases", "phrase_mask", "tokens")  # of the text graph
TEXT_PHRASES = "phrase_texts"  # of the tokenizer (and so the ensemble): the text of each phrase slot, "" if unused
# multilingual-e5-small (issue 25): the text contract above (TEXT_IN -> TEXT_OUTPUTS and TEXT_PHRASES) once per
# prefix the model was trained with, both over one graph. Queries take "query: ", what is indexed "passage: ".
E5_QUERY_ENCODER = "text_encoder_e5_query"  # ensemble: "query: " + text -> vectors
E5_PASSAGE_ENCODER = "text_encoder_e5_passage"  # ensemble: "passage: " + text -> vectors
E5_QUERY_TOKENIZER = "text_tokenizer_e5_query"
E5_PASSAGE_TOKENIZER = "text_tokenizer_e5_passage"
E5_TEXT_NET = "text_encoder_e5_net"  # the e5 text graph: TEXT_NET_INPUTS -> TEXT_OUTPUTS, 384-d
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

# On-screen text (OCR): PP-OCRv4 networks, and the python-backend reader that calls them (BLS) for one frame.
SCREEN_TEXT_READER = "screen_text_reader"  # frame UINT8 [1,H,W,3] RGB -> text BYTES [1,K], score FP32 [1,K], box FP32 [1,K,4]
OCR_DET = "ocr_det"  # PP-OCRv4 mobile DB detector: x [N,3,H,W] -> y [N,1,H,W]
OCR_CLS = "ocr_cls"  # v2.0 angle classifier: x [N,3,48,192] -> y [N,2] (0 or 180 degrees)
OCR_REC = "ocr_rec"  # PP-OCRv4 mobile recogniser: x [N,3,48,W] -> y [N,T,6625] (CTC)
SCREEN_TEXT_INPUTS = ("frame",)  # UINT8 [1,H,W,3] RGB, one frame a request
SCREEN_TEXT_OUTPUTS = ("text", "score", "box")  # every line read: text, mean CTC confidence, frame pixels x0,y0,x1,y1
SCREEN_TEXT_MIN_SIDE = 8  # pixels: a frame (as sent, after downscaling) narrower than this holds no legible text
# Config parameter of the text_encoder ensemble (digest of its text graph) and of frame_encoder (digest of the frame
# graph, and of the video head's where one is served): the versions stored on index rows (EncoderInfo).
MODEL_VERSION_PARAMETER = "model_version"
