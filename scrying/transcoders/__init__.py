"""Transcoders: sparse per-layer replacements of the MLPs, their files, training and graphs."""

from scrying.transcoders.basis import TranscoderBasis
from scrying.transcoders.files import TranscoderSet, read_transcoders, write_transcoders
from scrying.transcoders.transcoder import Transcoder, TranscoderSpec

__all__ = [
    "Transcoder",
    "TranscoderBasis",
    "TranscoderSet",
    "TranscoderSpec",
    "read_transcoders",
    "write_transcoders",
]
