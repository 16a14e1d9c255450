"""The package's import graph (scinrcodec.devtools.layers): no import cycle, no import against the
layer order, and no module importing another's private name, so that none can come in unnoticed."""
from __future__ import annotations

import ast

from scinrcodec.devtools.layers import LAYERS, ROOT, below, cycles, graph, subpackage, upward_imports


def test_no_import_cycle():
    edges, _ = graph()
    assert cycles(edges) == []


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_layers_only_look_down():
    edges, _ = graph()
    assert upward_imports(edges) == []


def test_every_layer_has_its_place_in_the_order():
    edges, _ = graph()
    assert {subpackage(m) for m in edges} <= set(LAYERS)


def test_the_order_is_an_order():
    for layer in LAYERS:
        assert layer not in below(layer)
    assert below("wholefile") >= {"encoder", "reader", "io", "storage", "codec"}
    assert not below("reader") & {"encoder", "wholefile", "cli"}
    assert not below("io") & {"encoder", "reader", "wholefile"}
    assert not below("storage") & {"codec", "io"}


def test_an_upward_import_is_found():
    edges = {"scinrcodec.reader.matrix": {"scinrcodec.wholefile.restore", "scinrcodec.io.matrix"},
             "scinrcodec.io.writers": {"scinrcodec.reader.matrix"}, "scinrcodec.newpart.x": {"scinrcodec.errors"}}
    assert upward_imports(edges) == ["scinrcodec.io.writers -> scinrcodec.reader.matrix",
                                     "scinrcodec.newpart.x -> scinrcodec.errors",
                                     "scinrcodec.reader.matrix -> scinrcodec.wholefile.restore"]


def test_no_module_imports_a_private_name_of_another():
    found = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("scinrcodec")):
                found += [f"{path.name}: {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__") and a.name != "_native"]
    assert found == []
