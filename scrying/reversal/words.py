"""A word-level tokenizer over a given word list (specials ``<pad> <bos> <eos> <unk>`` first),
for the toy models of the controlled experiment and the tests. Words are split on whitespace;
decoding joins them with spaces. Saved with the model (``tokenizer.json``) so that
``load_model(dir)`` reads it back offline; the tokenizer adds ``<bos>`` itself."""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


def word_tokenizer(words: list[str], *, strip: str = "") -> PreTrainedTokenizerFast:
    """Token ``i + 4`` is ``words[i]``; any other word is ``<unk>``. ``strip``: characters the
    normalizer deletes before splitting (tests use it to make text that tokenizes to nothing)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for word in dict.fromkeys(words):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    if strip:
        core.normalizer = normalizers.Sequence([normalizers.Replace(c, "") for c in strip])
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")
