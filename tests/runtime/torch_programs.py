"""Test-only additions to :mod:`slimrt.testing` that need torch: ``torch.export`` programs of synthetic sub-nets."""

from __future__ import annotations

from pathlib import Path

import onnx

from slimrt.artifact import write_manifest
from slimrt.schema import FileRef, sha256_file
from slimrt.testing import load_subnet_weights

__all__ = ["export_torch_program", "add_torch_programs"]


def export_torch_program(onnx_path: str | Path, out: str | Path) -> Path:
    """Write a ``torch.export`` program with the same weights as a synthetic sub-net (needs torch; tests only)."""
    import torch

    w = {k: torch.from_numpy(v.copy()) for k, v in load_subnet_weights(onnx_path).items()}
    depth = sum(1 for k in w if k.startswith("conv") and k.endswith(".weight"))

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for k, v in w.items():
                self.register_buffer(k.replace(".", "_"), v)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for i in range(depth):
                x = torch.relu(torch.nn.functional.conv2d(x, getattr(self, f"conv{i}_weight"),
                                                          getattr(self, f"conv{i}_bias"), padding=1))
            return x.mean(dim=(2, 3)) @ self.fc_weight + self.fc_bias

    spatial = int(onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[2]
                  .dim_value)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(Net().eval(), (torch.zeros(2, 3, spatial, spatial),), dynamic_shapes={"x": {0: batch}})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(ep, str(out))
    return out


def add_torch_programs(root: str | Path) -> Path:
    """Export every sub-net of a synthetic artifact to ``torch/<name>.pt2`` and list them in the manifest."""
    from slimrt.artifact import load_manifest

    root = Path(root)
    m = load_manifest(root)
    subs = []
    for s in m.subnets:
        rel = f"torch/{s.name}.pt2"
        path = export_torch_program(root / s.onnx.path, root / rel)
        ref = FileRef(path=rel, sha256=sha256_file(path), bytes=path.stat().st_size)
        subs.append(s.model_copy(update={"torch_program": ref}))
    write_manifest(root, m.model_copy(update={"subnets": subs}))
    return root
