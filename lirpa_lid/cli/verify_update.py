"""``lirpa-lid verify-update``: PASS / FAIL — is a model covered by a certificate?

Covered means: the model's weights lie in the certified domain, everything outside the domain (other
parameters, buffers, architecture) is the certified model's, and the certificate files are intact.
``--recheck`` also recomputes the certified count with the recorded bound method (for certified accuracy
and local robustness on the held-out items of ``--config``; for VNN-LIB on the recorded property files,
whose SHA-256 must match).
"""
from __future__ import annotations

import argparse

from lirpa_lid.cli.common import add_data_dir_flag, add_output_flags, exit_code, load_model_and_certificate, print_json
from lirpa_lid.errors import InputError

DESCRIPTION = ("Check that MODEL lies in the certified domain of CERT and that everything outside the domain "
               "(other parameters, buffers, architecture) is the certified model's, and that the certificate "
               "files are intact. --recheck also recomputes the certified count with the recorded bound method. "
               "Exit 0: PASS; 1: FAIL.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``verify-update`` sub-command and its options."""
    p = sub.add_parser("verify-update", help="check that a model is covered by a certificate (PASS/FAIL)",
                       description=DESCRIPTION)
    p.add_argument("model", help="the model: .onnx, or .pt/.pth state dict (with --config)")
    p.add_argument("certificate", help="certificate JSON")
    p.add_argument("--config", default=None, help="specification file (architecture of a state dict; held-out "
                                                  "items for --recheck)")
    p.add_argument("--recheck", action="store_true", help="recompute the bounds (VNN-LIB: re-read the recorded "
                                                         "files and check their SHA-256)")
    add_data_dir_flag(p)
    add_output_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify (and maybe recheck) the model against the certificate; print PASS / FAIL with the reasons."""
    from lirpa_lid.certificate import verify_update

    loaded, cert = load_model_and_certificate(args.model, args.certificate, args.config)
    reasons = list(verify_update(loaded.module, cert).reasons)
    details = {}
    if args.recheck:
        again = _recheck(cert, loaded.module, args)
        reasons += [f"recheck: {r}" for r in again.reasons]
        details = again.details
    ok = not reasons
    if args.json:
        print_json({"ok": ok, "reasons": reasons, "recheck": details or None, "statement": cert.statement},
                   default=str)
    elif not args.quiet:
        print("PASS" if ok else "FAIL")
        if ok:
            print(f"  {cert.summary()}")
        for r in reasons:
            print(f"  - {r}")
    return exit_code(ok)


def _recheck(cert, model, args: argparse.Namespace):
    """Recompute the certificate's count; held-out items come from ``--config`` (not needed for VNN-LIB)."""
    from lirpa_lid.certificate import recheck

    data = None
    if cert.kind != "vnnlib":
        if args.config is None:
            raise InputError("--recheck of a certified-accuracy / local-robustness certificate needs --config "
                             "(the held-out items come from the specification file)")
        from lirpa_lid.pipeline.config import load_config
        from lirpa_lid.pipeline.problems import build_problem
        data = build_problem(load_config(args.config), args.data_dir).held_out
    return recheck(cert, model, data)
