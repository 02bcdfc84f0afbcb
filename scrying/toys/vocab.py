"""A word-level tokenizer for toy models: tokens ``t0 .. t{n-1}`` plus four specials.

Saved with the model as ``tokenizer.json`` so that ``load_model(dir)`` (and TransformerLens,
which re-opens the tokenizer by path) reads it back offline. The tokenizer adds ``<bos>`` itself.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


def build_tokenizer(n_content: int) -> PreTrainedTokenizerFast:
    """A tokenizer with ``len(SPECIALS) + n_content`` tokens; content token ``ti`` has id ``4 + i``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({f"t{i}": len(SPECIALS) + i for i in range(n_content)})
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
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
