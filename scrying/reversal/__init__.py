"""Reversal-curse probes (Berglund et al. 2023): does a model that knows "A is B" know "B is A"?

The package API: pair files (:mod:`scrying.reversal.pairs`), the packaged relations
(:mod:`scrying.reversal.relations`), batched scoring in both directions
(:mod:`scrying.reversal.pair_scoring`) into typed records (:mod:`scrying.reversal.records`),
per-relation statistics (:mod:`scrying.reversal.summary`), the HTML report
(:mod:`scrying.reversal.report`), the whole probe as one function (:mod:`scrying.reversal.run`),
the controlled toy experiment with its two cures (:mod:`scrying.reversal.experiment`, the
text reversals of reverse training in :mod:`scrying.reversal.reverse_text`) the linear probes
of where each direction is stored (:mod:`scrying.reversal.linear_probes`) and the probe across
model sizes (:mod:`scrying.reversal.sizes`).
"""
