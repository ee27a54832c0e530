"""Sphinx extension: the API reference, generated from ``__all__`` and the docstrings.

At ``builder-inited`` it walks the ``vi_vae`` package and writes, under
``docs/api/generated/`` (ignored by git, rebuilt every time):

- one page per public module: its docstring (``automodule``) and a table of the
  names in its ``__all__``;
- one page per public object, at the *shortest* import path that exports it
  (``vi_vae.log_marginal_likelihood``, not
  ``vi_vae.evaluation.importance_sampling.log_marginal_likelihood``), so every
  object is documented exactly once and the tables of deeper modules link to it;
- ``cli.rst``: the ``--help`` of every ``vi-vae`` subcommand, from the parser itself.

Nothing is listed by hand: a module, a name in an ``__all__`` or a subcommand that
another branch adds appears once it is merged. A module is private when a part of
its dotted name starts with ``_``; a module whose docstring starts with
"Deprecated" is a shim and is skipped (importing it warns).

A ``missing-reference`` handler resolves the other spellings of a documented
object (``vi_vae.evaluation.log_marginal_likelihood``, or a short name such as
``InputError`` inside a module that imports it) to the page where it is documented.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import os
import pkgutil
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.nodes import make_refnode

PACKAGE = "vi_vae"
OUTPUT = Path("api") / "generated"
#: width of the ``--help`` text on the command-line page (argparse reads $COLUMNS)
HELP_COLUMNS = "88"
#: the longest value shown for a documented constant; longer ones are left out
MAX_VALUE_REPR = 80


@dataclass
class Entry:
    """A public object and the import path where it is documented."""

    name: str  # the documented dotted path
    obj: Any
    kind: str  # "module", "class", "function", "data"
    doc: str = ""  # first sentence, for the tables
    data_doc: list[str] = field(default_factory=list)  # `#:` comment of a constant


def _is_deprecated_shim(module_name: str) -> bool:
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return False
    docstring = ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""
    return docstring.startswith("Deprecated")


def public_modules() -> list[str]:
    """Dotted names of the package's public, non-deprecated modules, parents first."""
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, prefix=PACKAGE + "."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts) or _is_deprecated_shim(info.name):
            continue
        names.append(info.name)
    return sorted(names, key=lambda name: (name.count("."), name))


def _kind(obj: Any) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(obj):
        return "function"
    return "data"


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ")
    return first


def _data_comments(module_name: str) -> dict[str, list[str]]:
    """``#:`` comments and docstrings of a module's top-level constants."""
    try:
        analyzer = ModuleAnalyzer.for_module(module_name)
        return {
            name: lines for (scope, name), lines in analyzer.find_attr_docs().items() if not scope
        }
    except Exception:  # a module without source (extension modules) has no comments
        return {}


def _key(name: str, obj: Any) -> tuple:
    """How an object is recognised: by identity, and constants also by name.

    Equal small ints or strings can be one object in Python, so a constant is
    the pair (its name, the object).
    """
    if _kind(obj) == "data":
        return ("data", name.rpartition(".")[2], id(obj))
    return ("object", id(obj))


def collect(modules: list[str]) -> tuple[dict[str, list[str]], dict[tuple, Entry]]:
    """Per module, its public names; per object key, where it is documented."""
    exported: dict[str, list[str]] = {}
    documented: dict[tuple, Entry] = {}
    comments: dict[str, list[str]] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        exported[module_name] = list(getattr(module, "__all__", []))
        for name, lines in _data_comments(module_name).items():
            comments.setdefault(name, lines)
    for module_name in modules:  # parents first: the first path found is the shortest
        module = importlib.import_module(module_name)
        key = _key(module_name, module)
        documented.setdefault(key, Entry(module_name, module, "module", _summary(module)))
        for name in exported[module_name]:
            obj = getattr(module, name)
            key = _key(name, obj)
            if key in documented or f"{module_name}.{name}" in modules:
                continue  # documented already, or its path is a module's (vi_vae.bounds)
            entry = Entry(f"{module_name}.{name}", obj, _kind(obj))
            if entry.kind == "data":  # a constant's doc is its `#:` comment in the source
                entry.data_doc = comments.get(name, [])
                entry.doc = " ".join(entry.data_doc).strip()  # escaped where it is shown
            else:
                entry.doc = _summary(obj)
            documented[key] = entry
    return exported, documented


def _title(text: str, underline: str = "=") -> str:
    return f"{text}\n{underline * len(text)}\n"


def _escape(text: str) -> str:
    """Plain text (a ``#:`` comment) as reST: ``|μ|`` is not a substitution."""
    return text.replace("|", "\\|")


