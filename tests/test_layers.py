"""The house's rules: imports point down (cli -> app -> library), and 0.1 names still import."""

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

import vi_vae


def test_import_vi_vae_loads_no_app_or_cli_module():
    code = "import vi_vae, sys; print(' '.join(m for m in sys.modules if m.startswith('vi_vae')))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "vi_vae.weights" in loaded and "vi_vae.estimators" in loaded
    assert not [m for m in loaded if m.startswith(("vi_vae.app", "vi_vae.cli"))], loaded


def _imports(path):
    """Modules a file imports, wherever in the file (inside functions too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


@pytest.mark.parametrize("layer", ["vi_vae.app", "vi_vae.cli"])
def test_the_library_never_imports_the_layers_above(layer):
    root = pathlib.Path(vi_vae.__file__).parent
    library = [
        path
        for path in root.rglob("*.py")
        if not path.is_relative_to(root / "app")
        and not path.is_relative_to(root / "cli")
        and path.name != "__main__.py"
    ]
    offenders = sorted(
        str(path.relative_to(root))
        for path in library
        if any(module.startswith(layer) for module in _imports(path))
    )
    assert not offenders, offenders


def test_the_app_never_imports_the_cli():
    root = pathlib.Path(vi_vae.__file__).parent / "app"
    offenders = [
        p.name for p in root.rglob("*.py") if any(m.startswith("vi_vae.cli") for m in _imports(p))
    ]
    assert not offenders, offenders


#: modules of 0.1 that moved in 0.2 and are gone in 0.3 (CHANGELOG.md)
REMOVED_MODULES = (
    "vi_vae.compare",
    "vi_vae.diagnostics",
    "vi_vae.inference_data",
    "vi_vae.config",
    "vi_vae.runs",
    "vi_vae.report",
    "vi_vae.plots",
    "vi_vae.estimators.spec",
    "vi_vae.estimators._weights",
    "vi_vae.estimators._bounds",
    "vi_vae.estimators._base",
)


@pytest.mark.parametrize("old", REMOVED_MODULES)
def test_the_0_1_module_names_are_gone(old):
    sys.modules.pop(old, None)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


def test_the_package_has_no_lazy_attributes():
    # 0.2 loaded the app's compare on ``vi_vae.compare``; 0.3 has no __getattr__ hook
    assert not hasattr(vi_vae, "__getattr__")
    assert not any(type(finder).__module__.startswith("vi_vae") for finder in sys.meta_path)


def test_the_installed_version_is_the_package_s():
    # defined once, in vi_vae/__init__.py; pyproject.toml reads it from there
    from importlib.metadata import version

    assert version("vi-vae") == vi_vae.__version__
