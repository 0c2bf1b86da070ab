"""The documentation site builds with ``mkdocs build --strict``: every page, every API entry
(mkdocstrings renders the docstrings) and every snippet of an example script must resolve."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs") or str(pathlib.Path(sys.executable).parent / "mkdocs")
    if not pathlib.Path(mkdocs).exists():
        pytest.fail("mkdocs is not installed: pip install -e '.[dev]'")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("getting-started", "how-it-works", "user-guide", "examples", "benchmarks", "api"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page


def _section_names(sections, kinds) -> set:
    """Names of the entries of the docstring ``sections`` of the given kinds, stars stripped."""
    return {
        item.name.lstrip("*")
        for section in sections
        if section.kind.value in kinds
        for item in section.value
    }


def _is_record(cls) -> bool:
    """A NamedTuple or a dataclass: a class whose attributes are its fields."""
    return "dataclass" in cls.labels or any(str(b).endswith("NamedTuple") for b in cls.bases)


def _docstring_problems(obj) -> list:
    """What the Google-style docstring of the public function, class or property ``obj`` leaves
    out, then the same for the public members of a class."""
    if obj.docstring is None:
        return [f"{obj.path}: no docstring"]
    sections = obj.docstring.parse("google", warn_missing_types=False)
    problems = []
    if obj.is_function:
        documented = _section_names(sections, {"parameters", "other parameters"})
        names = [p.name for p in obj.parameters if p.name not in ("self", "cls")]
        missing = [n for n in names if n not in documented]
        problems += [f"{obj.path}: parameter {n!r} not in Args" for n in missing]
    elif obj.is_class:
        documented = _section_names(sections, {"parameters", "other parameters", "attributes"})
        names = [p.name for p in obj.parameters if p.name not in ("self", "cls")]
        if _is_record(obj):
            names += [
                name
                for name, member in obj.members.items()
                if not name.startswith("_")
                and not member.is_alias
                and member.is_attribute
                and "instance-attribute" in member.labels
                and "property" not in member.labels
            ]
        problems += [
            f"{obj.path}: field or parameter {n!r} not in Attributes or Args"
            for n in dict.fromkeys(names)
            if n not in documented
        ]
        for name, member in obj.members.items():
            if name.startswith("_") or member.is_alias:
                continue
            if member.is_function or member.is_class or "property" in member.labels:
                problems += _docstring_problems(member)
    return problems


def test_every_public_callable_documents_its_parameters():
    """Every public function, method, property and class of every module has a Google-style
    docstring that lists each parameter (``Args:``) and, for a NamedTuple or a dataclass, each
    field (``Attributes:``): what mkdocstrings renders as the API reference's tables."""
    try:
        import griffe  # noqa: PLC0415 (installed with mkdocstrings-python, a dev dependency)
    except ImportError:
        pytest.fail("griffe is not installed: pip install -e '.[dev]'")
    package = griffe.load("numpyro_transport", docstring_parser="google", search_paths=[str(ROOT)])
    problems = []
    for module in [package, *package.modules.values()]:
        for name, member in module.members.items():
            if name.startswith("_") or member.is_alias:
                continue
            if member.is_function or member.is_class:
                problems += _docstring_problems(member)
    assert not problems, "\n".join(problems)
