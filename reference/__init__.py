"""Two unfused references for microgpt's engine, and a way to count any engine's graph.

- atomic.py: microgpt's GPT built from the primitive operations (+ * / ** exp log relu) of microgpt's own
  Value. The tests hold every fused node, the forward pass and training to it.
- classic.py: the textbook scalar engines, micrograd's and the microgpt gist's, sharing no code with
  microgpt. The tests hold them to microgpt's numbers; `make bench` times microgpt against them.

graph_size() counts the nodes and edges of a graph built by any of these engines; the bench and the
reading page (`make docs`) print it.
"""


def children_of(v):
    """The Values `v` was computed from, in any of the engines: microgpt's groups, the gist's _children,
    micrograd's _prev."""
    if hasattr(v, "_groups"):
        return [child for children, _ in v._groups for child in children]
    return v._children if hasattr(v, "_children") else v._prev


def graph_size(loss, params):
    """(nodes, edges) of the graph behind `loss`, parameters not counted as nodes; an edge is a child link."""
    params = {id(p) for p in params}
    seen, stack, nodes, edges = set(), [loss], 0, 0
    while stack:
        v = stack.pop()
        if id(v) in seen or id(v) in params:
            continue
        seen.add(id(v))
        nodes += 1
        children = children_of(v)
        edges += len(children)
        stack.extend(children)
    return nodes, edges
