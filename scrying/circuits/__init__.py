"""Component-level causal circuits: EAP / EAP-IG edge scores, exact edge and node patching,
faithfulness curves and strongest paths over heads, MLPs, embeddings and logits."""
