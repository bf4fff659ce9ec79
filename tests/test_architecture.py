"""No import cycle between any two modules of api, workers, monitoring and shared (docs/architecture.md,
"Layers and ownership"). Lazy imports inside functions count: grimp reads every import statement. The layer
rule itself (who may import whom) is `lint-imports`, configured in pyproject.toml."""

from __future__ import annotations

import grimp

PACKAGES = ("api", "workers", "monitoring", "shared")


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One concrete cycle (a → … → a) per strongly connected component of more than one module."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in edges:  # Tarjan's algorithm, iterative (no recursion limit on a large graph)
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            for j in range(i, len(edges[node])):
                nxt = edges[node][j]
                if nxt not in index:
                    work.extend([(node, j + 1), (nxt, 0)])
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    cycles = []
    for component in components:
        start = component[0]
        back = next(m for m in edges[start] if m in component)
        chain = graph.find_shortest_chain(importer=back, imported=start) or ()
        cycles.append([start, *chain])
    return cycles


def test_import_cycles_are_found() -> None:
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c", "p.d"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    graph.add_import(importer="p.d", imported="p.a")

    assert import_cycles(graph) == [["p.a", "p.b", "p.c", "p.a"]]


def test_no_import_cycle_between_modules() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)

    cycles = import_cycles(graph)

    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
