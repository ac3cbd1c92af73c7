"""``lirpa-lid project``: a model's weights projected into a certified domain, checked, and written.

The projection is the domain's own (:meth:`~lirpa_lid.domains.WeightDomain.project_`: for an orthotope the
Euclidean projection, an element-wise clamp). The result must pass ``verify-update`` before anything is
written; an ONNX output is read back and checked again (covered by the certificate when the model came
from ONNX, the same outputs otherwise), and removed if it fails.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lirpa_lid.cli.common import add_output_flags, exit_code, load_model_and_certificate, print_json
from lirpa_lid.errors import InputError

DESCRIPTION = ("Clamp the weights of MODEL (.onnx, or a .pt/.pth state dict with --config) into the certified "
               "domain of CERT (the Euclidean projection onto the box), check the result with verify-update and "
               "write it: ONNX or a PyTorch state dict, by the extension of OUT. Exit 1 (nothing written) if the "
               "certificate cannot cover the model, e.g. because parameters outside the domain changed.")
FORMATS = (".onnx", ".pt", ".pth")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``project`` sub-command and its options."""
    p = sub.add_parser("project", help="project a model's weights into a certified domain and write it",
                       description=DESCRIPTION)
    p.add_argument("model", help="the (updated) model: .onnx, or .pt/.pth state dict (with --config)")
    p.add_argument("certificate", help="certificate JSON (certificate.json, with certificate.domain.pt beside it)")
    p.add_argument("-o", "--output", required=True, help="output model: .onnx or .pt/.pth")
    p.add_argument("--config", default=None, help="specification file whose model section gives the architecture "
                                                  "of a state dict")
    add_output_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the output path, project, verify, write; print PASS / FAIL (or JSON)."""
    import copy

    from lirpa_lid.certificate import verify_update

    out = _output_path(args.output)
    loaded, cert = load_model_and_certificate(args.model, args.certificate, args.config)
    model = copy.deepcopy(loaded.module)
    distance = cert.domain.distance(model)
    cert.domain.project_(model)
    reasons = list(verify_update(model, cert).reasons)
    if not reasons:
        reasons = _write(model, out, loaded, cert)
    ok = not reasons
    report = {"certificate": str(args.certificate), "model": str(args.model), "output": str(out),
              "distance_moved": distance, "ok": ok, "reasons": reasons}
    if args.json:
        print_json(report)
    elif not args.quiet:
        _print_verdict(ok, reasons, distance, out)
    return exit_code(ok)


def _output_path(output: str) -> Path:
    out = Path(output)
    if out.suffix.lower() not in FORMATS:
        raise InputError(f"{out}: the output must end in .onnx (ONNX) or .pt / .pth (PyTorch state dict)")
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: directory {out.parent} does not exist")
    return out


def _write(model, out: Path, loaded, cert) -> list[str]:
    """Write the projected model; the reasons it is not covered once written (empty: fine)."""
    if out.suffix.lower() == ".onnx":
        problem = _check_export(model, out, _input_shape(loaded, cert), cert, loaded.record.get("format"))
        if problem:
            out.unlink(missing_ok=True)
            return [problem]
        return []
    _save_state_dict(model, out)
    return []


def _save_state_dict(model, out: Path) -> None:
    import io

    import torch

    from lirpa_lid.files import write_bytes_atomic

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    write_bytes_atomic(out, buf.getvalue())


def _input_shape(loaded, cert) -> tuple[int, ...]:
    shape = loaded.input_shape or (cert.model or {}).get("input_shape") or cert.spec.get("input_shape")
    if not shape:
        raise InputError("the model's input shape is unknown; set model.input_shape in the configuration")
    return tuple(int(d) for d in shape)


def _check_export(model, out: Path, input_shape: tuple[int, ...], cert, source_format: str | None) -> str | None:
    """Write ``model`` as ONNX and read it back: a model that came from ONNX must be covered by the
    certificate as read (same parameter names); any other must compute the same outputs. Returns
    the problem, or None."""
    import torch

    from lirpa_lid.certificate import verify_update
    from lirpa_lid.models.onnx import load_onnx, save_onnx

    save_onnx(model, out, input_shape)
    again = load_onnx(out).module
    if source_format == "onnx":
        verdict = verify_update(again, cert)
        return None if verdict.ok else "the written ONNX file is not covered: " + "; ".join(verdict.reasons)
    x = torch.randn(64, *input_shape, generator=torch.Generator().manual_seed(0))
    p = next(model.parameters())
    with torch.no_grad():
        a, b = model(x.to(p.dtype)).double(), again(x.to(p.dtype)).double()
    if not torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(a.abs().max().clamp(min=1))):
        return f"the written ONNX file computes different outputs (max difference {float((a - b).abs().max()):.3g})"
    return None


def _print_verdict(ok: bool, reasons: list[str], distance: float, out: Path) -> None:
    if ok:
        print(f"PASS: projected into the certified domain (moved {distance:.6g} in L2); wrote {out}")
        return
    print("FAIL: the projected model is not covered by the certificate; nothing written")
    for r in reasons:
        print(f"  - {r}")
