"""The house plan, checked on the code: imports run one way, cli -> harness -> methods -> symbolic
-> runtime -> engines -> pools, analysis reads only run outputs (it imports none of the layers that make
them), and only the harness imports lm-eval (issue 19). Every import counts, also those inside
functions."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "symoe_eval"
LAYERS = {"cli": 8, "harness": 7, "methods": 6, "symbolic": 5, "runtime": 4, "engines": 3, "pools": 2, "analysis": 2,
          "answers": 2, "registry": 1, "settings": 1, "runoutput": 1, "errors": 0, "paths": 0, "atomic": 0,
          "__init__": 0, "moved": -1}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names if node.module == "symoe_eval"}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, layer_of("symoe_eval." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))


def test_every_module_belongs_to_a_layer():
    assert sorted({layer for _, layer in modules()} - set(LAYERS)) == []


def test_imports_run_one_way():
    upward = [f"{path.relative_to(PACKAGE)} imports {name}"
              for path, layer in modules()
              for name in imports(path) if name.startswith("symoe_eval.")
              if layer_of(name) != layer and LAYERS[layer_of(name)] >= LAYERS[layer]]
    assert upward == []


def test_only_the_harness_imports_lm_eval():
    others = [f"{path.relative_to(PACKAGE)} imports {name}" for path, layer in modules() if layer not in ("harness", "cli")
              for name in imports(path) if name.split(".")[0] == "lm_eval"]
    assert others == []
