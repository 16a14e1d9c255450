"""Every public function, class and method of the package says what it is for: an `ast` walk of
scinrcodec/ fails on one without a docstring. Public: no leading underscore, at module level or
in a public class. Exempt: properties (their names say what they hold; many carry a docstring
anyway), dunder methods (Python defines what they do), and functions nested in functions."""
from __future__ import annotations

import ast

from scinrcodec.devtools.layers import ROOT


def _is_property(node: ast.AST) -> bool:
    return any(isinstance(d, ast.Name) and d.id in ("property", "cached_property")
               or isinstance(d, ast.Attribute) and d.attr in ("cached_property", "setter")
               for d in getattr(node, "decorator_list", []))


def undocumented(tree: ast.Module, where: str) -> list[str]:
    """'where: name' of each public function, class or method of `tree` without a docstring."""
    found = []

    def visit(body, prefix: str) -> None:
        for node in body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            name = node.name
            if name.startswith("_") or _is_property(node):
                continue
            if ast.get_docstring(node) is None:
                found.append(f"{where}: {prefix}{name}")
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{name}.")

    visit(tree.body, "")
    return found


def test_every_public_function_and_class_has_a_docstring():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        found += undocumented(ast.parse(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT.parent)))
    assert found == []


def test_the_walk_finds_what_lacks_one():
    tree = ast.parse('''
def f(): pass
def _g(): pass
class C:
    """documented"""
    def m(self): pass
    def __len__(self): return 0
    @property
    def p(self): return 1
class _D:
    def m(self): pass
''')
    assert undocumented(tree, "x") == ["x: f", "x: C.m"]
