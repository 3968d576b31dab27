"""The floors of the house, read from the folders: the model library never imports upward
(workflows, Beam jobs, serving, orchestration), workflows never import Beam or serving, and no
module imports itself back through others (no cycle, lazy imports included)."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("seminar_tf", "beam_pipelines", "serving")

# The floors are folders: seminar_tf/workflows/ and seminar_tf/orchestration/; every other
# module of seminar_tf is the model library; beam_pipelines/ and serving/ are floors of their
# own. A thin re-export left at a moved path counts as the floor of what it re-exports.
FOLDERS = {"seminar_tf.workflows": "workflow", "seminar_tf.orchestration": "orchestration",
           "beam_pipelines": "beam_pipelines", "serving": "serving"}
SHIMS = {"seminar_tf.cli": "seminar_tf.orchestration.cli",
         "seminar_tf.tfx_trainer": "seminar_tf.workflows.tfx_trainer",
         "seminar_tf.kfp_pipeline": "seminar_tf.orchestration.kfp_pipeline"}


def _in(module, prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def floor(module):
    if module == "seminar_tf":
        return "package"
    module = SHIMS.get(module, module)
    for folder, name in FOLDERS.items():
        if _in(module, (folder,)):
            return name
    if _in(module, ("seminar_tf",)):
        return "library"
    raise AssertionError(f"{module} is outside the packages of tests/test_imports.py")


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


def test_shims_are_thin_re_exports():
    """A module left at a moved path only re-exports its new home (no logic of its own)."""
    mods = modules()
    for shim, target in SHIMS.items():
        tree = ast.parse(open(mods[shim], encoding="utf-8").read())
        assert imports(mods[shim], mods) == {target}, shim
        kinds = {type(n).__name__ for n in tree.body}
        assert kinds <= {"Expr", "Import", "ImportFrom", "If"}, (shim, kinds)


def test_no_module_name_in_two_packages():
    """No file name is shared by two top-level packages (there were two pipeline.py,
    codebooks.py, fuzz.py and metrics.py); __init__, a family's base.py and the thin
    re-exports aside. Within one package a role name may repeat (models/psu.py and
    tasks/psu.py, as in TFRS)."""
    seen = {}
    for m, path in modules().items():
        base = os.path.basename(path)
        if base in ("__init__.py", "base.py") or m in SHIMS:
            continue
        seen.setdefault(base, set()).add(m.split(".")[0])
    dup = {b: sorted(pkgs) for b, pkgs in seen.items() if len(pkgs) > 1}
    assert not dup, dup


def test_moved_workflow_modules_keep_their_old_paths():
    """Notebooks and scripts that import the workflows by their pre-folder paths still do."""
    import importlib

    import seminar_tf
    for old, new in seminar_tf._MOVED.items():
        moved = importlib.import_module(f"seminar_tf.workflows.{new}")
        assert importlib.import_module(f"seminar_tf.{old}") is moved
        assert getattr(seminar_tf, old) is moved
    from seminar_tf.pretraining import restore_into_ranker  # noqa: F401
    from seminar_tf.training import load_model  # noqa: F401
