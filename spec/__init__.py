"""What training, export, serving and ingest must agree on, torch-free: the checkpoint manifest, the tensor-name
contract of the served models, text and frame preprocessing, video ids and metadata, and the frames -> clips ->
video aggregation. It runs inside Triton's python backend and in the workers, so it imports numpy, tokenizers and
pydantic only.
"""
