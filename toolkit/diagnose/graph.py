"""ONNX graph surgery for the diagnosis: expose every activation, match a candidate's tensors to the
reference's, cut out one layer so it can be recomputed from the reference's input.

Pure functions of `onnx.ModelProto`s: no runtime. Matching is by tensor name, which both export
paths keep (the dynamo exporter names tensors after the PyTorch graph; onnxruntime's quantizer and
fp16 converter keep those names and add suffixed Q/DQ/Cast tensors around them), seen through the
QuantizeLinear -> DequantizeLinear pairs and Casts that a lower precision inserts.
"""

from __future__ import annotations

from dataclasses import dataclass

# Nodes that change a tensor's precision but not its meaning: the candidate's value of a tensor is
# what comes out of them (what the next layer actually reads).
TRANSPARENT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Cast"})


@dataclass(frozen=True)
class TensorSite:
    """One reference tensor, in graph order, and where the candidate computes it."""

    name: str  # the reference's tensor name
    reference_node: str  # the reference node producing it ("" for the graph input)
    op_type: str  # the reference node's operator ("Input" for the graph input)
    candidate_tensor: str | None  # the candidate tensor holding its value (after Q/DQ and Casts); None: fused away
    candidate_node: str | None  # the candidate's compute node producing it (Q/DQ/Cast skipped)
    candidate_op: str | None
    layer_inputs: tuple[str, ...] = ()  # the candidate tensors that node reads (what the recompute feeds)
    layer_input_sources: tuple[str, ...] = ()  # the reference tensors holding those inputs' values


def _producers(graph) -> dict[str, object]:
    return {out: node for node in graph.node for out in node.output if out}


def _consumers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                out.setdefault(name, []).append(node)
    return out


def constant_tensors(graph) -> set[str]:
    """Initializers and everything computed from initializers only (weight DequantizeLinear outputs)."""
    const = {i.name for i in graph.initializer}
    for node in graph.node:  # nodes are topologically sorted (the checker requires it)
        if node.op_type == "Constant" or (node.input and all((not i) or i in const for i in node.input)):
            const.update(o for o in node.output if o)
    return const


def activation_names(model) -> list[str]:
    """The graph input and every non-constant node output, in graph order."""
    graph = model.graph
    const = constant_tensors(graph)
    names = [i.name for i in graph.input if i.name not in const]
    for node in graph.node:
        names.extend(o for o in node.output if o and o not in const)
    return names


def expose_all(model, names: list[str] | None = None):
    """A copy of `model` with every activation (or `names`) added as a graph output.

    Types come from shape inference; tensors that are not float32/float16 (the int8 halves of Q/DQ
    pairs) are not exposed: their dequantized neighbours carry the same values."""
    import onnx
    from onnx import TensorProto, helper

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    elem = {v.name: v.type.tensor_type.elem_type for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    present = {o.name for o in exposed.graph.output}
    graph_inputs = {i.name for i in exposed.graph.input}
    for name in names if names is not None else activation_names(model):
        if name in present or name in graph_inputs:
            continue
        if elem.get(name) not in (TensorProto.FLOAT, TensorProto.FLOAT16):
            continue
        exposed.graph.output.append(helper.make_tensor_value_info(name, elem[name], None))
        present.add(name)
    return exposed


def _effective(name: str, consumers: dict[str, list], outputs: set[str]) -> str:
    """Follow `name` forward through a Q->DQ pair or a Cast to the tensor the next layer reads."""
    seen = set()
    while name not in seen:
        seen.add(name)
        users = consumers.get(name, [])
        if name in outputs or len(users) != 1:
            return name
        node = users[0]
        if node.op_type == "Cast":
            name = node.output[0]
        elif node.op_type == "QuantizeLinear":
            after = consumers.get(node.output[0], [])
            if len(after) != 1 or after[0].op_type != "DequantizeLinear":
                return name
            name = after[0].output[0]
        else:
            return name
    return name


def _source(name: str, producers: dict[str, object], known: set[str]) -> str:
    """Follow `name` backwards through DQ<-Q pairs and Casts to a tensor the reference also has."""
    seen = set()
    while name not in known and name not in seen:
        seen.add(name)
        node = producers.get(name)
        if node is None or node.op_type not in TRANSPARENT_OPS:
            break
        name = node.input[0]
    return name


def _compute_node(name: str, producers: dict[str, object]):
    """The first non-transparent node upstream of `name` (None for the graph input)."""
    node = producers.get(name)
    while node is not None and node.op_type in TRANSPARENT_OPS:
        node = producers.get(node.input[0])
    return node


def match_tensors(reference, candidate) -> list[TensorSite]:
    """Every reference activation in graph order, with the candidate tensor that holds its value.

    A reference tensor matches the candidate tensor of the same name, moved forward through a Q/DQ
    pair or a Cast (so an int8 activation is compared after dequantization, an fp16 one after its
    cast, as the next layer sees them). A reference tensor the candidate fused away (e.g. the Conv
    output before a Relu that onnxruntime's u8 quantization folds into the Conv) has no match."""
    ref_graph, cand_graph = reference.graph, candidate.graph
    ref_producers = _producers(ref_graph)
    cand_producers, cand_consumers = _producers(cand_graph), _consumers(cand_graph)
    cand_const = constant_tensors(cand_graph)
    cand_outputs = {o.name for o in cand_graph.output}
    cand_names = set(activation_names(candidate))
    ref_names = activation_names(reference)
    known = set(ref_names)
    sites = []
    for name in ref_names:
        ref_node = ref_producers.get(name)
        ref_node_name = ref_node.name if ref_node is not None else ""
        ref_op = ref_node.op_type if ref_node is not None else "Input"
        if name not in cand_names:
            sites.append(TensorSite(name, ref_node_name, ref_op, None, None, None))
            continue
        effective = _effective(name, cand_consumers, cand_outputs)
        node = _compute_node(name, cand_producers)
        inputs, sources = (), ()
        if node is not None:
            inputs = tuple(i for i in node.input if i and i not in cand_const)
            sources = tuple(_source(i, cand_producers, known) for i in inputs)
            if not all(s in known for s in sources):
                inputs, sources = (), ()  # an input the reference lacks: no recompute for this layer
        sites.append(TensorSite(name, ref_node_name, ref_op, effective,
                                node.name if node is not None else None, node.op_type if node is not None else None,
                                inputs, sources))
    return sites


def extract_layer(candidate, inputs: tuple[str, ...], output: str):
    """The candidate's subgraph from `inputs` to `output` (the layer, its weights' DQ and its output
    Q/DQ or Cast), as a model whose inputs are those tensors; None when onnx cannot cut it."""
    import onnx
    from onnx.utils import Extractor

    try:
        inferred = onnx.shape_inference.infer_shapes(candidate)
        return Extractor(inferred).extract_model(list(inputs), [output])
    except Exception:  # noqa: BLE001 - a layer onnx cannot cut is reported without its own-error split
        return None


def compute_nodes(model) -> list[str]:
    """Names of the nodes a precision change can apply to, in graph order (not Q/DQ/Cast, not constants)."""
    const = constant_tensors(model.graph)
    return [n.name for n in model.graph.node
            if n.op_type not in TRANSPARENT_OPS and not all((not i) or i in const for i in n.input)]
