"""Measure the shape of zlt's import graph and print it (issue 23's done-when figures).

    python bench/architecture.py [--json]

Counts: import cycles among zlt modules (every import, those inside functions included), imports of zlt modules inside functions
(with the ones that do not say why), modules over 400 lines, `backend ==`/`!=` comparisons outside the
backend registry (zlt/backends/). tests/unit/test_architecture.py asserts the limits.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "zlt"
MAX_LINES = 400
BACKEND_CMP = re.compile(r"\bbackend\w*\s*[!=]=|[!=]=\s*\w*\.?backend\b")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    if not stem.startswith("zlt"):
        return []
    out = [stem]
    for alias in node.names:
        out.append(f"{stem}.{alias.name}")
    return out


class _Visitor(ast.NodeVisitor):
    def __init__(self, mod: str, is_pkg: bool, lines: list[str]):
        self.mod, self.is_pkg, self.lines = mod, is_pkg, lines
        self.depth = 0
        self.type_checking = 0
        self.top: list[str] = []
        self.inner: list[tuple[int, list[str], str]] = []

    def _add(self, node, names):
        if not names:
            return
        if self.type_checking:
            return
        if self.depth:
            self.inner.append((node.lineno, names, self.lines[node.lineno - 1]))
        else:
            self.top.extend(names)

    def visit_Import(self, node):
        self._add(node, [a.name for a in node.names if a.name.startswith("zlt")])

    def visit_ImportFrom(self, node):
        self._add(node, _resolve(self.mod, self.is_pkg, node))

    def visit_If(self, node):
        test = ast.unparse(node.test)
        if "TYPE_CHECKING" in test:
            self.type_checking += 1
            for n in node.body:
                self.visit(n)
            self.type_checking -= 1
            for n in node.orelse:
                self.visit(n)
        else:
            self.generic_visit(node)

    def _func(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _func


def scan():
    files = sorted(PKG.rglob("*.py"))
    mods = {module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    inner: list[dict] = []
    for mod, path in mods.items():
        text = path.read_text()
        v = _Visitor(mod, path.name == "__init__.py", text.splitlines())
        v.visit(ast.parse(text))
        graph[mod] = {n for n in v.top if n in mods and n != mod}
        for lineno, names, line in v.inner:
            targets = [n for n in names if n in mods]
            if targets:
                inner.append({"file": str(path.relative_to(ROOT)), "line": lineno,
                              "why": "#" in line, "targets": sorted(set(targets))})
    return mods, graph, inner


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of size > 1 (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def backend_branches() -> list[str]:
    hits = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel.startswith("zlt/backends/"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if BACKEND_CMP.search(code):
                hits.append(f"{rel}:{i}: {line.strip()}")
    return hits


def long_modules(mods) -> list[str]:
    return [f"{module_name(p)} ({n})" for p in mods.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES]


def measure() -> dict:
    mods, graph, inner = scan()
    full = {m: set(targets) for m, targets in graph.items()}  # an import inside a function is still an arrow
    for i in inner:
        m = module_name(ROOT / i["file"])
        full[m] |= {t for t in i["targets"] if t != m}
    return {
        "modules": len(mods),
        "cycles": cycles(full),
        "imports_inside_functions": len(inner),
        "imports_inside_functions_without_reason": [f"{i['file']}:{i['line']}" for i in inner if not i["why"]],
        "inner_imports": inner,
        "modules_over_400_lines": long_modules(mods),
        "backend_branches_outside_registry": backend_branches(),
    }


def main(argv: list[str]) -> int:
    m = measure()
    if "--json" in argv:
        print(json.dumps({k: v for k, v in m.items() if k != "inner_imports"}, indent=2))
        return 0
    print(f"zlt modules:                               {m['modules']}")
    print(f"import cycles:                             {len(m['cycles'])}")
    for c in m["cycles"]:
        print(f"  {len(c)} modules: {', '.join(c[:8])}{' ...' if len(c) > 8 else ''}")
    print(f"zlt imports inside functions:              {m['imports_inside_functions']}"
          f" ({len(m['imports_inside_functions_without_reason'])} without a comment saying why)")
    print(f"modules over {MAX_LINES} lines:                     {len(m['modules_over_400_lines'])}"
          f" {m['modules_over_400_lines'] or ''}")
    print(f"backend ==/!= outside zlt/backends/:       {len(m['backend_branches_outside_registry'])}")
    if "-v" in argv:
        for h in m["backend_branches_outside_registry"]:
            print("  " + h)
        for i in m["inner_imports"]:
            print(f"  inner {i['file']}:{i['line']} {','.join(i['targets'])}{'' if i['why'] else '  (no reason)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
