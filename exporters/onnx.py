"""Conversion of one (extracted) sub-net to ONNX, with BatchNormalization kept over unfused weights.

``torch.onnx.export`` (dynamo) with its optimizer on folds BatchNorm into the conv weights and keeps the
weight names, so a folded ``conv.weight`` no longer equals the shared tensor. We export with
``optimize=False`` and then clean the graph ourselves: fold the constant sub-graphs the exporter
emits for bias-less convs (``Shape -> Expand`` of a zero), drop all-zero conv biases, and strip what
ONNX Runtime does not need (value_info, metadata, doc strings, node names, long value names) so that
a sub-net graph costs a few kilobytes on top of the shared weights.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

if TYPE_CHECKING:
    import torch

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "export_module", "compact_graph", "graph_opset"]

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _torch_export(
    module: torch.nn.Module, example: torch.Tensor, *, opset: int | None, dynamic_batch: bool, optimize: bool
) -> onnx.ModelProto:
    import torch

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    x = example
    if dynamic_batch and x.shape[0] < 2:
        # torch.export specialises a dimension of size 1; trace with 2 so the batch stays symbolic.
        x = torch.cat([x, x], dim=0)
    kwargs: dict = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            module.eval(),
            (x,),
            dynamo=True,
            optimize=optimize,
            verbose=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            **kwargs,
        )
    assert prog is not None
    return prog.model_proto


def export_module(
    module: torch.nn.Module,
    example: torch.Tensor,
    *,
    opset: int | None = None,
    dynamic_batch: bool = False,
    keep_batchnorm: bool = True,
) -> onnx.ModelProto:
    """Export a module to ONNX.

    Args:
        module: the network (put in eval mode).
        example: one example input, shape [N, C, H, W].
        opset: ONNX opset; None takes the exporter's default.
        dynamic_batch: make the batch dimension symbolic (``batch``).
        keep_batchnorm: True exports BatchNormalization unfused over the module's own parameters and compacts
            the graph (initializer names = state-dict keys); False is a plain ``torch.onnx.export`` (the
            exporter's optimizer folds BN into conv weights), used as the standalone baseline.
    """
    model = _torch_export(module, example, opset=opset, dynamic_batch=dynamic_batch, optimize=not keep_batchnorm)
    if keep_batchnorm:
        model = compact_graph(model)
    return model


def graph_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset of a model."""
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    raise ValueError("model has no default-domain opset")


def compact_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Simplify the graph without touching weights, drop all-zero conv biases, strip metadata and long names.

    Runs onnxscript's constant folding and its default rewrite rules *minus* BatchNorm fusion (so dynamic-batch
    heads become one ``Reshape``, as in a plain export), then checks that every BatchNormalization survived and
    every initializer the exporter wrote is unchanged; if not, it falls back to constant folding only.
    """
    original = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    n_bn = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    simplified = _simplify(model, rewrite=True)
    if simplified is None or not _weights_intact(simplified, original, n_bn):
        log.debug("rewrite rules changed weights or BatchNorm; using constant folding only")
        simplified = _simplify(model, rewrite=False)
        assert simplified is not None
    model = simplified
    g = model.graph
    _drop_zero_conv_bias(g)
    _strip(model)
    _rename_values(g)
    onnx.checker.check_model(model)
    return model


def _safe_rewrite_rules() -> list:
    """onnxscript's default rewrite rules without the BatchNorm fusions (empty if its layout changed)."""
    try:
        from onnxscript import rewriter
        from onnxscript.rewriter.rules.common import _fuse_batchnorm

        banned = set(map(id, _fuse_batchnorm.rules))
        return [r for r in rewriter._DEFAULT_REWRITE_RULES if id(r) not in banned]
    except (ImportError, AttributeError):  # pragma: no cover - other onnxscript versions
        return []


def _simplify(model: onnx.ModelProto, *, rewrite: bool) -> onnx.ModelProto | None:
    import onnxscript.ir as ir
    import onnxscript.optimizer as oopt

    rules = _safe_rewrite_rules() if rewrite else []
    if rewrite and not rules:
        return None
    with _quiet("onnxscript", "onnx_ir"):
        irm = ir.from_proto(model)
        oopt.fold_constants(irm)
        if rules:
            from onnxscript import rewriter

            for _ in range(2):
                rewriter.RewritePass(rules)(irm)
                oopt.fold_constants(irm)
        oopt.remove_unused_nodes(irm)
        return ir.to_proto(irm)


def _weights_intact(model: onnx.ModelProto, original: dict[str, np.ndarray], n_bn: int) -> bool:
    if sum(n.op_type == "BatchNormalization" for n in model.graph.node) != n_bn:
        return False
    for init in model.graph.initializer:
        ref = original.get(init.name)
        if ref is not None and not np.array_equal(numpy_helper.to_array(init), ref):
            return False
    return True


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Raise the given loggers to WARNING for the block (the optimizer logs every pass at INFO)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(logging.WARNING, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


def _drop_zero_conv_bias(g: onnx.GraphProto) -> None:
    inits = {i.name: i for i in g.initializer}
    for node in g.node:
        if node.op_type == "Conv" and len(node.input) == 3 and node.input[2] in inits:
            b = numpy_helper.to_array(inits[node.input[2]])
            if not np.any(b):
                del node.input[2]
    used = {n for node in g.node for n in node.input} | {o.name for o in g.output}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def _strip(model: onnx.ModelProto) -> None:
    g = model.graph
    model.doc_string = ""
    del model.metadata_props[:]
    g.doc_string = ""
    del g.metadata_props[:]
    del g.value_info[:]
    for coll in (g.input, g.output, g.initializer):
        for v in coll:
            v.doc_string = ""
            del v.metadata_props[:]
    for node in g.node:
        node.name = ""
        node.doc_string = ""
        del node.metadata_props[:]


def _rename_values(g: onnx.GraphProto) -> None:
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        return  # sub-graphs may capture outer names; leave them alone
    keep = {v.name for v in g.input} | {v.name for v in g.output} | {i.name for i in g.initializer}
    mapping: dict[str, str] = {}
    for node in g.node:
        for i, out in enumerate(node.output):
            if out and out not in keep and out not in mapping:
                mapping[out] = f"t{len(mapping)}"
            if out in mapping:
                node.output[i] = mapping[out]
        for i, inp in enumerate(node.input):
            if inp in mapping:
                node.input[i] = mapping[inp]
