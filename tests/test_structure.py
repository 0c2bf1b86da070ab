"""The package's shape: layers only point down (no import cycle, lazy imports included), and
importing it loads no plotting or table library and registers no global listener."""

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "numpyro_transport"
HEAVY = ("matplotlib", "pandas", "arviz", "arviz_base", "arviz_plots", "arviz_stats", "xarray")


def _imports(path: pathlib.Path) -> set[str]:
    """Modules of the package that ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "numpyro_transport":
                found |= {f"numpyro_transport.{alias.name}" for alias in node.names}
            elif node.module.startswith("numpyro_transport."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("numpyro_transport.")}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {
        f"numpyro_transport.{p.stem}": p for p in PACKAGE.glob("*.py") if p.stem != "__init__"
    }
    return {name: _imports(path) & set(modules) for name, path in modules.items()}


def _cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    graph = _graph()
    assert graph["numpyro_transport.kernel"] >= {"numpyro_transport.driver"}  # the parse works
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # The checker finds a cycle when there is one.
    looped = {**graph, "numpyro_transport.weights": {"numpyro_transport.engine"}}
    assert _cycle(looped) is not None


def test_import_has_no_side_effects():
    """``python -X importtime -c "import numpyro_transport"`` lists no plotting, table or ArviZ
    module, and the import registers no ``jax.monitoring`` listener."""
    script = (
        "import jax.monitoring as m\n"
        "calls = []\n"
        "for name in [n for n in dir(m) if n.startswith('register_')]:\n"
        "    setattr(m, name, lambda *a, _n=name, **k: calls.append(_n))\n"
        "import numpyro_transport\n"
        "numpyro_transport.AST, numpyro_transport.transport\n"
        "print('listeners', calls)\n"
    )
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, heavy
    assert "listeners []" in out.stdout, out.stdout
    assert "numpyro_transport.driver" in loaded  # the check sees the package's own modules


def _arviz_internals(tree) -> list[str]:
    """What ``tree`` (a parsed module) takes from ArviZ beyond its public API: an import from a
    private or ``io_*`` module of an ``arviz*`` package, a private name imported from ArviZ, and
    any adapter class (``…Adapter``, the internals of ArviZ's converters)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.endswith("Adapter"):
            found.append(node.attr)
        if isinstance(node, ast.Import):
            imported = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in imported:
            if not module.startswith("arviz"):
                continue
            if any(part.startswith(("_", "io_")) for part in module.split(".")[1:]):
                found.append(module)
            if name is not None and (name.startswith("_") or name.endswith("Adapter")):
                found.append(f"{module}.{name}")
    return found


def test_arviz_through_its_public_api_only():
    """No module of the package imports a private ArviZ module (``arviz_base.io_numpyro``, …)
    or subclasses one of ArviZ's converter adapters: those change between ArviZ releases."""
    found = {
        path.name: internals
        for path in sorted(PACKAGE.glob("*.py"))
        if (internals := _arviz_internals(ast.parse(path.read_text())))
    }
    assert not found, found
    # The check finds what it looks for.
    bad = "from arviz_base.io_numpyro import NumPyroInferenceAdapter\nclass A(az.MCMCAdapter): ..."
    assert _arviz_internals(ast.parse(bad)) == [
        "arviz_base.io_numpyro",
        "arviz_base.io_numpyro.NumPyroInferenceAdapter",
        "MCMCAdapter",
    ]
