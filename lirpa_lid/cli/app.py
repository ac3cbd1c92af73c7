"""Command line: ``lirpa-lid <command> ...``.

Commands: ``certify`` (specification file → LID → certificate files), ``bounds`` (margin bounds of a
model over a weight box), ``project`` (a model into a certified domain), ``verify-update`` (PASS/FAIL
with reasons), ``demo`` and ``reproduce`` (a script of ``reproductions/``).

Exit codes: 0 success; 1 ran but something is not certified (or an update is rejected); 2 bad input
(any :class:`~lirpa_lid.errors.LirpaLidError`: one message line on stderr, no output files).

Adding a command: write ``_add_<name>(subparsers)`` that creates its parser and sets
``func=<callable(args) -> int>``, and list it in ``COMMANDS``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lirpa_lid.errors import InputError, LirpaLidError

EXIT_OK, EXIT_NOT_CERTIFIED, EXIT_BAD_INPUT = 0, 1, 2
REPRODUCTIONS_ENV = "LIRPA_LID_REPRODUCTIONS"


def _log(args: argparse.Namespace) -> Callable[..., None]:
    """Messages to stderr, unless --quiet or --json."""
    if getattr(args, "quiet", False) or getattr(args, "json", False):
        return lambda *a, **k: None
    return lambda *a, **k: print(*a, file=sys.stderr, **k)


def _progress(args: argparse.Namespace) -> bool:
    return not (getattr(args, "quiet", False) or getattr(args, "json", False))


def _output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars and no messages")
    p.add_argument("--json", action="store_true", help="print machine-readable results (JSON) on stdout")


def _seed(cfg) -> None:
    """α,β-CROWN seeds torch, numpy and random from general.seed before loading; so does lirpa-lid."""
    import random

    import numpy as np
    import torch
    random.seed(cfg.general.seed)
    np.random.seed(cfg.general.seed)
    torch.manual_seed(cfg.general.seed)


def _data_dir_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="data directory (default: $LIRPA_LID_DATA, else "
                                                     "../shared/data next to a source checkout); {data_dir} in "
                                                     "specification files")


# ------------------------------------------------------------------------------- certify
def _run_certify(args: argparse.Namespace) -> int:
    from lirpa_lid.pipeline.config import load_config
    from lirpa_lid.pipeline.instances import (
        build_instances,
        read_instances,
        run_instances,
        run_problem,
        write_instances,
        write_outcome,
    )
    from lirpa_lid.pipeline.problems import build_problem

    log = _log(args)
    cfg = load_config(args.config)
    _seed(cfg)

    def note_ignored() -> None:  # after validation: bad input gives one line on stderr, nothing else
        if cfg.ignored:
            log(f"note: ignoring alpha,beta-CROWN settings that do not apply to lirpa_lid: {', '.join(cfg.ignored)}")
    outdir = Path(args.outdir) if args.outdir else Path(f"{cfg.name}-lid")
    csv_path = None
    if args.instances is not None:
        if cfg.model.onnx_path or cfg.model.name or cfg.specification.vnnlib_path or cfg.is_batch:
            raise InputError("--instances takes models and properties from the csv; the configuration must not set "
                             "model.name, model.onnx_path, specification.vnnlib_path or general.csv_name")
        csv_path, root = Path(args.instances), None
    elif cfg.is_batch:
        csv_path = cfg.resolve(cfg.general.csv_name, args.data_dir)
        root = cfg.root(args.data_dir)  # as in alpha,beta-CROWN, the csv's rows are relative to root_path
    if csv_path is not None:
        instances = read_instances(csv_path, root)
        if cfg.data.start or cfg.data.end is not None:  # alpha,beta-CROWN: data.start/end select csv rows
            instances = instances[cfg.data.start:cfg.data.end]
            if not instances:
                raise InputError(f"data.start/end select no rows of {csv_path}")
        problems = build_instances(cfg, instances, progress=False)  # validates every row first
        note_ignored()
        outcomes = run_instances(problems, progress=_progress(args), log=log)
        written = write_instances(outcomes, instances, outdir)
        summaries = [o.summary() for o in outcomes]
        if args.json:
            print(json.dumps({"outdir": str(outdir), "instances": summaries}, indent=2))
        elif not args.quiet:
            print((outdir / "summary.md").read_text(), end="")
            print(f"\nwrote {len(written)} files under {outdir}/")
        return EXIT_OK if all(o.ok for o in outcomes) else EXIT_NOT_CERTIFIED

    problem = build_problem(cfg, args.data_dir, progress=_progress(args))
    note_ignored()
    log(f"{problem.name}: {problem.spec!r}; certified value at width 0: {problem.base_value:.4f}")
    outcome = run_problem(problem)
    written = write_outcome(outcome, outdir)
    if args.json:
        print(json.dumps({"outdir": str(outdir), **outcome.summary()}, indent=2))
    elif not args.quiet:
        print(f"{outcome.status}: {outcome.message}")
        print(f"wrote {', '.join(str(p) for p in written)}")
    return EXIT_OK if outcome.ok else EXIT_NOT_CERTIFIED


def _add_certify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certify", help="compute the LID of a specification file and write its certificate",
                       description="Read a YAML specification file (alpha,beta-CROWN's model / data / "
                                   "specification sections plus a lid section), grow a certified weight domain "
                                   "(LID) around the model's weights and certify it: on held-out items for "
                                   "certified accuracy and local robustness (finite-sample bound), "
                                   "deterministically for VNN-LIB properties. Writes certificate.json + "
                                   "certificate.domain.pt, results.json/md and, for VNN-LIB and local "
                                   "robustness, model.onnx + vnnlib/ + instances.csv for alpha,beta-CROWN. "
                                   "With general.csv_name or --instances: one directory per instances.csv row "
                                   "and summary.md/json. Exit 0: certified; 1: not certified (or below "
                                   "lid.required); 2: bad input.")
    p.add_argument("config", help="YAML specification file (see specs/)")
    p.add_argument("-o", "--outdir", default=None, help="output directory (default: ./<config name>-lid)")
    p.add_argument("--instances", default=None, metavar="CSV",
                   help="run the (onnx, vnnlib, timeout) rows of a VNN-COMP instances.csv with the configuration's "
                        "lid settings (paths relative to the csv); the timeout bounds each LID's growth")
    _data_dir_flag(p)
    _output_flags(p)
    p.set_defaults(func=_run_certify)


# ------------------------------------------------------------------------------- bounds
def _param_eps(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name or not out[name] >= 0:
            raise InputError(f"--param-eps takes NAME=WIDTH with WIDTH >= 0, got {item!r}")
    return out


def _bounds_spec(args: argparse.Namespace):
    from lirpa_lid.pipeline.config import load_config, parse_config
    from lirpa_lid.pipeline.problems import load_model, load_model_file, load_spec

    if args.config is not None:
        if args.onnx or args.vnnlib:
            raise InputError("give either a specification file or --onnx/--vnnlib, not both")
        cfg = load_config(args.config)
        if cfg.is_batch or cfg.settings_only:
            raise InputError("bounds takes one model and specification; this file is an instances.csv batch run "
                             "or holds settings only")
        _seed(cfg)
        loaded = load_model(cfg, args.data_dir)
        return loaded, load_spec(cfg, loaded, args.data_dir)
    if not (args.onnx and args.vnnlib):
        raise InputError("bounds needs a specification file, or --onnx MODEL.onnx with --vnnlib PROPERTY.vnnlib")
    cfg = parse_config({"model": {"onnx_path": str(Path(args.onnx).resolve())},
                        "specification": {"vnnlib_path": [str(Path(v).resolve()) for v in args.vnnlib]}})
    loaded = load_model_file(args.onnx)
    return loaded, load_spec(cfg, loaded, args.data_dir)


def _run_bounds(args: argparse.Namespace) -> int:
    import torch

    from lirpa_lid.bounds.resolve import bounded_network
    from lirpa_lid.domains.orthotope import Orthotope
    from lirpa_lid.specification.base import BoundQuery

    loaded, spec = _bounds_spec(args)
    model = loaded.module
    per = _param_eps(args.param_eps or [])
    names = [n for n, _ in model.named_parameters()]
    unknown = sorted(set(per) - set(names))
    if unknown:
        raise InputError(f"--param-eps names unknown parameter(s) {unknown}; the model has {names}")
    if args.eps < 0:
        raise InputError(f"--eps must be >= 0, got {args.eps}")
    params = dict(model.named_parameters())
    offsets = {}
    for n in names:
        w = per.get(n, args.eps)
        offsets[n] = (params[n].detach().abs() * w) if args.relative else torch.full_like(params[n].detach(), w)
    domain = Orthotope.around(model, names, lower=offsets, upper=offsets)
    net = bounded_network(model, names, args.backend)
    dtype = torch.float64 if net.follows_input_dtype else None
    if args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    full_query: BoundQuery = spec.query(dtype)
    limit = min(len(full_query), args.limit)
    query = full_query.part(slice(0, limit))
    dom = domain.to(dtype=dtype) if dtype is not None else domain
    with torch.no_grad():
        b = net.compute_bounds(query.x, dom, C=query.C, method=args.method, input_box=query.input_box())
    lower, upper = b.lower - query.d, b.upper - query.d
    rows = []
    for q in range(limit):
        for r in range(query.C.shape[1]):
            if not bool(query.C[q, r].any()):
                continue  # padding row of a VNN-LIB input group
            rows.append({"query": q, "row": r, "C": _row_label(query.C[q, r], float(query.d[q, r])),
                         "lower": float(lower[q, r]), "upper": float(upper[q, r])})
    report = {"kind": spec.kind, "method": args.method, "box": {"eps": args.eps, "relative": args.relative,
                                                                  "per_parameter": per},
              "mean_width": float(domain.mean_width()), "queries": limit, "rows": rows}
    if limit == len(full_query):
        report["certified"] = spec.certified(lower).tolist()
        report["hard_value"] = float(spec.hard_value(lower))
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    if not args.quiet:
        print(f"margin bounds of {spec!r}\n{args.method} over a weight box of mean width {report['mean_width']:.4g}"
              f" ({'relative ' if args.relative else ''}eps {args.eps:g}); margin > 0 means satisfied\n")
        print("| query | row | margin | lower | upper |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['query']} | {r['row']} | {r['C']} | {r['lower']:.6g} | {r['upper']:.6g} |")
        if "hard_value" in report:
            print(f"\ncertified: {sum(report['certified'])}/{len(report['certified'])} items "
                  f"(value {report['hard_value']:.4f})")
        else:
            print(f"\n(first {limit} of {len(full_query)} queries; --limit to see more)")
    return EXIT_OK


def _row_label(c, d: float) -> str:
    """``C·y − d`` as text, e.g. ``y0 - y3`` or ``-y2 + 0.5``."""
    text = ""
    for j, v in enumerate(c.tolist()):
        if v == 0:
            continue
        mag = "" if abs(v) == 1 else f"{abs(v):g}*"
        text += (("-" if v < 0 else "") if not text else (" - " if v < 0 else " + ")) + f"{mag}y{j}"
    if d:
        text += f" - {d:g}" if d > 0 else f" + {-d:g}"
    return text


def _add_bounds(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bounds", help="print margin bounds of a model over a weight box (debugging, teaching)",
                       description="Bound the specification margins C*f(x; theta) - d of a model over the weight "
                                   "box theta0 +- eps (every parameter, or per parameter), for the items of a "
                                   "specification file or a VNN-LIB property (joint input + weight box). "
                                   "Margin > 0 means satisfied everywhere in the box.")
    p.add_argument("config", nargs="?", default=None, help="YAML specification file (model, data, specification)")
    p.add_argument("--onnx", default=None, help="an ONNX model (instead of a specification file)")
    p.add_argument("--vnnlib", action="append", default=None, help="a VNN-LIB property (with --onnx; repeatable)")
    p.add_argument("--eps", type=float, default=0.0, help="half-width of the weight box for every parameter "
                                                          "(default 0: the model's own weights)")
    p.add_argument("--param-eps", action="append", metavar="NAME=WIDTH",
                   help="half-width for one parameter (repeatable; overrides --eps)")
    p.add_argument("--relative", action="store_true", help="widths relative to |theta0| (eps * |theta|)")
    p.add_argument("--method", default="CROWN", help="IBP, CROWN (default), CROWN-IBP or alpha-CROWN")
    p.add_argument("--backend", default="native", choices=["native", "auto_lirpa"], help="bound backend")
    p.add_argument("--limit", type=int, default=20, help="bound at most this many items/input boxes (default 20)")
    _data_dir_flag(p)
    _output_flags(p)
    p.set_defaults(func=_run_bounds)


# ------------------------------------------------------------------------------- project / verify-update
def _load_for_certificate(model_path: str, cert_path: str, config: str | None):
    from lirpa_lid.certificate.certify import Certificate
    from lirpa_lid.pipeline.config import load_config
    from lirpa_lid.pipeline.problems import load_model_file

    cert = Certificate.load(cert_path)
    cfg = load_config(config) if config is not None else None
    loaded = load_model_file(model_path, cfg)
    return loaded, cert


def _input_shape(loaded, cert) -> tuple[int, ...]:
    shape = loaded.input_shape or (cert.model or {}).get("input_shape") or cert.spec.get("input_shape")
    if not shape:
        raise InputError("the model's input shape is unknown; set model.input_shape in the configuration")
    return tuple(int(d) for d in shape)


def _run_project(args: argparse.Namespace) -> int:
    import copy

    import torch

    from lirpa_lid.certificate.certify import verify_update
    from lirpa_lid.files import write_bytes_atomic

    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in (".onnx", ".pt", ".pth"):
        raise InputError(f"{out}: the output must end in .onnx (ONNX) or .pt / .pth (PyTorch state dict)")
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: directory {out.parent} does not exist")
    loaded, cert = _load_for_certificate(args.model, args.certificate, args.config)
    model = copy.deepcopy(loaded.module)
    distance = cert.domain.distance(model)
    cert.domain.project_(model)
    verdict = verify_update(model, cert)
    report = {"certificate": str(args.certificate), "model": str(args.model), "output": str(out),
              "distance_moved": distance, "ok": verdict.ok, "reasons": verdict.reasons}
    if verdict.ok:
        if suffix == ".onnx":
            problem = _check_export(model, out, _input_shape(loaded, cert), cert, loaded.record.get("format"))
            if problem:
                out.unlink(missing_ok=True)
                verdict = verdict.__class__(False, [problem])
                report.update(ok=False, reasons=[problem])
        else:
            import io
            buf = io.BytesIO()
            torch.save(model.state_dict(), buf)
            write_bytes_atomic(out, buf.getvalue())
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.quiet:
        if verdict.ok:
            print(f"PASS: projected into the certified domain (moved {distance:.6g} in L2); wrote {out}")
        else:
            print("FAIL: the projected model is not covered by the certificate; nothing written")
            for r in verdict.reasons:
                print(f"  - {r}")
    return EXIT_OK if verdict.ok else EXIT_NOT_CERTIFIED


def _check_export(model, out: Path, input_shape: tuple[int, ...], cert, source_format: str | None) -> str | None:
    """Write ``model`` as ONNX and read it back: a model that came from ONNX must be covered by the
    certificate as read (same parameter names); any other must compute the same outputs. Returns
    the problem, or None."""
    import torch

    from lirpa_lid.certificate.certify import verify_update
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


def _add_project(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("project", help="project a model's weights into a certified domain and write it",
                       description="Clamp the weights of MODEL (.onnx, or a .pt/.pth state dict with --config) into "
                                   "the certified domain of CERT (the Euclidean projection onto the box), check "
                                   "the result with verify-update and write it: ONNX or a PyTorch state dict, by "
                                   "the extension of OUT. Exit 1 (nothing written) if the certificate cannot cover "
                                   "the model, e.g. because parameters outside the domain changed.")
    p.add_argument("model", help="the (updated) model: .onnx, or .pt/.pth state dict (with --config)")
    p.add_argument("certificate", help="certificate JSON (certificate.json, with certificate.domain.pt beside it)")
    p.add_argument("-o", "--output", required=True, help="output model: .onnx or .pt/.pth")
    p.add_argument("--config", default=None, help="specification file whose model section gives the architecture "
                                                  "of a state dict")
    _output_flags(p)
    p.set_defaults(func=_run_project)


def _run_verify_update(args: argparse.Namespace) -> int:
    from lirpa_lid.certificate.certify import recheck, verify_update

    loaded, cert = _load_for_certificate(args.model, args.certificate, args.config)
    verdict = verify_update(loaded.module, cert)
    reasons = list(verdict.reasons)
    details = {}
    if args.recheck:
        data = None
        if cert.kind != "vnnlib":
            if args.config is None:
                raise InputError("--recheck of a certified-accuracy / local-robustness certificate needs --config "
                                 "(the held-out items come from the specification file)")
            from lirpa_lid.pipeline.config import load_config
            from lirpa_lid.pipeline.problems import build_problem
            data = build_problem(load_config(args.config), args.data_dir).held_out
        again = recheck(cert, loaded.module, data)
        reasons += [f"recheck: {r}" for r in again.reasons]
        details = again.details
    ok = not reasons
    if args.json:
        print(json.dumps({"ok": ok, "reasons": reasons, "recheck": details or None,
                          "statement": cert.statement}, indent=2, default=str))
    elif not args.quiet:
        print("PASS" if ok else "FAIL")
        if ok:
            print(f"  {cert.summary()}")
        for r in reasons:
            print(f"  - {r}")
    return EXIT_OK if ok else EXIT_NOT_CERTIFIED


def _add_verify_update(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify-update", help="check that a model is covered by a certificate (PASS/FAIL)",
                       description="Check that MODEL lies in the certified domain of CERT and that everything "
                                   "outside the domain (other parameters, buffers, architecture) is the certified "
                                   "model's, and that the certificate files are intact. --recheck also recomputes "
                                   "the certified count with the recorded bound method. Exit 0: PASS; 1: FAIL.")
    p.add_argument("model", help="the model: .onnx, or .pt/.pth state dict (with --config)")
    p.add_argument("certificate", help="certificate JSON")
    p.add_argument("--config", default=None, help="specification file (architecture of a state dict; held-out "
                                                  "items for --recheck)")
    p.add_argument("--recheck", action="store_true", help="recompute the bounds (VNN-LIB: re-read the recorded "
                                                         "files and check their SHA-256)")
    _data_dir_flag(p)
    _output_flags(p)
    p.set_defaults(func=_run_verify_update)


# ------------------------------------------------------------------------------- demo
def _run_demo(args: argparse.Namespace) -> int:
    from lirpa_lid.pipeline.demo import DemoConfig, markdown_table, run_demo

    progress = not (args.quiet or args.json)
    config = DemoConfig.quick(progress=progress) if args.quick else DemoConfig(progress=progress)
    log = (lambda *a, **k: None) if (args.quiet or args.json) else (lambda *a, **k: print(*a, file=sys.stderr, **k))
    report = run_demo(args.outdir, config, log=log)
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.quiet:
        from lirpa_lid.datasets import blobs_tasks
        print(markdown_table(report, [t.name for t in blobs_tasks(config.seed)]), end="")
        if args.outdir:
            print(f"\nwrote {args.outdir}/results.md, results.json, certificate_task*.json and "
                  "decision_boundaries.png")
    return EXIT_OK if report["all_verified"] else EXIT_NOT_CERTIFIED


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="certified continual learning on the paper's blobs (CROWN LIDs)",
                       description="Train on three class-incremental blobs tasks with plain SGD and with SGD "
                                   "projected into CROWN-certified LIDs; print a table, write certificates and "
                                   "a figure.")
    p.add_argument("-o", "--outdir", default="demo-output", help="output directory (default: demo-output)")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no table")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="a few-second run with fewer iterations (for tests)")
    p.set_defaults(func=_run_demo)


# ------------------------------------------------------------------------------- reproduce
def reproductions_dir(override: str | os.PathLike | None = None) -> Path:
    """``--dir`` > ``$LIRPA_LID_REPRODUCTIONS`` > ``reproductions/`` of the source checkout (editable
    installs) > ``reproductions/`` of the working directory (a checkout installed with ``pip install .``)."""
    if override is not None:
        return Path(override)
    if os.environ.get(REPRODUCTIONS_ENV):
        return Path(os.environ[REPRODUCTIONS_ENV])
    checkout = Path(__file__).resolve().parents[2] / "reproductions"
    return checkout if checkout.is_dir() else Path.cwd() / "reproductions"


def _run_reproduce(args: argparse.Namespace) -> int:
    import importlib.util

    folder = reproductions_dir(args.dir)
    stem = args.name.replace("-", "_")
    if not stem.isidentifier():
        raise InputError(f"{args.name!r} is not a reproduction name (letters, digits, '-' and '_')")
    path = folder / f"{stem}.py"
    if not path.is_file():
        known = sorted(p.stem.replace("_", "-") for p in folder.glob("*.py") if not p.stem.startswith("_")) \
            if folder.is_dir() else []
        raise InputError(f"no reproduction {args.name!r}: {path} does not exist"
                         + (f"; available: {', '.join(known)}" if known else ""))
    spec = importlib.util.spec_from_file_location(f"lirpa_lid_reproduction_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main_fn = getattr(module, "main", None)
    if not callable(main_fn):
        raise InputError(f"{path} has no main(argv) function")
    code = main_fn(list(args.args))
    return EXIT_OK if code is None else int(code)


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="run a reproduction script (reproductions/NAME.py)",
                       description="Run main(argv) of reproductions/<NAME with - replaced by _>.py; arguments after "
                                   "NAME are passed through (e.g. lirpa-lid reproduce split-mnist --quick). "
                                   "Options of reproduce itself (--dir) go before NAME.")
    p.add_argument("name", help="the reproduction, e.g. split-mnist")
    p.add_argument("--dir", default=None, help=f"folder of the scripts (default: ${REPRODUCTIONS_ENV}, else "
                                               "reproductions/ of the source checkout, else of the working "
                                               "directory)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(func=_run_reproduce)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_certify, _add_bounds, _add_project, _add_verify_update, _add_demo, _add_reproduce]


def build_parser() -> argparse.ArgumentParser:
    from lirpa_lid.version import __version__
    parser = argparse.ArgumentParser(prog="lirpa-lid", description="Locally invariant domains: certified "
                                     "weight-space regions for safe model updates.")
    parser.add_argument("--version", action="version", version=f"lirpa-lid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help/--version
        return int(exc.code or 0)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except LirpaLidError as exc:
        message = " ".join(str(exc).split())  # one line
        print(f"lirpa-lid {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `lirpa-lid certify ... --json | head`: stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_NOT_CERTIFIED


if __name__ == "__main__":
    sys.exit(main())
