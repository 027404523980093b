"""What the installed package is: one version everywhere, typed, and stubs that match the
compiled modules (so type checkers and IDEs see the kernels' real signatures)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import fastopt
from fastopt._kernels import built_variants, kernels

PACKAGE = Path(fastopt.__file__).parent
COMPILED = [f"fastopt._kernels.{variant}" for variant in built_variants()]
# A variant this CPU cannot run dies on an illegal instruction when imported: its stub is read,
# its names are compared only where it runs.
RUNNABLE = [f"fastopt._kernels.{v}" for v in kernels.cpu_variants() if v in built_variants()]


def test_one_version_everywhere(tmp_path):
    assert fastopt.__version__ == version("fastopt") == fastopt.config()["fastopt"]
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    out = subprocess.run(
        [sys.executable, "-m", "fastopt", "--version"], capture_output=True, text=True,
        cwd=tmp_path, env=env, check=True,
    ).stdout
    assert out.strip() == f"fastopt {fastopt.__version__}"


def test_config_says_how_it_was_built():
    cfg = fastopt.config()
    assert cfg["openmp"] is fastopt.OPENMP
    assert cfg["threading"] == ("OpenMP" if fastopt.OPENMP else "serial (built without OpenMP)")
    assert Path(cfg["location"]) == PACKAGE


def test_typed():
    assert (PACKAGE / "py.typed").is_file()


def _stub(module_name: str) -> ast.Module:
    stub = Path(importlib.util.find_spec(module_name).origin).parent / (module_name.rsplit(".", 1)[1] + ".pyi")
    assert stub.is_file(), f"{module_name} has no stub {stub.name} beside it"
    tree = ast.parse(stub.read_text())
    # The SIMD variants are one source: their stubs re-export the baseline's.
    if [ast.dump(node) for node in tree.body] == [ast.dump(ast.parse("from .baseline import *").body[0])]:
        return _stub("fastopt._kernels.baseline")
    return tree


def _params(node: ast.FunctionDef) -> list[str]:
    names = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
    return names[1:] if names and names[0] == "self" else names


def _public(names):
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("module_name", COMPILED)
def test_every_compiled_module_has_a_stub(module_name):
    assert any(isinstance(node, (ast.FunctionDef, ast.ClassDef)) for node in _stub(module_name).body)


@pytest.mark.parametrize("module_name", RUNNABLE)
def test_stub_matches_compiled_module(module_name):
    module = importlib.import_module(module_name)
    tree = _stub(module_name)
    stubbed = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stubbed[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stubbed[node.target.id] = node
    runtime = _public(vars(module)) - {
        name for name, obj in vars(module).items() if inspect.ismodule(obj)
    }
    assert runtime == _public(stubbed), (
        f"in the module, not the stub: {sorted(runtime - set(stubbed))}; "
        f"in the stub, not the module: {sorted(_public(stubbed) - runtime)}"
    )
    for name in sorted(runtime):
        obj, node = getattr(module, name), stubbed[name]
        if inspect.isclass(obj):
            assert isinstance(node, ast.ClassDef), name
            members = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
            assert _public(vars(obj)) == _public(members), name
            for member, member_node in members.items():
                if member.startswith("_") or not callable(getattr(obj, member)):
                    continue
                params = list(inspect.signature(getattr(obj, member)).parameters)
                assert _params(member_node) == [p for p in params if p != "self"], (
                    f"{name}.{member}")
        elif callable(obj):
            assert isinstance(node, ast.FunctionDef), name
            assert _params(node) == list(inspect.signature(obj).parameters), name


def test_torch_is_needed_only_by_fastopt_torch(tmp_path):
    """Without torch, fastopt imports and fastopt.torch says what it needs."""
    code = ("import sys; sys.modules['torch'] = None\n"  # as if torch were not installed
            "import fastopt, fastopt.optim, fastopt.lr_scheduler, fastopt.bench\n"
            "try:\n    import fastopt.torch\nexcept ImportError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env, check=True).stdout
    assert "fastopt.torch needs PyTorch" in out
