"""The floors of the house: the model library never imports upward (workflows, Beam jobs,
serving, orchestration), workflows never import Beam or serving, and no module imports
itself back through others (no cycle, lazy imports included)."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("seminar_tf", "beam_pipelines", "serving")

LIBRARY = ("seminar_tf._keras_mode", "seminar_tf.config", "seminar_tf.features",
           "seminar_tf.feature_names", "seminar_tf.example_writer",
           "seminar_tf.metrics", "seminar_tf.tables", "seminar_tf.serialization",
           "seminar_tf.progress",
           "seminar_tf.data", "seminar_tf.layers", "seminar_tf.models", "seminar_tf.tasks",
           "seminar_tf.pq")
WORKFLOWS = ("seminar_tf.model_dir", "seminar_tf.training", "seminar_tf.evaluation",
             "seminar_tf.pretraining", "seminar_tf.export", "seminar_tf.codebooks",
             "seminar_tf.api", "seminar_tf.tfx_trainer")
# orchestration (may import anything): the CLI, the stages and their runners, reports
ORCHESTRATION = ("seminar_tf.cli", "seminar_tf.stages", "seminar_tf.pipeline",
                 "seminar_tf.demo", "seminar_tf.report", "seminar_tf.kfp_pipeline")


def _in(module, prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def floor(module):
    if module == "seminar_tf":
        return "package"
    for name, prefixes in (("library", LIBRARY), ("workflow", WORKFLOWS),
                           ("orchestration", ORCHESTRATION)):
        if _in(module, prefixes):
            return name
    for p in ("beam_pipelines", "serving"):
        if _in(module, (p,)):
            return p
    raise AssertionError(f"{module} has no floor: add it to tests/test_imports.py")


ALLOWED = {"library": {"library", "package"}, "workflow": {"library", "workflow", "package"},
           "beam_pipelines": {"library", "beam_pipelines", "package"},
           "serving": {"library", "serving", "package"},
           "orchestration": {"library", "workflow", "beam_pipelines", "serving",
                             "orchestration", "package"},
           "package": {"package", "library", "workflow"}}  # lazy notebook API in __init__


def modules():
    out = {}
    for pkg in PACKAGES:
        for root, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(root, f), ROOT)[:-3].replace(os.sep, ".")
                    out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = \
                        os.path.join(root, f)
    return out


def imports(path, known):
    """Project modules imported anywhere in the file (top level or inside functions)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n:
                found.add(n)
    return found


def graph():
    mods = modules()
    g = {}
    for m, path in mods.items():
        # a package's __init__ is not a dependency of its own submodules: skip edges to
        # package inits that only group modules
        g[m] = {d for d in imports(path, mods) if d != m and not (
            mods[d].endswith("__init__.py") and d != "seminar_tf" and _in(m, (d,)))}
    return g


def test_no_upward_imports():
    bad = []
    for m, deps in graph().items():
        for d in deps:
            if floor(d) not in ALLOWED[floor(m)]:
                bad.append(f"{m} ({floor(m)}) imports {d} ({floor(d)})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles():
    g = graph()
    g = {m: {d for d in deps if d != "seminar_tf"} for m, deps in g.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])
    assert not cycles, "\n".join(cycles)


def test_modules_under_400_lines():
    long = {m: n for m, p in modules().items()
            if (n := sum(1 for _ in open(p, encoding="utf-8"))) > 400}
    assert not long, long
