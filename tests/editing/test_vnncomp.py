"""Slow: every ``sat`` mnist_fc instance of VNN-COMP 2022 is edited (last layer) and certified."""
from __future__ import annotations

import csv

import pytest

from lirpa_lid.datasets import data_dir
from lirpa_lid.editing import CheckOptions, EditStatus, edit
from lirpa_lid.models.onnx import load_onnx
from lirpa_lid.specification.vnnlib import parse_vnnlib


def sat_instances() -> list[tuple[str, str]]:
    root = data_dir() / "vnncomp2022" / "mnist_fc"
    if not (root / "ground_truth.csv").exists():
        return []
    sat = {r["instance"] for r in csv.DictReader(open(root / "ground_truth.csv")) if r["result"] == "sat"}
    rows = [r for r in csv.reader(open(root / "instances.csv"))]
    out = []
    for onnx_path, vnnlib_path, _ in rows:
        name = f"{onnx_path.split('/')[-1].removesuffix('.onnx')}-{vnnlib_path.split('/')[-1].removesuffix('.vnnlib')}"
        if name in sat:
            out.append((str(root / onnx_path), str(root / vnnlib_path)))
    return out


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="the LP's edit is found in ~1 s, but CROWN with input splitting over a "
                   "784-input box often cannot verify it within 4,096 sub-boxes (NOT_CERTIFIED); needs the "
                   "last-layer box proof of the written weights as a second proof (issue 20, remaining)")
@pytest.mark.parametrize("onnx_path,vnnlib_path", sat_instances())
def test_mnist_fc_sat_instance_is_edited(onnx_path, vnnlib_path):
    net = load_onnx(onnx_path)
    result = edit(net.module, parse_vnnlib(vnnlib_path), input_shape=net.input_shape, tighten=2,
                  check=CheckOptions(time_limit=60.0))
    assert result.status is EditStatus.EDITED, result.reason
