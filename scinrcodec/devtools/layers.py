"""The package's import graph, by layer: `python -m scinrcodec.devtools.layers`.

Reads every module's imports with `ast` (nothing is imported or run), groups modules by their
subpackage, and prints for each subpackage the subpackages it imports, its line count, any
import that goes against the layer order (LAYERS) and any import cycle between modules.
tests/test_layers.py holds the package to what this prints.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = "scinrcodec"
ROOT = Path(__file__).resolve().parent.parent

# The layers, lowest first, each with the layers right below it that it may import; it may also
# import whatever those may (below()). Layers only look down: a module never imports a layer
# above its own, so the order below is the architecture.
LAYERS: dict[str, tuple[str, ...]] = {
    "errors": (),  # the typed errors every layer raises
    "limits": ("errors",),  # every limit of the format and of the implementation, and the check against one
    "progress": (),  # the progress bar of long runs
    "devtools": (),  # this tool
    "storage": ("errors", "limits"),  # bytes: sources, the container, the layout of sections
    "codec": ("storage",),  # tiles, rANS, value models (over the native core)
    "model": ("codec",),  # the SIREN predictor, its training and quantisation
    "io": ("storage", "progress"),  # the formats users have: sources to encode, writers of decoded matrices
    "reader": ("codec", "model", "io"),  # an open .sinr matrix, its reads, its dask array
    "encoder": ("reader",),  # encode, append (which reads the file it extends), combine
    "wholefile": ("encoder", "reader"),  # whole AnnData and 10x files; the SinrMatrix users get
    "report": ("reader",),  # `sinr info`'s description of a matrix
    "demo": ("wholefile", "report"),
    "cli": ("demo", "wholefile", "report"),
    "__main__": ("cli",),
    # scinrcodec/__init__.py, the facade: the read path loads with it, every other public name on first use
    "(package)": ("errors", "wholefile"),
}
NATIVE = "_native"  # the compiled core: a submodule with no .py file


def module_name(path: Path) -> str:
    """The dotted name of the module at `path`."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The package modules `path` imports, at any depth of its code (lazy imports included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(PACKAGE):
                continue
            # `from scinrcodec import _native` imports a submodule, not the facade's names (every
            # submodule's import runs the package's __init__ anyway): no edge to the package itself
            if target != PACKAGE or not all(_is_submodule(a.name) for a in node.names):
                found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return found


def _is_submodule(name: str) -> bool:
    """Whether `name` is a module or subpackage directly inside the package."""
    return name == NATIVE or (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file()


def graph() -> tuple[dict[str, set[str]], dict[str, int]]:
    """Module -> the package modules it imports; module -> its lines."""
    paths = {module_name(p): p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts}
    edges: dict[str, set[str]] = {}
    for name, path in paths.items():
        edges[name] = {m for m in imports_of(path) if m in paths and m != name}
    lines = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in paths.items()}
    return edges, lines


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def subpackage(module: str) -> str:
    """The layer a module belongs to: its subpackage, or a top-level module on its own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(package)"


def below(layer: str) -> set[str]:
    """Every layer `layer` may import: those LAYERS names for it, and all they may import."""
    found: set[str] = set()
    todo = list(LAYERS.get(layer, ()))
    while todo:
        lower = todo.pop()
        if lower not in found:
            found.add(lower)
            todo.extend(LAYERS.get(lower, ()))
    return found


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """'module -> module' for every import that LAYERS does not allow (a layer LAYERS does not
    name may import nothing of another layer, so a new subpackage must be placed in the order)."""
    found = []
    for module in sorted(edges):
        for target in sorted(edges[module]):
            if target == PACKAGE or subpackage(target) == subpackage(module):
                continue
            if subpackage(target) not in below(subpackage(module)):
                found.append(f"{module} -> {target}")
    return found


def main() -> None:
    """Print the layers, the modules over 500 lines and the import cycles."""
    edges, lines = graph()
    by_layer: dict[str, set[str]] = defaultdict(set)
    size: dict[str, int] = defaultdict(int)
    for module, targets in edges.items():
        size[subpackage(module)] += lines[module]
        for target in targets:
            if subpackage(target) != subpackage(module) and target != PACKAGE:
                by_layer[subpackage(module)].add(subpackage(target))
    print("layer (subpackage or top-level module): lines; the layers it imports")
    for layer in sorted(size):
        print(f"  {layer}: {size[layer]:,}; {', '.join(sorted(by_layer[layer])) or '-'}")
    print("modules over 500 lines:")
    for module in sorted(lines, key=lines.get, reverse=True):
        if lines[module] > 500:
            print(f"  {module}: {lines[module]:,}")
    print("layer order, lowest first (each may import the layers listed and what they may):")
    for layer, lower in LAYERS.items():
        print(f"  {layer}: {', '.join(lower) or '-'}")
    upward = upward_imports(edges)
    print(f"imports against the layer order: {len(upward)}")
    for line in upward:
        print(f"  {line}")
    found = cycles(edges)
    print(f"import cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))


if __name__ == "__main__":
    main()
