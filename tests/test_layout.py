"""The package layout: import layers (each module imports only its own or lower layers), no import
cycles, the weight-domain protocol (a second domain kind defined here is certified and checked without
touching package code beyond registering it), and a certificate written before the move into
sub-packages (``fixtures/pre_layout``, made by ``make_fixture.py`` with that code) is still verified and
rechecked: the certificate file format, the domain file and the digests did not change with the layout."""
from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from torch import nn

import lirpa_lid
from lirpa_lid import Certificate, CertifiedAccuracy, certify, recheck, verify_update
from lirpa_lid.domains import Orthotope, load_domain, project, register_domain_kind

PACKAGE = Path(lirpa_lid.__file__).parent
FIXTURE = Path(__file__).parent / "fixtures" / "pre_layout"

#: DESIGN.md "Layout": each layer may import only from its own layer and the layers before it
LAYERS = [
    ["errors", "files", "digest", "progress", "rounding", "version", "models", "solvers", "datasets"],
    ["domains", "bounds.core", "specification"],
    ["bounds"],  # the backends: native/, auto_lirpa/, resolve, exact, distributed
    ["margin"],
    ["lid", "certificate", "editing"],
    ["continual"],
    ["pipeline"],
    ["cli"],
]
#: imports inside functions that are allowed, and why: only heavy or optional dependencies
LAZY_IMPORTERS = {"cli": "`lirpa-lid --help` and argument errors must not wait for torch to import"}
LAZY_TARGETS = {"models.onnx": "onnx + onnx2torch (which imports torchvision) only when an ONNX file is read"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    best, layer = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, layer = len(name), i
    if layer is None:
        raise AssertionError(f"module lirpa_lid.{module} belongs to no layer of DESIGN.md; add it to LAYERS")
    return layer


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """``(imported lirpa_lid module, line, inside a function)`` for every import in ``tree``."""
    out = []
    functions = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f)}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1] if node.level > 1 else base
                names = [".".join([*base, *([node.module] if node.module else [])])]
            elif node.module and (node.module == "lirpa_lid" or node.module.startswith("lirpa_lid.")):
                names = [node.module[len("lirpa_lid"):].lstrip(".")]
        elif isinstance(node, ast.Import):
            names = [a.name[len("lirpa_lid"):].lstrip(".") for a in node.names
                     if a.name == "lirpa_lid" or a.name.startswith("lirpa_lid.")]
        out += [(n, node.lineno, id(node) in functions) for n in names]
    return out


def _package_imports():
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if module == "":
            continue  # lirpa_lid/__init__.py: the public API re-exports every layer
        tree = ast.parse(path.read_text(), str(path))
        yield module, path, _imports(tree, module, path.name == "__init__.py")


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for module, path, imports in _package_imports():
        for target, line, _ in imports:
            if target == "":
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports the top-level package")
            elif _layer(target) > _layer(module):
                upward.append(f"{path.relative_to(PACKAGE)}:{line} (layer {_layer(module)}) imports "
                              f"lirpa_lid.{target} (layer {_layer(target)})")
    assert not upward, "\n".join(upward)


def test_imports_inside_functions_only_where_a_reason_is_given():
    lazy = [f"{path.relative_to(PACKAGE)}:{line} imports lirpa_lid.{target} inside a function"
            for module, path, imports in _package_imports() for target, line, inside in imports
            if inside and not any(module == m or module.startswith(m + ".") for m in LAZY_IMPORTERS)
            and target not in LAZY_TARGETS]
    assert not lazy, "\n".join(lazy)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for module, _, imports in _package_imports():
        graph[module] = {t for t, _, inside in imports if not inside and t and t != module}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_the_layer_test_catches_an_upward_import():
    tree = ast.parse("from lirpa_lid.certificate import certify\n")
    (target, _, _), = _imports(tree, "margin", False)
    assert _layer(target) > _layer("margin")


