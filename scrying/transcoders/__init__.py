"""Transcoders: sparse per-layer replacements of the MLPs, their files, training and graphs."""

from scrying.transcoders.basis import TranscoderBasis
from scrying.transcoders.corpus import check_text_files
from scrying.transcoders.file_checks import check_transcoders
from scrying.transcoders.files import TranscoderSet, read_transcoders, write_transcoders
from scrying.transcoders.labels import (
    FeatureLabel,
    LabelConfig,
    label_features,
    read_cards,
    read_labels,
    write_labels,
)
from scrying.transcoders.transcoder import Transcoder, TranscoderSpec

__all__ = [
    "FeatureLabel",
    "LabelConfig",
    "Transcoder",
    "TranscoderBasis",
    "TranscoderSet",
    "TranscoderSpec",
    "check_text_files",
    "check_transcoders",
    "label_features",
    "read_cards",
    "read_labels",
    "read_transcoders",
    "write_labels",
    "write_transcoders",
]
