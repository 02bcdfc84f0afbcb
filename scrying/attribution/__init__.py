"""Attribution graphs: how a model reached one answer, at neuron or component granularity."""

from scrying.attribution.basis import ActiveSet, BasisState, FeatureBasis, NeuronBasis, Setting, Settings
from scrying.attribution.feature_graph import (
    FeatureGraphConfig,
    build_feature_graph,
    build_neuron_graph,
)
from scrying.attribution.graph import Graph, Node

__all__ = [
    "ActiveSet",
    "BasisState",
    "FeatureBasis",
    "FeatureGraphConfig",
    "Graph",
    "NeuronBasis",
    "Node",
    "Setting",
    "Settings",
    "build_feature_graph",
    "build_neuron_graph",
]
