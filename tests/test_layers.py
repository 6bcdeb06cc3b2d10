"""Layers import one way (docs/architecture.md, "Layers and shared code"): ``admc`` (core) imports
nothing from ``extractors`` or ``app``; the commands that need extractors live in
``extractors.dataset.commands``, and ``app.commands`` composes the ``admc`` console script; PyAV decodes media in one
module, ``extractors.media``."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (lazy imports count), including
    ``importlib.import_module("...")`` and ``__import__("...")`` with a literal name."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if fname in ("import_module", "__import__"):
                names.add(node.args[0].value)
    return names


@pytest.mark.parametrize("package, forbidden", [("admc", ("extractors", "app")), ("extractors", ("app",))])
def test_lower_layers_never_import_upper_ones(package, forbidden):
    files = sorted((ROOT / package).rglob("*.py"))
    assert len(files) > 5
    bad = [f"{f.relative_to(ROOT)} imports {m}" for f in files for m in sorted(imported_modules(f))
           if m.split(".")[0] in forbidden]
    assert not bad, bad


def test_the_extractors_parts_import_one_way():
    """extractors.models (model wrappers) <- extractors.live (front ends, health, window) <-
    extractors.dataset (manifests, extraction, engines): no part imports a later one."""
    order = {"models": 0, "live": 1, "dataset": 2}
    assert {p.name for p in (ROOT / "extractors").iterdir() if p.is_dir() and p.name in order} == set(order)
    bad = []
    for part, rank in order.items():
        for f in sorted((ROOT / "extractors" / part).rglob("*.py")):
            for m in sorted(imported_modules(f)):
                p = m.split(".")
                if p[0] == "extractors" and len(p) > 1 and order.get(p[1], -1) > rank:
                    bad.append(f"{f.relative_to(ROOT)} imports {m}")
    assert not bad, bad


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def import_cycles(package: str) -> list[list[str]]:
    """Every loop of imports between the modules of ``package`` (imports inside functions count,
    as do imports of a package's ``__init__``), as module names; none when the package layers."""
    files = {_module_name(f): f for f in (ROOT / package).rglob("*.py")}
    graph = {m: {i for i in imported_modules(f) if i in files and i != m} for m, f in files.items()}
    # strongly connected components (Tarjan), each of two or more modules a cycle
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("package", ["admc", "extractors", "app"])
def test_no_import_cycles_inside_a_package(package):
    assert import_cycles(package) == []


def test_the_cycle_finder_sees_a_cycle_through_a_lazy_import(tmp_path, monkeypatch):
    pkg = tmp_path / "pkgx"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import pkgx.b\n")
    (pkg / "b.py").write_text("def f():\n    from pkgx.c import g\n")
    (pkg / "c.py").write_text("from pkgx.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_cycles("pkgx") == [["pkgx.a", "pkgx.b", "pkgx.c"]]


def test_the_import_walker_sees_lazy_and_dynamic_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from extractors.models.text import TextEncoder\n"
                 "def g():\n    import app.ui\n    importlib.import_module('extractors.models.face')\n")
    assert imported_modules(f) == {"extractors.models.text", "app.ui", "extractors.models.face"}


def test_admc_imports_without_extractors_or_app_loaded():
    """Importing the core CLI and the importers loads neither upper package."""
    code = ("import sys, admc.cli, admc.importers.mintrec, admc.config, admc.run_schema; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('extractors', 'app')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_console_script_is_the_composed_command_line():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"admc": "app.commands:main"}
    # the installed script (scripts/setup.sh: pip install -e) runs the same one
    script = Path(sys.executable).with_name("admc")
    if not script.is_file():
        pytest.skip(f"no admc script beside {sys.executable}")
    assert "from app.commands import main" in script.read_text(), \
        "stale install: run scripts/setup.sh (or pip install -e .) again"


def test_composed_parser_has_every_command_and_the_core_one_only_its_own():
    from admc.cli import build_parser as core
    from app.commands import build_parser as full

    def commands(p):
        (sub,) = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
        return list(sub.choices)

    assert commands(full()) == ["train", "calibrate", "eval", "bench", "info", "import", "extract", "manifest"]
    assert commands(core()) == ["train", "calibrate", "eval", "bench", "info", "import"]
    args = full().parse_args(["import", "mintrec", "--root", "r", "--out", "o"])
    assert callable(args.make_text_encoder)  # the text encoder comes from the layer above
    assert getattr(core().parse_args(["import", "mintrec", "--root", "r", "--out", "o"]),
                   "make_text_encoder", None) is None


def test_core_cli_without_the_text_encoder_asks_for_text_features(tmp_path, capsys):
    from admc.cli import main

    assert main(["import", "mintrec", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--text-features is required" in err


@pytest.mark.parametrize("module", ["app.commands", "admc.cli"])
def test_python_dash_m_runs_the_command_line(module):
    p = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and "train" in p.stdout
    assert ("extract" in p.stdout) == (module == "app.commands")


def test_build_starter_uses_with_overrides_not_the_cli():
    for f in sorted((ROOT / "scripts" / "starter").glob("*.py")) + [ROOT / "scripts" / "build_starter.py"]:
        src = f.read_text()
        assert "argparse.Namespace" not in src and "build_config" not in src, f
    from scripts.starter import training as mod
    from scripts.starter.recipe import TRAIN_SET

    assert 0 < mod.model_megabytes(TRAIN_SET) < 30
    from admc.overrides import OverrideError

    with pytest.raises(OverrideError, match="adn.epochs: expected int"):
        mod.model_megabytes(["adn.epochs=x"])


def _opens_media_for_reading(path: Path) -> bool:
    """Whether the file calls ``av.open`` other than to write (mode "w")."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "open" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "av":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            if not (isinstance(mode, ast.Constant) and mode.value == "w"):
                return True
    return False


def test_media_files_are_decoded_in_one_module():
    readers = sorted(str(f.relative_to(ROOT)) for pkg in ("admc", "extractors", "app")
                     for f in (ROOT / pkg).rglob("*.py") if _opens_media_for_reading(f))
    assert readers == ["extractors/media.py"]


def test_benchmarks_and_scripts_import_without_sys_path_edits():
    """benchmarks/ and scripts/ are packages of the editable install: their helpers (machine_info,
    the starter build) are imported by name, never by editing sys.path."""
    edits = [f"{f.relative_to(ROOT)}:{i}" for d in ("benchmarks", "scripts") for f in sorted((ROOT / d).glob("*.py"))
             for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if "sys.path" in line]
    assert edits == []
    code = "import benchmarks.machine_info, scripts.build_starter, scripts.starter.build; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.strip() == "ok"
