"""The library's layers: the core (models, players, backend, losses, targets, nets, checks, the
callbacks and measurements they use) never imports the course tooling (experiments, ablation,
plots, the command line), which imports the core. Read from the source, no backend needed."""

import ast
import pathlib
import subprocess
import sys

ALLLIB = pathlib.Path(__file__).resolve().parents[1] / "alllib"
TOOLING = {"configs", "experiments", "ablation", "plots", "__main__"}
CORE = ["duel", "gan", "conditional_gan", "label_learner", "distiller", "auction", "losses",
        "targets", "nets", "checks", "callbacks", "metrics", "backend/__init__",
        "backend/tensorflow", "backend/jax", "backend/torch"]


def imported_at_import_time(module):
    """The alllib modules a file imports at its top level (not inside functions)."""
    tree = ast.parse((ALLLIB / f"{module}.py").read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("alllib"):
            parts = node.module.split(".")
            names.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("alllib."))
    return names


def test_the_core_never_imports_the_course_tooling():
    for module in CORE:
        assert not imported_at_import_time(module) & TOOLING, module


def test_only_the_backend_package_imports_a_framework():
    frameworks = ("import tensorflow", "import jax", "import torch", "from jax", "from torch",
                  "from tensorflow")
    for path in ALLLIB.rglob("*.py"):
        if path.parent.name == "backend":
            continue
        top_level = [line for line in path.read_text().splitlines() if line.startswith(frameworks)]
        assert not top_level, (path.name, top_level)


def test_importing_alllib_starts_no_framework_until_a_model_is_used():
    probe = (
        "import sys, alllib\n"
        "from alllib import configs, data\n"
        "frameworks = {'keras', 'tensorflow', 'jax', 'torch'}\n"
        "print(sorted(frameworks & set(sys.modules)))\n"
        "alllib.GAN, alllib.metrics\n"  # load on first use
        "print('keras' in sys.modules, sorted(set(alllib.__all__) - set(dir(alllib))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ALLLIB.parent, capture_output=True,
                            text=True)
    assert result.stdout.split("\n")[:2] == ["[]", "True []"], result.stdout + result.stderr
