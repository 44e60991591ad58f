"""fp16 by node: convert an fp32 ONNX graph to float16 except the nodes in a block list.

Why not torch's `.half()` (the path `toolkit export --precision fp16` takes): it converts the whole
module, so "keep this one layer in fp32" would need per-module surgery in PyTorch and a new export
for every trial; here a block list of ONNX node names -- the names `toolkit diagnose` reports --
maps one to one onto the graph, and a trial costs milliseconds. Why not onnxruntime's
`transformers.float16.convert_float_to_float16(node_block_list=...)`: it appends the Casts it
inserts at the end of the graph, which onnx.checker rejects (nodes not topologically sorted;
checked with onnxruntime 1.32), and every export here passes the checker. Without a block list
this converter's output gives logits bit-identical to the `.half()` export's (tested).

Contract kept: float32 graph input and output (a Cast at each edge), tensor names unchanged (fp16
values keep their fp32 names; each added Cast is named after the tensor it converts).
"""

from __future__ import annotations

import numpy as np


def convert_fp16(fp32_bytes: bytes, block_list: list[str] | tuple[str, ...] = ()) -> bytes:
    """The fp32 model with every node computing in float16, except the nodes named in `block_list`
    (kept in float32, with Casts where a tensor crosses between the two)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(fp32_bytes)
    graph = model.graph
    names = {n.name for n in graph.node}
    unknown = [b for b in block_list if b not in names]
    if unknown:
        from toolkit.errors import InputError

        raise InputError(f"no node named {', '.join(unknown)} in the model", f"node names: {', '.join(sorted(names))}")
    inferred = onnx.shape_inference.infer_shapes(model)
    elem = {v.name: v.type.tensor_type.elem_type
            for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    inits = {i.name: i for i in graph.initializer}
    for name, init in inits.items():
        elem[name] = init.data_type
    blocked = set(block_list)
    graph_outputs = {o.name for o in graph.output}

    dtype = {i.name: TensorProto.FLOAT for i in graph.input}  # current dtype of each float activation
    new_nodes, new_inits, casts = [], {}, {}

    def cast_to(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            suffix = "fp16" if to == TensorProto.FLOAT16 else "fp32"
            out = f"{name}_cast_{suffix}"
            new_nodes.append(helper.make_node("Cast", [name], [out], name=f"{name}_Cast_{suffix}", to=to))
            casts[key] = out
        return casts[key]

    def initializer_as(name: str, to: int) -> str:
        if to == TensorProto.FLOAT:
            return name
        out = f"{name}_fp16"
        if out not in new_inits:
            with np.errstate(over="ignore"):  # a weight beyond fp16's range becomes inf, as in torch's .half()
                array = numpy_helper.to_array(inits[name]).astype(np.float16)
            new_inits[out] = numpy_helper.from_array(array, out)
        return out

    renamed_outputs = {}
    for node in graph.node:
        target = TensorProto.FLOAT if node.name in blocked else TensorProto.FLOAT16
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        for k, name in enumerate(node.input):
            if not name or elem.get(name) != TensorProto.FLOAT:
                continue  # int64 shapes and other non-float inputs stay as they are
            if name in inits:
                copy.input[k] = initializer_as(name, target)
            elif dtype.get(name, TensorProto.FLOAT) != target:
                copy.input[k] = cast_to(name, target)
        for k, name in enumerate(node.output):
            if elem.get(name) != TensorProto.FLOAT:
                continue
            if name in graph_outputs and target == TensorProto.FLOAT16:
                inner = f"{name}_fp16"
                copy.output[k] = inner
                renamed_outputs[name] = inner
                dtype[inner] = target
            else:
                dtype[name] = target
        if node.op_type == "Cast":
            raise ValueError("convert_fp16 expects an fp32 graph without Casts")
        new_nodes.append(copy)
    for name, inner in renamed_outputs.items():
        new_nodes.append(helper.make_node("Cast", [inner], [name], name=f"{name}_Cast_fp32", to=TensorProto.FLOAT))

    used = {i for n in new_nodes for i in n.input}
    kept_inits = [i for i in graph.initializer if i.name in used] + [i for n, i in new_inits.items() if n in used]
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    del graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
