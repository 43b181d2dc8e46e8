"""Exporters (``slimrt.exporters``): one ONNX model per sub-net with the weights stored once, validation, the artifact
pipeline, optional ``torch.export`` programs and TensorRT engines.

``export_artifact(checkpoint, out_dir, ExportOptions(...)) -> ExportResult`` is the library entry point that
``slimrt export``, the demo and the benchmarks share. Submodules import torch/onnx lazily on attribute access.
"""

from __future__ import annotations

from slimrt._lazy import lazy_getattr

__all__ = [
    "ExportOptions",
    "ExportResult",
    "SubnetReport",
    "export_artifact",
    "add_engines",
    "WeightStore",
    "export_module",
    "validate_subnet",
]

_LAZY = {
    "ExportOptions": "slimrt.exporters.artifact_writer",
    "ExportResult": "slimrt.exporters.artifact_writer",
    "SubnetReport": "slimrt.exporters.artifact_writer",
    "export_artifact": "slimrt.exporters.artifact_writer",
    "add_engines": "slimrt.exporters.artifact_writer",
    "WeightStore": "slimrt.exporters.weights",
    "export_module": "slimrt.exporters.onnx",
    "validate_subnet": "slimrt.exporters.validate",
}

__getattr__ = lazy_getattr(__name__, _LAZY)