def _object_page(entry: Entry) -> str:
    module_name, _, short = entry.name.rpartition(".")
    lines = [_title(short), f".. currentmodule:: {module_name}", ""]
    if entry.kind == "class":
        lines += [f".. autoclass:: {short}", "   :members:", "   :show-inheritance:", ""]
    elif entry.kind == "function":
        lines += [f".. autofunction:: {short}", ""]
    else:
        lines.append(f".. py:data:: {short}")
        value = repr(entry.obj)
        if len(value) <= MAX_VALUE_REPR:
            lines.append(f"   :value: {value}")
        lines.append("")
        doc = entry.data_doc or [f"A constant of type ``{type(entry.obj).__name__}``."]
        lines += [f"   {_escape(line)}" for line in doc] + [""]
    return "\n".join(lines)


def _module_page(
    module_name: str, names: list[str], children: list[str], documented: dict[tuple, Entry]
) -> str:
    module = importlib.import_module(module_name)
    lines = [_title(module_name), f".. automodule:: {module_name}", ""]
    own_pages = []
    if names:
        lines += [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 35 65",
            "",
            "   * - name",
            "     - what it is",
        ]
        for name in names:
            entry = documented[_key(name, getattr(module, name))]
            role = {"module": "mod", "class": "class", "function": "func", "data": "data"}
            lines += [
                f"   * - :py:{role[entry.kind]}:`{name} <{entry.name}>`",
                f"     - {(_escape(entry.doc) if entry.kind == 'data' else entry.doc) or '—'}",
            ]
            if entry.kind != "module" and entry.name == f"{module_name}.{name}":
                own_pages.append(entry.name)
        lines.append("")
    pages = children + own_pages
    if pages:
        lines += [".. toctree::", "   :hidden:", ""] + [f"   {page}" for page in pages] + [""]
    return "\n".join(lines)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps subparsers here; no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _cli_page() -> str:
    from vi_vae.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        parser = build_parser()
        sections = [("vi-vae", parser)] + [
            (f"vi-vae {name}", sub) for name, sub in _subcommands(parser).items()
        ]
        lines = [
            _title("The vi-vae command"),
            "Generated from the parser (:func:`vi_vae.cli.build_parser`) at build time,",
            "so it shows the flags of the version these pages were built from.",
            "",
        ]
        for title, sub in sections:
            lines += [_title(title, "-"), ".. code-block:: text", ""]
            lines += [f"   {line}".rstrip() for line in sub.format_help().splitlines()] + [""]
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(lines)


def _families_table() -> str:
    """Every registered latent family, as ``vi-vae families`` lists it (an include file)."""
    from vi_vae.latents import FAMILIES

    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 14 14 40 24 8",
        "",
        "   * - family",
        "     - category",
        "     - reparameterization",
        "     - default prior (support)",
        "     - KL",
    ]
    for family in FAMILIES.values():
        row = family.summary()
        lines += [
            f"   * - ``{row['name']}``",
            f"     - {row['category'].replace('_', ' ')}",
            f"     - {_escape(row['description'])}",
            f"     - {_escape(row['prior'])} ({_escape(row['support'])})",
            f"     - {row['kl']}",
        ]
    return "\n".join(lines) + "\n"


def _flags_table() -> str:
    """Every ``vi-vae`` flag, the commands that take it, and its ``config.json`` key."""
    import argparse

    from vi_vae.cli import build_parser
    from vi_vae.cli.flags import FLAGS

    settings = {flag.field for flag in FLAGS}
    flags: dict[str, tuple[list[str], str]] = {}
    for command, parser in _subcommands(build_parser()).items():
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            if action.help == argparse.SUPPRESS:  # a deprecated spelling
                continue
            flag = ", ".join(action.option_strings)
            commands, _ = flags.setdefault(flag, ([], action.dest.replace("__", ".")))
            commands.append(command)
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 30 30 40",
        "",
        "   * - flag",
        "     - commands",
        "     - ``config.json`` key",
    ]
    for flag, (commands, key) in sorted(flags.items()):
        stored = f"``config.{key}``" if key in settings else "— (not a stored setting)"
        lines += [f"   * - ``{flag}``", f"     - {', '.join(commands)}", f"     - {stored}"]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:  # unchanged pages are not rebuilt
        path.write_text(text)


def generate(app: Sphinx) -> None:
    """Write the module, object and command-line pages under ``api/generated``."""
    out = Path(app.srcdir) / OUTPUT
    modules = public_modules()
    exported, documented = collect(modules)
    app.env.vi_vae_documented = {key: entry.name for key, entry in documented.items()}
    expected = set()
    for module_name in modules:
        children = [
            name
            for name in modules
            if name.rpartition(".")[0] == module_name and name != module_name
        ]
        path = out / f"{module_name}.rst"
        _write(path, _module_page(module_name, exported[module_name], children, documented))
        expected.add(path.name)
    for entry in documented.values():
        if entry.kind != "module":
            path = out / f"{entry.name}.rst"
            _write(path, _object_page(entry))
            expected.add(path.name)
    _write(out / "cli.rst", _cli_page())
    # not a page (Sphinx reads only .rst and .md): included by concepts/reparameterization.md
    _write(out / "latent-families.rst.inc", _families_table())
    _write(out / "flags.rst.inc", _flags_table())  # included by glossary.md
    expected.add("cli.rst")
    for stale in out.glob("*.rst"):  # a name that was removed or renamed since the last build
        if stale.name not in expected:
            stale.unlink()
    shutil.rmtree(out / "__pycache__", ignore_errors=True)


