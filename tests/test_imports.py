"""The layering of the project's modules, read from their source with `ast` (nothing is imported): checks.py, the
checks of what a person gives, is the bottom and imports no project module; settings.py imports only checks; the
top-level modules are the lower layer and never import `experiments`; the experiments import them. The notebook's
road (ROAD: what S6_Normalization.ipynb imports, and all that imports) holds neither store.py nor any experiment: the
research road stands on it, never the other way. No module imports, through others, one that imports it. The norms'
names in words are one map, checks.NORM_NAMES, that every module reads."""

import ast
import json
from pathlib import Path

from checks import NORM_NAMES
from conftest import ROAD, ROOT


def modules(root: Path) -> dict[str, Path]:
    """{module name: file} of every project module: the top-level .py files and experiments/*.py."""
    found = {path.stem: path for path in sorted(root.glob("*.py"))}
    for path in sorted((root / "experiments").glob("*.py")):
        found["experiments" if path.stem == "__init__" else f"experiments.{path.stem}"] = path
    return found


def project_imports(source: str, package: str, names: set[str]) -> set[str]:
    """The modules among `names` that `source` (of a module in `package`) imports, inside functions too."""
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .x import y
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            imported = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for module in imported:
            parts = module.split(".")
            # a submodule runs its packages first: `import experiments.report` imports experiments too
            targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & names
    return targets


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: the project modules it imports}, from every import statement in it, those inside functions too."""
    names = modules(root)
    return {name: project_imports(path.read_text(), name if path.stem == "__init__" else name.rpartition(".")[0],
                                  set(names)) - {name} for name, path in names.items()}


def reached(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    """`start` and every module they import, directly or through others."""
    found, todo = set(), set(start)
    while todo:
        name = todo.pop()
        found.add(name)
        todo |= graph[name] - found
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as [a, b, ..., a], or None where there is none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once every path from it is explored

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [node, target] if target in path else [node, target]
            if target not in state and (cycle := visit(target, path + [node])):
                return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_the_graph_is_read_from_every_module():
    graph = import_graph(ROOT)
    assert {"checks", "model", "utils", "data", "figures", "records", "training", "store", "settings", "publish",
            "experiments.report", "experiments.runner"} <= graph.keys()
    assert "utils" in graph["data"] and "records" in graph["publish"]  # the reading sees imports


def test_no_module_imports_one_that_imports_it():
    cycle = find_cycle(import_graph(ROOT))
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_no_top_level_module_imports_experiments():
    graph = import_graph(ROOT)
    upward = {name: sorted(t for t in targets if t.split(".")[0] == "experiments")
              for name, targets in graph.items() if "." not in name and name != "experiments"}
    assert not any(upward.values()), f"top-level modules that import experiments: {upward}"


def test_checks_is_the_bottom_and_settings_stands_on_it_alone():
    graph = import_graph(ROOT)
    assert graph["checks"] == set(), f"checks.py imports project modules: {sorted(graph['checks'])}"
    assert graph["settings"] == {"checks"}, f"settings.py imports {sorted(graph['settings'])}, not checks alone"


def test_the_notebook_stands_on_its_road_alone():
    graph = import_graph(ROOT)
    cells = json.loads((ROOT / "S6_Normalization.ipynb").read_text())["cells"]
    code = "\n".join(line for cell in cells if cell["cell_type"] == "code"
                     for line in "".join(cell["source"]).splitlines() if not line.startswith("%"))  # no magics
    assert reached(graph, project_imports(code, "", set(graph))) == ROAD


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_but_checks_spells_a_norms_name_of_its_own():
    # a second map of names (as runner.LABELS, main.NAMES and report.NAMES once were) would spell them again
    spelled = [f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}" for name, path in modules(ROOT).items()
               if name != "checks" for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and node.value in NORM_NAMES.values()]
    assert not spelled, f"norms named apart from checks.NORM_NAMES: {spelled}"
