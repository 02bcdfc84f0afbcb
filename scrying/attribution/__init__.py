"""Attribution graphs: how a model reached one answer, at neuron or component granularity."""

from scrying.attribution.basis import (
    ActiveSet,
    BasisState,
    FeatureBasis,
    NeuronBasis,
    Setting,
    Settings,
)
from scrying.attribution.feature_graph import (
    FeatureGraphConfig,
    build_feature_graph,
    build_neuron_graph,
)
from scrying.attribution.graph import Graph, Node
from scrying.attribution.influence import node_influence
from scrying.attribution.replacement import (
    CleanRun,
    attribution_pass,
    clean_run,
    frozen_demeaned_logits,
)

__all__ = [
    "ActiveSet",
    "BasisState",
    "CleanRun",
    "FeatureBasis",
    "FeatureGraphConfig",
    "Graph",
    "NeuronBasis",
    "attribution_pass",
    "clean_run",
    "frozen_demeaned_logits",
    "node_influence",
    "Node",
    "Setting",
    "Settings",
    "build_feature_graph",
    "build_neuron_graph",
]