def _lookup(dotted: str) -> Any:
    """The object at a dotted path (module attributes, class members), or None."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for part in parts[split:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


def resolve(app: Sphinx, env: Any, node: Any, contnode: nodes.Node) -> nodes.Node | None:
    """Link another spelling of a documented object to where it is documented."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    module_name = node.get("py:module")
    class_name = node.get("py:class")
    candidates = [target]
    if module_name:
        candidates.insert(0, f"{module_name}.{target}")
        if class_name:
            candidates.insert(0, f"{module_name}.{class_name}.{target}")
    domain = env.get_domain("py")
    documented = getattr(env, "vi_vae_documented", {})
    for candidate in candidates:
        if not candidate.startswith(PACKAGE + ".") and candidate != PACKAGE:
            continue
        obj = _lookup(candidate)
        if obj is None:
            continue
        name = documented.get(_key(candidate, obj))
        if name is None:  # a member: documented under its documented owner
            owner_path, _, member = candidate.rpartition(".")
            owner = _lookup(owner_path)
            owner_name = None if owner is None else documented.get(_key(owner_path, owner))
            if owner_name is not None:
                name = f"{owner_name}.{member}"
        if name is None or name not in domain.objects:
            continue
        docname = domain.objects[name].docname
        return make_refnode(
            app.builder, node["refdoc"], docname, domain.objects[name].node_id, contnode, name
        )
    return None


REFERENCE = re.compile(r"^(\s*)\[\d+\]\s")
SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]*:\s*$")


def reference_lists(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Make a ``References:`` section a bullet list, before napoleon reads it.

    The docstrings write ``[1] Title,`` and indent the line that continues an
    entry; in reStructuredText that indentation is an error, so each entry
    becomes a list item (``- [1] Title,``) whose continuation lines line up.
    """
    inside = False
    indent = ""
    for number, line in enumerate(lines):
        if line.strip() == "References:":
            inside = True
            continue
        if not inside:
            continue
        if line.strip() and SECTION.match(line) and not REFERENCE.match(line):
            inside = False
            continue
        entry = REFERENCE.match(line)
        if entry:
            indent = entry.group(1)
            lines[number] = f"{indent}- {line.strip()}"
        elif line.strip() and indent and line.startswith(indent + " "):
            lines[number] = f"{indent}  {line.strip()}"


def private_bases(app: Sphinx, name: str, obj: Any, options: Any, bases: list) -> None:
    """Leave private base classes (``_ExpandMixin``) out of "Bases:"."""
    bases[:] = [base for base in bases if not getattr(base, "__name__", "").startswith("_")]


def follow_imported(app: Sphinx, module_name: str, name: str) -> str | None:
    """Where viewcode looks for a constant's source: the module documenting it.

    viewcode follows ``obj.__module__``, which for a constant is its type's module
    (``builtins`` for a dict, where there is no source page to link to).
    """
    obj = _lookup(f"{module_name}.{name}")
    return module_name if obj is not None and _kind(obj) == "data" else None


BACKLINK = re.compile(r'href="([^"#]*api/generated/)([^"#/]+)\.html#([^"]+)"')


def source_backlinks(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """Point the "[docs]" links of a source page at the right anchors.

    viewcode writes every link from one source file as ``#<module>.<name>`` with
    the first module it saw documenting something from that file, but objects of
    one file are documented under different modules (``vi_vae.Likelihood``,
    ``vi_vae.likelihoods.Bernoulli``). The page of each object is named after its
    documented path, so the right anchor is that path's module plus the name.
    """
    if not pagename.startswith("_modules/") or "body" not in context:
        return

    def fix(match: re.Match) -> str:
        prefix, page, anchor = match.groups()
        if anchor == page or anchor.startswith(f"{page}."):
            return match.group(0)  # already the documented path
        for cut in range(anchor.count(".")):
            qualified = anchor.split(".", cut + 1)[-1]  # Bernoulli.mean
            owner = qualified.split(".")[0]
            if page.endswith(f".{owner}"):
                anchor = page[: -len(owner)] + qualified
                break
        return f'href="{prefix}{page}.html#{anchor}"'

    context["body"] = BACKLINK.sub(fix, context["body"])


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the generator, the reference resolver and the docstring fixes."""
    app.connect("builder-inited", generate)
    app.connect("missing-reference", resolve)
    # before napoleon (priority 500) turns the Google sections into reST
    app.connect("autodoc-process-docstring", reference_lists, priority=400)
    app.connect("autodoc-process-bases", private_bases)
    app.connect("viewcode-follow-imported", follow_imported)
    app.connect("html-page-context", source_backlinks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
