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
FRAME_INPUTS = ("frames",)
FRAME_OUTPUTS = ("vectors",)
VIDEO_HEAD_INPUTS = ("frames", "frame_mask", "clip_ids", "clip_mask")
VIDEO_HEAD_OUTPUTS = ("frame_vectors", "clip_vectors", "video_vector")
MODEL_VERSION_PARAMETER = "model_version"  # config parameter of the text_encoder ensemble: digest of its text graph
