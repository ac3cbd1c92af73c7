"""``lirpa-lid bounds``: margin bounds of a model over a weight box (debugging, teaching).

The box is θ₀ ± ε on every parameter (``--eps``, or per parameter with ``--param-eps``; ``--relative``
scales by ``|θ₀|``). The margins ``C·f(x; θ) − d`` of the first ``--limit`` items of a specification file
(or of VNN-LIB properties, joint input + weight box) are bounded by one bound propagation and printed as
a table (margin > 0 means satisfied everywhere in the box), or as JSON. The table is the command's
result: ``--quiet`` does not suppress it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lirpa_lid.cli.common import ExitCode, add_data_dir_flag, add_output_flags, print_json, seed
from lirpa_lid.errors import InputError

DESCRIPTION = ("Bound the specification margins C*f(x; theta) - d of a model over the weight box theta0 +- eps "
               "(every parameter, or per parameter), for the items of a specification file or a VNN-LIB "
               "property (joint input + weight box). Margin > 0 means satisfied everywhere in the box.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``bounds`` sub-command and its options."""
    p = sub.add_parser("bounds", help="print margin bounds of a model over a weight box (debugging, teaching)",
                       description=DESCRIPTION)
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
    add_data_dir_flag(p)
    add_output_flags(p, quiet="no progress bars and no messages (the table of bounds is still printed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load, build the weight box, bound the first ``--limit`` queries, print the table or JSON."""
    loaded, spec = _load(args)
    model = loaded.module
    per = _param_eps(args.param_eps or [])
    domain = _weight_box(model, args, per)
    net, dtype = _network(model, domain.names, args.backend)
    if args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    full_query = spec.query(dtype)
    limit = min(len(full_query), args.limit)
    query = full_query.part(slice(0, limit))
    lower, upper = _bound(net, query, domain, dtype, args.method)
    report = _report(spec, domain, args, per, _rows(query, lower, upper), limit)
    if limit == len(full_query):
        report["certified"] = spec.certified(lower).tolist()
        report["hard_value"] = float(spec.hard_value(lower))
    if args.json:
        print_json(report)
    else:
        _print_table(report, spec, args, len(full_query))
    return ExitCode.OK


# ------------------------------------------------------------------------------- steps
def _load(args: argparse.Namespace):
    """The model and the whole specification: from a specification file, or ``--onnx`` + ``--vnnlib``."""
    from lirpa_lid.pipeline.config import load_config, parse_config
    from lirpa_lid.pipeline.problems import load_model, load_model_file, load_spec

    if args.config is not None:
        if args.onnx or args.vnnlib:
            raise InputError("give either a specification file or --onnx/--vnnlib, not both")
        cfg = load_config(args.config)
        if cfg.is_batch or cfg.settings_only:
            raise InputError("bounds takes one model and specification; this file is an instances.csv batch run "
                             "or holds settings only")
        seed(cfg)
        loaded = load_model(cfg, args.data_dir)
        return loaded, load_spec(cfg, loaded, args.data_dir)
    if not (args.onnx and args.vnnlib):
        raise InputError("bounds needs a specification file, or --onnx MODEL.onnx with --vnnlib PROPERTY.vnnlib")
    cfg = parse_config({"model": {"onnx_path": str(Path(args.onnx).resolve())},
                        "specification": {"vnnlib_path": [str(Path(v).resolve()) for v in args.vnnlib]}})
    loaded = load_model_file(args.onnx)
    return loaded, load_spec(cfg, loaded, args.data_dir)


def _param_eps(items: list[str]) -> dict[str, float]:
    """``--param-eps NAME=WIDTH`` options as ``{NAME: WIDTH}`` (WIDTH >= 0)."""
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


def _weight_box(model, args: argparse.Namespace, per: dict[str, float]):
    """The orthotope θ₀ ± width over every parameter (``per`` overrides ``--eps``; relative: × ``|θ₀|``)."""
    import torch

    from lirpa_lid.domains import Orthotope

    names = [n for n, _ in model.named_parameters()]
    unknown = sorted(set(per) - set(names))
    if unknown:
        raise InputError(f"--param-eps names unknown parameter(s) {unknown}; the model has {names}")
    if args.eps < 0:
        raise InputError(f"--eps must be >= 0, got {args.eps}")
    offsets = {}
    for n, p in model.named_parameters():
        w = per.get(n, args.eps)
        offsets[n] = (p.detach().abs() * w) if args.relative else torch.full_like(p.detach(), w)
    return Orthotope.around(model, names, lower=offsets, upper=offsets)


def _network(model, names: list[str], backend: str):
    """The bounded network and the dtype its queries need (float64 where the backend follows the input's
    dtype; None: the model's own)."""
    import torch

    from lirpa_lid.bounds.resolve import bounded_network

    net = bounded_network(model, names, backend)
    return net, (torch.float64 if net.follows_input_dtype else None)


def _bound(net, query, domain, dtype, method: str):
    """Lower and upper bounds of the margins ``C·f − d`` of ``query``, each ``[queries, rows]``."""
    import torch

    dom = domain.to(dtype=dtype) if dtype is not None else domain
    with torch.no_grad():
        b = net.compute_bounds(query.x, dom, C=query.C, method=method, input_box=query.input_box())
    return b.lower - query.d, b.upper - query.d


def _rows(query, lower, upper) -> list[dict]:
    """One record per specification row (padding rows of VNN-LIB input groups left out)."""
    rows = []
    for q in range(len(query)):
        for r in range(query.C.shape[1]):
            if not bool(query.C[q, r].any()):
                continue  # padding row of a VNN-LIB input group
            rows.append({"query": q, "row": r, "C": _row_label(query.C[q, r], float(query.d[q, r])),
                         "lower": float(lower[q, r]), "upper": float(upper[q, r])})
    return rows


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


def _report(spec, domain, args: argparse.Namespace, per: dict[str, float], rows: list[dict], limit: int) -> dict:
    """The JSON report (the table prints the same numbers)."""
    return {"kind": spec.kind, "method": args.method,
            "box": {"eps": args.eps, "relative": args.relative, "per_parameter": per},
            "mean_width": float(domain.mean_width()), "queries": limit, "rows": rows}


def _print_table(report: dict, spec, args: argparse.Namespace, total: int) -> None:
    """The report as a markdown table, with the certified count when every query was bounded."""
    print(f"margin bounds of {spec!r}\n{args.method} over a weight box of mean width {report['mean_width']:.4g}"
          f" ({'relative ' if args.relative else ''}eps {args.eps:g}); margin > 0 means satisfied\n")
    print("| query | row | margin | lower | upper |\n|---|---|---|---|---|")
    for r in report["rows"]:
        print(f"| {r['query']} | {r['row']} | {r['C']} | {r['lower']:.6g} | {r['upper']:.6g} |")
    if "hard_value" in report:
        print(f"\ncertified: {sum(report['certified'])}/{len(report['certified'])} items "
              f"(value {report['hard_value']:.4f})")
    else:
        print(f"\n(first {report['queries']} of {total} queries; --limit to see more)")
