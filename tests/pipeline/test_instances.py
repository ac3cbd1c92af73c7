"""instances.csv rows (``lirpa_lid.pipeline.instances``): names of rows and of gzip-compressed
properties, outcome statuses as they appear in the files."""
from __future__ import annotations

import gzip
import json

from lirpa_lid.pipeline.instances import read_instances, unique_names
from lirpa_lid.pipeline.outcomes import STATUSES
from lirpa_lid.specification.vnnlib.spec import VnnlibSpecification

PROPERTY = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
            "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
            "(assert (<= Y_0 Y_1))\n")


def test_a_gzip_property_is_named_like_the_plain_file(tmp_path):
    plain = tmp_path / "prop_3.vnnlib"
    plain.write_text(PROPERTY)
    packed = tmp_path / "prop_3.vnnlib.gz"
    packed.write_bytes(gzip.compress(PROPERTY.encode()))
    assert VnnlibSpecification.from_files(plain, (2,)).name == "prop_3"
    assert VnnlibSpecification.from_files(packed, (2,)).name == "prop_3"
    (tmp_path / "net.onnx").write_bytes(b"")   # read_instances only checks that the files exist
    csv_file = tmp_path / "instances.csv"
    csv_file.write_text("net.onnx,prop_3.vnnlib.gz,10\nnet.onnx,prop_3.vnnlib,10\n")
    assert [row.name for row in read_instances(csv_file)] == ["net-prop_3", "net-prop_3"]


def test_outcome_statuses_are_the_strings_of_the_files():
    assert list(STATUSES) == ["certified", "below-required", "not-certified-at-theta0", "falsified"]
    assert json.dumps({s: 1 for s in STATUSES}) == \
        '{"certified": 1, "below-required": 1, "not-certified-at-theta0": 1, "falsified": 1}'


def test_unique_names_suffix_only_the_rows_that_collide():
    names = ["net-prop", "other-prop", "net-prop"]
    unique = unique_names(names, [1, 2, 5])
    assert unique == ["net-prop-line1", "other-prop", "net-prop-line5"]
    assert unique_names(unique, [1, 2, 5]) == unique                    # idempotent on unique names
    assert unique_names(["Net-prop", "net-prop"], [1, 2]) == ["Net-prop-line1", "net-prop-line2"]  # no case
    assert unique_names(["a", "a", "a-line1"], [1, 1, 3]) == ["a-line1", "a-line1-2", "a-line1-3"]
