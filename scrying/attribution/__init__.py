"""Attribution graphs: how a model reached one answer, at neuron or component granularity."""

from scrying.attribution.graph import Graph, Node
from scrying.attribution.neurons import NeuronGraphConfig, build_neuron_graph

__all__ = ["Graph", "Node", "NeuronGraphConfig", "build_neuron_graph"]
