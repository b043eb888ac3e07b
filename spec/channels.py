"""The channels of a video that search reads, one row each: what every room derives its vocabulary from.

A channel is one modality (M2HF's "other modalities of the video", matched to the query at their own levels and
fused late): the pictures (visual), what is said (speech, ASR) and what is written on screen (OCR). Its row names
the levels it scores (LevelScores fields of the wire), the `kind` of its rows in the timed-text collection, the
deployment switch that turns it on (a settings field of the worker and the gateway: VIDSTRATA_WORKER_<SWITCH>,
VIDSTRATA_GATEWAY_<SWITCH>) and the worker's ingest stage that extracts it. Adding a channel is one row here and
its stage in workers/. Like immich's model types: one enum, one table, and lookups that fail loudly.

The lexical channel reads no modality of its own: it scores the query's words in the other channels' timed texts
(and the metadata values a deployment names), which the worker writes to the lexicon beside their segments
(index.lexicon, gateway.lexical). So it has a level, a switch and a stage (the lexicon write), but no segment kind
and no text field.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Channel(StrEnum):
    """A modality of the video that search reads; its value is its wire name (SubmitVideo's `modalities`)."""

    VISUAL = "visual"
    SPEECH = "speech"
    SCREEN_TEXT = "screen_text"
    LEXICAL = "lexical"


@dataclass(frozen=True)
class ChannelSpec:
    """One channel's row.

    levels: the LevelScores fields it scores, in wire order.
    segment_kind: `kind` of its rows in the timed-text (segments) collection; None when it has no timed text.
    switch: the settings field that switches it on for a deployment; None when it cannot be off.
    stage: the worker's ingest stage that extracts it (progress reports name it).
    text_field: the Video field (GetVideo include_text) that returns its timed text; None when it has none.
    """

    channel: Channel
    levels: tuple[str, ...]
    segment_kind: str | None
    switch: str | None
    stage: str
    text_field: str | None = None


CHANNELS: dict[Channel, ChannelSpec] = {
    Channel.VISUAL: ChannelSpec(Channel.VISUAL, ("video_sentence", "clip_sentence", "clip_phrase"), None, None, "embed"),
    Channel.SPEECH: ChannelSpec(Channel.SPEECH, ("speech_sentence",), "speech", "speech", "speech", "transcript"),
    Channel.SCREEN_TEXT: ChannelSpec(Channel.SCREEN_TEXT, ("screen_text_sentence",), "screen_text", "screen_text",
                                     "screen_text", "screen_text"),
    Channel.LEXICAL: ChannelSpec(Channel.LEXICAL, ("lexical",), None, "lexical", "lexicon"),
}

# Derived vocabulary: every room spells these through here.
TIMED_TEXT_CHANNELS: tuple[ChannelSpec, ...] = tuple(c for c in CHANNELS.values() if c.segment_kind is not None)
SEGMENT_KINDS: tuple[str, ...] = tuple(c.segment_kind for c in TIMED_TEXT_CHANNELS if c.segment_kind)
VISUAL_LEVELS: tuple[str, ...] = CHANNELS[Channel.VISUAL].levels
TEXT_LEVELS: tuple[str, ...] = tuple(level for c in TIMED_TEXT_CHANNELS for level in c.levels)
LEXICAL_LEVELS: tuple[str, ...] = CHANNELS[Channel.LEXICAL].levels
LEVELS: tuple[str, ...] = VISUAL_LEVELS + TEXT_LEVELS + LEXICAL_LEVELS
SWITCHABLE: tuple[Channel, ...] = tuple(c.channel for c in CHANNELS.values() if c.switch is not None)
KIND_OF_LEVEL: dict[str, str] = {level: c.segment_kind for c in TIMED_TEXT_CHANNELS if c.segment_kind
                                 for level in c.levels}


def channel(name: str) -> ChannelSpec:
    """The row of a channel by its wire name; ValueError naming the known ones for any other."""
    try:
        return CHANNELS[Channel(name)]
    except ValueError:
        raise ValueError(f"unknown channel {name!r}; the channels are {', '.join(CHANNELS)}") from None
