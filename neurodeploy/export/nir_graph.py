"""The structure of an imported NIR graph: which nodes form the chain of layers
from Input to Output, which synapses loop back into their own neurons (recurrent
layers) and which join a neuron node to a later one (residual shortcuts).

A NIR graph sums every edge into a node. neurodeploy's network description is a
chain of blocks whose neurons may take extra synapses from earlier blocks
(:class:`neurodeploy.network.Shortcut`), so a graph is read as:

- the chain: the longest path from Input to Output (ties broken towards synapse
  nodes not marked ``loihi_shortcut`` by neurodeploy's writer, then the edge order);
- recurrent synapses: a Linear/Affine whose only input and only output is one neuron;
- shortcuts: every other node and edge, each a Linear/Affine/Conv2d node with one
  input and one output, or a direct edge (the identity), from a chain node into a
  later neuron node of the chain.

Anything else (parallel branches of neurons, a synapse feeding several nodes, an
edge into Output or Flatten off the chain) is one line naming the node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from neurodeploy.errors import InputError
from neurodeploy.export.nir_fields import META_SHORTCUT, SUPPORTED_NODES, _meta

CHAIN_RULE = ("only a chain of layers, with recurrent loops and shortcuts into later neuron "
              "layers, is supported")


@dataclass(frozen=True)
class GraphIndex:
    """nodes by name (subgraphs inlined), successors and predecessors, the Input node's
    name, recurrent synapse per neuron node."""

    nodes: Dict[str, object]
    succ: Dict[str, List[str]]
    pred: Dict[str, List[str]]
    input: str
    recurrent: Dict[str, str]


def _inline_subgraphs(nir, graph, prefix: str = ""):
    """Nested NIRGraph nodes (snnTorch's RLeaky/RSynaptic before nirtorch flattens
    them) inlined -> (nodes, edges) with dotted names."""
    nodes, edges, ports = {}, [], {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _inline_subgraphs(nir, node, full + ".")
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise InputError(f"NIR subgraph '{full}': needs exactly one Input and one Output node")
            first = [b for a, b in sub_edges if a == f"{full}.{ins[0]}"]
            last = [a for a, b in sub_edges if b == f"{full}.{outs[0]}"]
            for k in (ins[0], outs[0]):
                sub_nodes.pop(f"{full}.{k}")
            sub_edges = [(a, b) for a, b in sub_edges
                         if a != f"{full}.{ins[0]}" and b != f"{full}.{outs[0]}"]
            nodes.update(sub_nodes)
            edges += sub_edges
            ports[full] = (first, last)
        else:
            nodes[full] = node
    for a, b in graph.edges:
        srcs = ports[prefix + a][1] if prefix + a in ports else [prefix + a]
        dsts = ports[prefix + b][0] if prefix + b in ports else [prefix + b]
        edges += [(s, d) for s in srcs for d in dsts]
    return nodes, edges


def graph_index(nir, graph, where: str) -> GraphIndex:
    nodes, edges = _inline_subgraphs(nir, graph)
    for k, node in nodes.items():
        t = type(node).__name__
        if t not in SUPPORTED_NODES:
            raise InputError(f"{where}: node '{k}' of type {t} is not supported "
                             f"(supported: {', '.join(SUPPORTED_NODES)})")
    succ: Dict[str, List[str]] = {k: [] for k in nodes}
    pred: Dict[str, List[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise InputError(f"{where}: edge ({a!r}, {b!r}) names a node the graph does not have")
        succ[a].append(b)
        pred[b].append(a)
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise InputError(f"{where}: needs exactly one Input node, found {len(inputs)}")
    # recurrent synapses: X in {Linear, Affine} with edges neuron -> X -> neuron
    recurrent: Dict[str, str] = {}
    for k, node in nodes.items():
        if isinstance(node, (nir.Linear, nir.Affine)) and len(pred[k]) == 1 and succ[k] == pred[k] \
                and isinstance(nodes[pred[k][0]], (nir.CubaLIF, nir.LIF)):
            recurrent[pred[k][0]] = k
    return GraphIndex(nodes, succ, pred, inputs[0], recurrent)


def _topological(gi: GraphIndex, dag, where: str) -> List[str]:
    """Kahn's order of the nodes in ``dag`` (recurrent synapses left out)."""
    indeg = {k: sum(1 for p in gi.pred[k] if p in dag) for k in dag}
    ready = [k for k in dag if indeg[k] == 0]
    order = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for s in gi.succ[k]:
            if s in dag:
                indeg[s] -= 1
                if indeg[s] == 0:
                    ready.append(s)
    if len(order) < len(dag):
        loop = next(k for k in dag if k not in order)
        raise InputError(f"{where}: node '{loop}' is reached twice (a loop that is not a recurrent layer)")
    return order


