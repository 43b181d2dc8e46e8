"""Every manifest field is validated by the schema and bounded in size, so `verify` and the runtime agree."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from slimrt import SlimRuntime
from slimrt.artifact import MAX_MANIFEST_BYTES, SIDECAR_NAME, check_artifact
from slimrt.errors import ArtifactError
from slimrt.schema import MAX_SUBNETS


def _reseal(root: Path, raw: dict) -> None:
    """Write ``raw`` as manifest.json with a matching sidecar (a self-consistent but hostile manifest)."""
    data = json.dumps(raw).encode()
    (root / "manifest.json").write_bytes(data)
    (root / SIDECAR_NAME).write_text(hashlib.sha256(data).hexdigest() + "  manifest.json\n")


def _edit(root: Path, edit) -> None:
    raw = json.loads((root / "manifest.json").read_text())
    edit(raw)
    _reseal(root, raw)


def _many_subnets(raw: dict, n: int = MAX_SUBNETS + 1) -> None:
    first = raw["subnets"][0]
    raw["subnets"] = [{**first, "name": f"s{i}"} for i in range(n)]


def _set_input(**kw):
    return lambda raw: raw["input"].update(kw)


CASES = {
    "too many sub-nets": (_many_subnets, f"at most {MAX_SUBNETS}"),
    "input dtype float64": (_set_input(dtype="float64"), r"input\.dtype"),
    "negative dim": (_set_input(shape=[1, -3, 16, 16]), r"input\.shape"),
    "zero dim": (_set_input(shape=[1, 3, 0, 16]), r"input\.shape"),
    "NaN accuracy": (lambda raw: raw["subnets"][1].update(test_accuracy=float("nan")), "finite percentage"),
    "infinite max_abs_diff": (lambda raw: raw["subnets"][0].update(max_abs_diff=float("inf")), "max_abs_diff"),
    "schema_version true": (lambda raw: raw.update(schema_version=True), "must be the integer 1, found bool True"),
    "schema_version 1.0": (lambda raw: raw.update(schema_version=1.0), "must be the integer 1, found float 1.0"),
    "schema_version '1'": (lambda raw: raw.update(schema_version="1"), "must be the integer 1, found str '1'"),
    "labels miscounted": (lambda raw: raw.update(labels=["cat", "dog"] * 50), "labels name 100 classes but the output"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_manifest_refused_by_verify_and_runtime_alike(synthetic_artifact: Path, case: str) -> None:
    edit, match = CASES[case]
    _edit(synthetic_artifact, edit)
    report = check_artifact(synthetic_artifact)
    assert not report.ok and report.error
    assert len(report.error.splitlines()) == 1


    assert re.search(match, report.error), report.error
    with pytest.raises(ArtifactError, match=match):
        SlimRuntime(synthetic_artifact, budget_ms=10.0, threads=1)


def test_oversized_manifest_refused_before_parsing(synthetic_artifact: Path) -> None:
    _edit(synthetic_artifact, lambda raw: raw.update(arch="x" * (MAX_MANIFEST_BYTES + 1)))
    report = check_artifact(synthetic_artifact)
    assert not report.ok and "over the limit" in (report.error or "")


def test_manifest_symlink_refused(synthetic_artifact: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    shutil.move(synthetic_artifact / "manifest.json", outside)
    (synthetic_artifact / "manifest.json").symlink_to(outside)
    report = check_artifact(synthetic_artifact)
    assert not report.ok and "is a symlink" in (report.error or "")
    with pytest.raises(ArtifactError, match="is a symlink"):
        SlimRuntime(synthetic_artifact, budget_ms=10.0, threads=1)


def test_labels_optional_and_exposed_by_the_runtime(synthetic_artifact: Path) -> None:
    raw = json.loads((synthetic_artifact / "manifest.json").read_text())
    assert raw["labels"] is None and raw["input"]["preprocess"] is None
    del raw["labels"], raw["input"]["preprocess"]  # as a manifest written before these fields existed
    _reseal(synthetic_artifact, raw)
    with SlimRuntime(synthetic_artifact, budget_ms=10.0, threads=1) as rt:
        assert rt.labels is None
    names = [f"class {i}" for i in range(raw["output"]["shape"][-1])]
    _edit(synthetic_artifact, lambda r: (r.update(labels=names), r["input"].update(preprocess={"input_size": 16})))
    with SlimRuntime(synthetic_artifact, budget_ms=10.0, threads=1) as rt:
        assert rt.labels == names and rt.manifest.input.preprocess == {"input_size": 16}
