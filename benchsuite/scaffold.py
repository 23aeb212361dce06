"""The template behind ``benchsuite new-plugin``: a ready plugin package to start from.

:func:`write_plugin` writes ``benchsuite-NAME/``, an installable distribution whose package
``benchsuite_NAME`` registers one problem, one integrator and one observer through the
``benchsuite`` entry-point group, with a test suite that runs the plugin kit
(:mod:`benchsuite.testing`) on them, and a README that says how to develop, check, run and
publish the plugin. The generated package passes every kit check, slow ones included.

The templates are package data in ``benchsuite/templates/plugin/``, one file per generated file:

* a template's path, relative to that folder, is the generated file's path with ``.tmpl``
  appended (the suffix keeps pytest, ruff and setuptools from taking templates for modules);
* a path component ``PACKAGE`` becomes the package name (``PACKAGE/problems.py.tmpl`` is
  written to ``benchsuite_NAME/problems.py``); no other part of a path is rewritten;
* contents are :class:`string.Template` text with the placeholders ``$name`` (NAME),
  ``$package`` (``benchsuite_NAME``), ``$distribution`` (``benchsuite-NAME``, underscores as
  hyphens) and ``$benchsuite_version`` (the installed benchsuite, the generated plugin's
  minimum); a literal dollar sign is written ``$$``. An unknown placeholder is an error when the
  plugin is written, never a ``$`` left in a generated file.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from string import Template

#: What NAME may be: it becomes a Python package name, an entry-point name and part of a
#: distribution name, and prefixes the problem and integrator names.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME_LENGTH = 40
#: Template suffix, and the path component standing for the package folder.
SUFFIX = ".tmpl"
PACKAGE_DIR = "PACKAGE"


def check_name(name: str) -> None:
    """Raise a ValueError saying what is allowed unless ``name`` can name a plugin.

    Parameters
    ----------
    name : str
        The plugin's name: lowercase letters, digits and underscores, starting with a letter,
        at most :data:`MAX_NAME_LENGTH` characters.

    Raises
    ------
    ValueError
        When ``name`` is not allowed, or is the entry-point name of an installed plugin
        (benchsuite's own included: two plugins cannot share an entry-point name, the second
        would not load).
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(
            f"plugin name {name!r} is not allowed: use lowercase letters, digits and "
            "underscores, starting with a letter (it becomes the package benchsuite_NAME, so "
            "no hyphens or capitals)"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"plugin name {name!r} is {len(name)} characters long: at most "
                         f"{MAX_NAME_LENGTH} are allowed")
    from benchsuite.plugins import installed_plugin_names

    if name in installed_plugin_names():
        raise ValueError(f"plugin name {name!r} is taken by an installed plugin (benchsuite's "
                         "own included): choose another")


def placeholders(name: str) -> dict[str, str]:
    """The placeholders' values for plugin ``name`` (validated).

    Parameters
    ----------
    name : str

    Returns
    -------
    dict of str to str
        ``name``, ``package`` (``benchsuite_NAME``), ``distribution`` (``benchsuite-NAME``
        with hyphens for underscores) and ``benchsuite_version``.
    """
    check_name(name)
    return {"name": name, "package": f"benchsuite_{name}",
            "distribution": f"benchsuite-{name.replace('_', '-')}",
            "benchsuite_version": _benchsuite_version()}


def _benchsuite_version() -> str:
    try:
        return importlib.metadata.version("benchsuite")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        from benchsuite import __version__

        return __version__


def _template_root() -> Traversable:
    return importlib.resources.files("benchsuite") / "templates" / "plugin"


def _templates() -> list[tuple[PurePosixPath, Traversable]]:
    """(path relative to the template folder, file) of every template, sorted by path."""
    found = []

    def walk(folder: Traversable, rel: PurePosixPath) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, rel / entry.name)
            elif entry.name.endswith(SUFFIX):
                found.append((rel / entry.name, entry))

    walk(_template_root(), PurePosixPath())
    if not found:
        raise FileNotFoundError(f"no plugin templates in {_template_root()}: the benchsuite "
                                "installation is incomplete (package data missing)")
    return sorted(found, key=lambda item: str(item[0]))


def _target_path(template: PurePosixPath, package: str) -> PurePosixPath:
    """Where a template is written, relative to the plugin folder (see the module docstring)."""
    parts = [package if part == PACKAGE_DIR else part for part in template.parts]
    parts[-1] = parts[-1].removesuffix(SUFFIX)
    return PurePosixPath(*parts)


def planned_files(name: str) -> list[str]:
    """The files :func:`write_plugin` writes for ``name``, relative to the plugin folder.

    Parameters
    ----------
    name : str
        The plugin's name (validated as in :func:`write_plugin`).

    Returns
    -------
    list of str
        POSIX relative paths, sorted (``benchsuite_NAME/__init__.py``, ``pyproject.toml``...).
    """
    package = placeholders(name)["package"]
    return sorted(str(_target_path(rel, package)) for rel, _ in _templates())


def render(name: str) -> dict[str, str]:
    """The generated files' contents for plugin ``name``, by relative path, without writing.

    Parameters
    ----------
    name : str

    Returns
    -------
    dict of str to str

    Raises
    ------
    ValueError
        When ``name`` is not allowed, or a template names an unknown placeholder.
    """
    values = placeholders(name)
    out = {}
    for rel, source in _templates():
        try:
            text = Template(source.read_text(encoding="utf-8")).substitute(values)
        except (KeyError, ValueError) as exc:  # a bug in benchsuite's templates
            raise ValueError(f"template {rel}: bad placeholder {exc} (known: "
                             f"{', '.join('$' + k for k in values)}; write $$ for $)") from None
        out[str(_target_path(rel, values["package"]))] = text
    return out


def write_plugin(name: str, directory: str | Path = ".") -> Path:
    """Write the plugin package ``benchsuite-NAME/`` into ``directory``.

    Parameters
    ----------
    name : str
        Lowercase letters, digits and underscores, starting with a letter, at most 40
        characters. It becomes the entry-point name, the package ``benchsuite_NAME``, the
        distribution ``benchsuite-NAME`` (underscores as hyphens) and the prefix of the
        problem's and the integrator's names (``NAME_hyperbola[a=2]``, ``NAME_heun``).
    directory : str or Path
        Where to create the plugin folder (created if missing). Default: the current folder.

    Returns
    -------
    Path
        The plugin folder, ``directory / "benchsuite-NAME"``.

    Raises
    ------
    ValueError
        When ``name`` is not allowed.
    FileExistsError
        When the plugin folder exists and is not empty (or is not a folder): nothing is
        overwritten.
    OSError
        When the folder cannot be written.
    """
    files = render(name)  # every template rendered before anything is written
    target = Path(directory) / placeholders(name)["distribution"]
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder: nothing was written")
    if target.is_dir() and any(target.iterdir()):
        raise FileExistsError(f"{target} already exists and is not empty: nothing was written "
                              "(remove it, or choose another name or folder)")
    for rel, text in files.items():
        path = target.joinpath(*PurePosixPath(rel).parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