def _longest_chain(gi: GraphIndex, dag, output: str, where: str) -> List[str]:
    """The longest path Input -> Output (node names after Input, Output last)."""
    dist: Dict[str, Optional[int]] = {k: None for k in dag}
    best: Dict[str, str] = {}
    dist[gi.input] = 0
    for k in _topological(gi, dag, where):
        cands = [p for p in gi.pred[k] if p in dag and dist[p] is not None]
        if k == gi.input or not cands:
            continue
        top = max(dist[p] for p in cands)
        tied = [p for p in cands if dist[p] == top]
        unmarked = [p for p in tied if not _meta(gi.nodes[p], META_SHORTCUT)]
        best[k], dist[k] = (unmarked or tied)[0], top + 1
    if dist[output] is None:
        raise InputError(f"{where}: node '{output}' (Output) is not reached from the Input node")
    chain = [output]
    while best.get(chain[-1], gi.input) != gi.input:
        chain.append(best[chain[-1]])
    return chain[::-1]


#: neuron node name -> [(source chain node, synapse node name or None for a direct edge)]
ShortcutEdges = Dict[str, List[Tuple[str, Optional[str]]]]


def chain_and_shortcuts(nir, gi: GraphIndex, where: str) -> Tuple[List[str], ShortcutEdges]:
    """-> (chain: node names from after Input to Output, shortcuts: neuron node ->
    [(source chain node, synapse node name or None for a direct edge)])."""
    outputs = [k for k, v in gi.nodes.items() if isinstance(v, nir.Output)]
    if len(outputs) != 1:
        raise InputError(f"{where}: needs exactly one Output node, found {len(outputs)}")
    dag = [k for k in gi.nodes if k not in set(gi.recurrent.values())]
    chain = _longest_chain(gi, set(dag), outputs[0], where)
    on_chain = set(chain) | {gi.input}
    prev = dict(zip(chain, [gi.input] + chain[:-1]))
    shortcuts: ShortcutEdges = {}
    synapse = (nir.Affine, nir.Linear, nir.Conv2d)

    def add(src: str, syn: Optional[str], tgt: str) -> None:
        if tgt not in on_chain or not isinstance(gi.nodes[tgt], (nir.CubaLIF, nir.LIF)):
            raise InputError(f"{where}: node '{syn or src}' feeds {len(gi.succ[syn or src])} nodes; {CHAIN_RULE}")
        shortcuts.setdefault(tgt, []).append((src, syn))

    for k in dag:
        if k in on_chain:
            continue
        node = gi.nodes[k]
        if not isinstance(node, synapse) or len(gi.pred[k]) != 1 or gi.pred[k][0] not in on_chain:
            raise InputError(f"{where}: node '{k}' is not on the chain from Input to Output "
                             f"(a branch that is not a shortcut synapse; {CHAIN_RULE})")
        if len(gi.succ[k]) != 1:
            raise InputError(f"{where}: node '{k}' feeds {len(gi.succ[k])} nodes; a shortcut synapse "
                             "feeds one neuron node")
        add(gi.pred[k][0], k, gi.succ[k][0])
    for k in chain:
        rec = gi.recurrent.get(k)
        extra = [p for p in gi.pred[k] if p in on_chain and p != rec]
        extra.remove(prev[k])
        for p in extra:  # a direct edge: the identity
            add(p, None, k)
    return chain, shortcuts