# ------------------------------------------------------------------------------- a second domain kind
class Ball:
    """A trivial domain kind defined outside the package: an L∞ ball of one radius around θ₀."""

    kind = "linf_ball"

    def __init__(self, reference: Mapping[str, torch.Tensor], radius: float):
        self.reference = {n: t.detach().clone() for n, t in reference.items()}
        self.radius = float(radius)

    @property
    def names(self) -> list[str]:
        return list(self.reference)

    def _box(self) -> Orthotope:
        return Orthotope(self.reference, {n: torch.full_like(t, self.radius) for n, t in self.reference.items()},
                         {n: torch.full_like(t, self.radius) for n, t in self.reference.items()})

    def center_radius(self, dtype):
        return self._box().center_radius(dtype)

    def violations(self, params, atol=0.0):
        return self._box().violations(params, atol)

    def contains(self, params, atol=0.0):
        return not self.violations(params, atol)

    def project(self, params):
        return self._box().project(params)

    def project_(self, model):
        return self._box().project_(model)

    def distance(self, params):
        return self._box().distance(params)

    def mean_width(self):
        return torch.tensor(2 * self.radius)

    def log_volume(self):
        return self._box().log_volume()

    def numel(self):
        return sum(t.numel() for t in self.reference.values())

    def sample(self, n, generator=None, corner_fraction=0.5):
        return self._box().sample(n, generator, corner_fraction)

    def to(self, dtype=None, device=None):
        return Ball({k: v.to(dtype=dtype, device=device) for k, v in self.reference.items()}, self.radius)

    def detach(self):
        return self

    def state_dict(self):
        return {"reference": self.reference, "radius": torch.tensor(self.radius, dtype=torch.float64)}

    @classmethod
    def from_state_dict(cls, state):
        return cls(state["reference"], float(state["radius"]))


def test_a_domain_kind_defined_outside_the_package_is_certified_and_checked(tmp_path):
    register_domain_kind(Ball)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.randn(64, 2, dtype=torch.float64)
    y = model(x).argmax(1)
    ball = Ball(dict(model.named_parameters()), 1e-3)
    spec = CertifiedAccuracy(x, y, 3, 0.5)
    cert = certify(model, ball, spec, "CROWN")
    assert cert.k == certify(model, ball._box(), spec, "CROWN").k > 32  # the same set, bounded the same way
    cert.save(tmp_path / "cert.json")
    loaded = Certificate.load(tmp_path / "cert.json")
    assert isinstance(loaded.domain, Ball) and loaded.domain.radius == 1e-3
    assert isinstance(load_domain(tmp_path / "cert.domain.pt"), Ball)
    assert verify_update(model, loaded, (x, y))
    assert recheck(loaded, model, (x, y))
    moved = {n: p.detach() + 0.01 for n, p in model.named_parameters()}
    assert project(moved, [loaded.domain]).distance > 0
    with torch.no_grad():
        model[0].weight.add_(0.01)
    verdict = verify_update(model, loaded, (x, y))
    assert not verdict and any("not in the certified domain" in r for r in verdict.reasons)


# ------------------------------------------------------------------------------- pre-layout fixture
def _fixture_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 6)).double()
    model.load_state_dict(torch.load(FIXTURE / "model.pt"))
    return model


def _held_out() -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.load(FIXTURE / "held_out.pt")
    return data["x"], data["y"]


def test_pre_layout_certificate_verifies_and_rechecks():
    model, data = _fixture_model(), _held_out()
    cert = Certificate.load(FIXTURE / "certificate.json")
    assert (cert.k, cert.n, cert.method) == (76, 93, "CROWN")
    assert isinstance(cert.domain, Orthotope)
    assert verify_update(model, cert, data)
    verdict = recheck(cert, model, data)
    assert verdict, verdict.reasons
    assert verdict.details["k"] == 76


def test_pre_layout_certificate_rejects_a_model_outside_its_domain():
    model = _fixture_model()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    verdict = verify_update(model, FIXTURE / "certificate.json", _held_out())
    assert not verdict and any("not in the certified domain" in r for r in verdict.reasons)


@pytest.mark.parametrize("name", sorted(set(lirpa_lid.__all__)))
def test_every_public_name_imports_from_the_package(name):
    assert getattr(lirpa_lid, name) is not None
