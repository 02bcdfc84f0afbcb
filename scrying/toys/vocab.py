"""Tokenizers for toy models, each with four specials first (``<pad> <bos> <eos> <unk>``):

* :func:`build_tokenizer` — word level: tokens ``t0 .. t{n-1}`` separated by spaces;
* :func:`build_char_tokenizer` — one token per character of a given alphabet (digits and
  operators for arithmetic: ``"12+34="`` is six tokens), decoded without separators.

Saved with the model as ``tokenizer.json`` so that ``load_model(dir)`` (and TransformerLens,
which re-opens the tokenizer by path) reads it back offline. The tokenizer adds ``<bos>`` itself.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


def build_tokenizer(n_content: int) -> PreTrainedTokenizerFast:
    """A tokenizer with ``len(SPECIALS) + n_content`` tokens; content token ``ti`` has id ``4 + i``."""
    from tokenizers import decoders, pre_tokenizers

    return _word_level([f"t{i}" for i in range(n_content)], pre_tokenizers.WhitespaceSplit(),
                       decoders.WordPiece(prefix="##", cleanup=False))


def build_char_tokenizer(alphabet: str) -> PreTrainedTokenizerFast:
    """A tokenizer with one token per character of ``alphabet`` (ids ``4 ..``, in its order);
    any other character is ``<unk>``; decoding joins the characters."""
    from tokenizers import Regex, decoders, pre_tokenizers

    if len(set(alphabet)) != len(alphabet) or any(c.isspace() for c in alphabet):
        raise ValueError(f"alphabet must be distinct non-space characters, got {alphabet!r}")
    return _word_level(list(alphabet), pre_tokenizers.Split(Regex("."), behavior="isolated"), decoders.Fuse())


def _word_level(words: list[str], pre_tokenizer, decoder) -> PreTrainedTokenizerFast:  # noqa: ANN001 - tokenizers' types
    """The specials, then ``words`` (ids ``4 ..``); ``<bos>`` added before every text."""
    from tokenizers import Tokenizer, models, processors

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({w: len(SPECIALS) + i for i, w in enumerate(words)})
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizer
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    core.decoder = decoder
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def content_token_ids(n_content: int) -> range:
    """Ids of the content tokens ``t0 .. t{n-1}``."""
    return range(len(SPECIALS), len(SPECIALS) + n_content)
