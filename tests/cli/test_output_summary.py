"""The list of written files stays one short line however many files a run writes."""
from pathlib import Path

from lirpa_lid.cli.certify import written_summary


def test_a_few_files_are_listed():
    out = Path("run")
    files = [out / "certificate.json", out / "results.json"]
    assert written_summary(files, out) == "wrote run/certificate.json, run/results.json"


def test_many_files_are_counted_per_folder():
    out = Path("run")
    files = [out / "certificate.json", out / "results.json", out / "model.onnx"]
    files += [out / "vnnlib" / f"item_{i:05d}.vnnlib" for i in range(2735)]
    line = written_summary(files, out)
    assert line.startswith("wrote 2738 files under run/") and "2735 in vnnlib/" in line and "3 at the top" in line
    assert len(line) < 200 and "data.end" in line
