"""Import structure: no cycles between empp_ff modules, and the inference path
(``import empp_ff.calculator``, the MD drivers, the LAMMPS tooling) loads no
training stack."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "empp_ff"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set) -> set:
    """empp_ff modules imported anywhere in ``path`` (module level or inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: `from .x import y` in package a.b is a.b.x
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # `from pkg import submodule` imports the submodule; `from pkg import name` only pkg
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def test_no_import_cycles():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(files)) for name, path in files.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "active"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "active":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_inference_imports_no_training_stack():
    script = textwrap.dedent(
        """
        import sys
        import empp_ff.calculator
        from empp_ff import EMPPCalculator
        import empp_ff.inference.md, empp_ff.inference.lammps.build, empp_ff.inference.lammps.check
        import empp_ff.inference.lammps.runner, empp_ff.inference.lammps.inputs, empp_ff.neighbours
        assert EMPPCalculator is empp_ff.calculator.EMPPCalculator
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("mace", "e3nn", "torch_geometric")
                     or m.startswith(("empp_ff.train", "empp_ff.model", "empp_ff.empp", "empp_ff.testing",
                                      "empp_ff.data.dataset")))
        print("BAD", bad)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BAD []" in proc.stdout, proc.stdout


def test_lammps_entry_point_imports_nothing_heavy():
    """``import lammps`` runs the entry point in every LAMMPS process: no torch, no ase."""
    script = "import sys\nfrom empp_ff.inference.lammps import get_plugin_dir\nget_plugin_dir()\n" \
             "print('HEAVY', sorted(m for m in ('torch', 'ase', 'numpy') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HEAVY []" in proc.stdout, proc.stdout


#: The package's layers, lowest first (docs/architecture.md): a module may import from its
#: own layer and the layers below it, never above. The root package (``empp_ff``: the
#: version and the lazy ``EMPPCalculator``) stands outside.
LAYERS = [
    {"_dtypes", "_elements", "_versions", "_faults", "_signals", "neighbours"},
    {"_atomic"},
    {"model"},
    {"auxiliary"},
    {"empp", "denoise", "data"},
    {"train"},
    {"export"},
    {"inference"},
    {"calculator", "testing", "cli"},
]


def test_imports_point_down_the_layers():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    level = {entry: i for i, layer in enumerate(LAYERS) for entry in layer}

    def entry(module: str) -> str:
        return module.split(".")[1] if "." in module else module

    unplaced = sorted({entry(m) for m in files if m != "empp_ff"} - set(level))
    assert not unplaced, f"entries without a layer in LAYERS (and docs/architecture.md): {unplaced}"
    upward = [f"{name} -> {target}" for name, path in files.items() if name != "empp_ff"
              for target in _imports(path, set(files))
              if target != "empp_ff" and level[entry(target)] > level[entry(name)]]
    assert not upward, "imports that run up the layers:\n" + "\n".join(sorted(upward))
