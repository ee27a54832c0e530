"""The house's rules: imports point down (cli -> app -> library), and 0.1 names still import."""

import ast
import importlib
import pathlib
import subprocess
import sys
import warnings

import pytest

import vi_vae
from vi_vae._deprecation import MOVED_MODULES


def test_import_vi_vae_loads_no_app_or_cli_module():
    code = "import vi_vae, sys; print(' '.join(m for m in sys.modules if m.startswith('vi_vae')))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "vi_vae.weights" in loaded and "vi_vae.estimators" in loaded
    assert not [m for m in loaded if m.startswith(("vi_vae.app", "vi_vae.cli"))], loaded


def _imports(path):
    """Modules a file imports, except in ``__getattr__`` (the lazy 0.1 ``vi_vae.compare``)."""
    tree = ast.parse(path.read_text())
    lazy = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef) and function.name == "__getattr__"
        for node in ast.walk(function)
    }
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
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


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_moved_modules_import_under_their_old_names_with_a_warning(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=MOVED_MODULES[old]):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED_MODULES[old])


def test_the_old_top_level_compare_still_works():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare = vi_vae.compare
    assert callable(compare) and any("vi_vae.app.compare" in str(w.message) for w in caught)


def test_the_installed_version_is_the_package_s():
    # defined once, in vi_vae/__init__.py; pyproject.toml reads it from there
    from importlib.metadata import version

    assert version("vi-vae") == vi_vae.__version__
