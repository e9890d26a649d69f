"""Outside ``kerafine/_keras_compat.py``, kerafine uses only public Keras/TensorFlow API.

Every ``kerafine/**/*.py`` except the compatibility module is parsed with ``ast``
and checked against four rules. A failure names ``file:line`` and the construct.

1. **No internal imports.** No import of ``keras.src`` or ``tensorflow.python``
   (nor ``keras.src``/``tf.python`` reached as an attribute, nor the string given
   to ``importlib.import_module``), and no import of a private module or name of
   another package (``from scipy.stats import _stats_py``).

2. **No private attributes of objects that are not kerafine's own.** ``x._name``
   (dunders and IPython's ``_repr_*_`` display methods excepted), and ``getattr``/``setattr``/``hasattr``/``delattr`` with a
   literal private name, are allowed only when ``x`` is

   * ``self``, ``cls`` or ``super()`` *and* ``_name`` is defined (``def``, class attribute,
     ``self._name = ...``) by the enclosing class or by one of its kerafine base
     classes: a kerafine callback subclassing ``keras.callbacks.EarlyStopping``
     must not reach a Keras private (``self._is_improvement``) through ``self``
     either; ``self._a._b`` also needs ``_b`` to be a name kerafine defines;
   * a kerafine module or a name imported from kerafine (``import
     kerafine.drift.stats as S; S._ks_statistic``): module-private helpers shared
     inside the package;
   * a class defined in the same file (``_Cls._helper``), or another instance of
     the enclosing class in one of its comparison/copy dunders (``other._x``
     inside ``__eq__``; not ``__init__``/``__call__``, which take any object);
   * a local name known, in the same function, to hold an instance of a kerafine
     class that defines ``_name`` (or whose kerafine ancestor does): tested with
     ``isinstance(x, KerafineClass)`` somewhere in the function, or bound by
     ``x = KerafineClass(...)`` / ``x = kerafine_module.KerafineClass(...)``.
     (Flow-insensitive on purpose: a function that narrows ``x`` once is about
     kerafine objects; the rule still rejects ``model._x`` and friends.)

   Anything else (``model._nodes_by_depth``, ``strategy.extended._in_...``) goes
   through a named function of ``kerafine._keras_compat``.

3. **No stack-frame inspection:** ``inspect.currentframe``/``stack``/``getouterframes``,
   ``sys._getframe``, ``f_back``/``f_locals``/``f_globals``.

4. **No module-level mutable registry.** A module-level name bound to a mutable
   container (a ``dict``/``list``/``set`` display or comprehension, or a call of
   ``dict``, ``list``, ``set``, ``defaultdict``, ``OrderedDict``, ``deque``,
   ``Counter``, ``WeakSet``, ``WeakKeyDictionary``, ``WeakValueDictionary``)
   must not be mutated inside a function (item/slice assignment or deletion,
   a mutating method such as ``append``/``add``/``update``/``setdefault``/``pop``,
   augmented assignment, or rebinding through ``global``). Building a constant
   table at import time (mutations at module level) is allowed; state that lives
   across calls belongs to an object the caller owns. ``__all__`` is exempt, and
   so is each entry of ``ALLOWED_MODULE_STATE`` below, which says why.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "kerafine"
COMPAT = PACKAGE / "_keras_compat.py"

MUTABLE_CALLS = {
    "dict",
    "list",
    "set",
    "defaultdict",
    "OrderedDict",
    "deque",
    "Counter",
    "WeakSet",
    "WeakKeyDictionary",
    "WeakValueDictionary",
}
MUTATING_METHODS = {
    "append",
    "add",
    "update",
    "setdefault",
    "pop",
    "popitem",
    "clear",
    "extend",
    "insert",
    "remove",
    "discard",
    "__setitem__",
    "__delitem__",
    "appendleft",
    "popleft",
    "difference_update",
    "intersection_update",
    "symmetric_difference_update",
    "sort",
    "reverse",
}
# Module-level mutable state that is a property of the process, not of a fit or a
# model, each with its reason. Keep this short; a new entry needs a reason as strong.
ALLOWED_MODULE_STATE = {
    ("kerafine/tensorboard.py", "_writers"): (
        "one tf.summary file writer per directory per process: two writers on one "
        "directory write two event files racing for the same run; guarded by a lock"
    ),
    ("kerafine/tensorboard.py", "_runs"): (
        "the custom-scalars layout is written once per run by the process writing it, from the "
        "scalar tags that process wrote there (several callbacks and fits share one run): per "
        "run directory per process, as _writers; guarded by the same lock"
    ),
}
FRAME_ATTRS = {"f_back", "f_locals", "f_globals", "_getframe", "currentframe", "getouterframes", "getinnerframes"}


def _is_private(name: str) -> bool:
    if re.fullmatch(r"_repr_[a-z]+_", name):  # IPython's display protocol (_repr_html_, ...): public by convention
        return False
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _sources() -> list[pathlib.Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != COMPAT)


def _rel(path: pathlib.Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _parse(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _private_names_defined_in(tree: ast.Module) -> set[str]:
    """The private names a module defines: defs, classes, class fields, ``self._x = ...``, arguments."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ClassDef):
            pass
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)  # dataclass fields
    return {n for n in names if _is_private(n)}


def _kerafine_private_names() -> set[str]:
    names: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        names |= _private_names_defined_in(_parse(path))
    return names


OWN_PRIVATE = _kerafine_private_names()


def _class_table(tree: ast.Module) -> dict[str, dict]:
    """``{class name: {"defines": private names, "bases": base class names}}`` of one module."""
    table: dict[str, dict] = {}
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        defines: set[str] = set()
        for node in ast.walk(cls):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not cls:
                defines.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    defines.add(node.attr)
        for item in cls.body:
            targets = (
                item.targets
                if isinstance(item, ast.Assign)
                else [item.target]
                if isinstance(item, ast.AnnAssign)
                else []
            )
            defines.update(t.id for t in targets if isinstance(t, ast.Name))
        # `keras.callbacks.EarlyStopping` stays dotted, so it never resolves to kerafine's EarlyStopping.
        bases = [ast.unparse(b) for b in cls.bases]
        entry = table.setdefault(cls.name, {"defines": set(), "bases": []})
        entry["defines"] |= {n for n in defines if _is_private(n)}
        entry["bases"] += bases
    return table


def _package_class_table() -> dict[str, dict]:
    table: dict[str, dict] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, entry in _class_table(_parse(path)).items():
            merged = table.setdefault(name, {"defines": set(), "bases": []})
            merged["defines"] |= entry["defines"]
            merged["bases"] += entry["bases"]
    return table


CLASSES = _package_class_table()


class _Checker(ast.NodeVisitor):
    def __init__(self, path: pathlib.Path, tree: ast.Module):
        self.path = path
        self.tree = tree
        self.problems: list[str] = []
        self.kerafine_names: set[str] = {"kerafine"}
        self.local_classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        self.dunder_depth = 0
        self.own = OWN_PRIVATE | _private_names_defined_in(tree)
        self.classes = dict(CLASSES)
        self.classes.update(_class_table(tree))
        self.class_stack: list[str] = []
        self.typed: list[dict[str, set[str]]] = []  # per function: local name -> kerafine classes

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "kerafine":
                        self.kerafine_names.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0 or (node.module or "").split(".")[0] == "kerafine":
                    self.kerafine_names.update(a.asname or a.name for a in node.names)

    def _defined_by_class(self, attr: str) -> bool:
        """Is ``attr`` defined by the enclosing kerafine class or a kerafine ancestor of it?"""
        todo, seen = list(self.class_stack[-1:]), set()
        while todo:
            name = todo.pop()
            if name in seen or name not in self.classes:
                continue  # a Keras base (Callback, Layer): its privates are not kerafine's
            seen.add(name)
            if attr in self.classes[name]["defines"]:
                return True
            todo.extend(self.classes[name]["bases"])
        return False

    def _class_defines(self, cls_name: str, attr: str) -> bool:
        todo, seen = [cls_name], set()
        while todo:
            name = todo.pop()
            if name in seen or name not in self.classes:
                continue
            seen.add(name)
            if attr in self.classes[name]["defines"]:
                return True
            todo.extend(self.classes[name]["bases"])
        return False

    def _kerafine_class(self, node: ast.AST) -> str | None:
        """The kerafine class named by ``node`` (``EvalData``, ``predictions.EvalData``), else None."""
        if isinstance(node, ast.Name) and (node.id in self.kerafine_names or node.id in self.local_classes):
            return node.id if node.id in self.classes else None
        if isinstance(node, ast.Attribute):
            root = node
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in self.kerafine_names and node.attr in self.classes:
                return node.attr
        return None

    def _typed_names(self, function: ast.AST) -> dict[str, set[str]]:
        typed: dict[str, set[str]] = {}
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Name)
            ):
                kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                for kind in kinds:
                    cls = self._kerafine_class(kind)
                    if cls:
                        typed.setdefault(node.args[0].id, set()).add(cls)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                cls = self._kerafine_class(node.value.func)
                if cls:
                    for t in node.targets:
                        if isinstance(t, ast.Name):
                            typed.setdefault(t.id, set()).add(cls)
        return typed

    def report(self, node: ast.AST, what: str) -> None:
        self.problems.append(f"{_rel(self.path)}:{node.lineno}: {what}")

    # rule 1 -----------------------------------------------------------------
    def _check_module_path(self, node: ast.AST, module: str) -> None:
        parts = module.split(".")
        if module.startswith("keras.src") or module.startswith("tensorflow.python") or parts[:2] == ["tf", "python"]:
            self.report(node, f"imports the internal module {module!r}")
        elif parts[0] != "kerafine" and any(_is_private(p) for p in parts):
            self.report(node, f"imports the private module {module!r} of another package")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module_path(node, alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self._check_module_path(node, node.module)
            internal = node.module.startswith(("keras.src", "tensorflow.python"))
            if node.module.split(".")[0] != "kerafine" and not internal:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full.startswith("keras.src") or full.startswith("tensorflow.python"):
                        self.report(node, f"imports the internal module {full!r}")
                    elif _is_private(alias.name):
                        self.report(node, f"imports the private name {full!r} of another package")
        self.generic_visit(node)

    # rule 2 and 3 -------------------------------------------------------------
    def _owned(self, value: ast.AST, attr: str) -> bool:
        if isinstance(value, ast.Name):
            if value.id in ("self", "cls"):
                return self._defined_by_class(attr) if self.class_stack else attr in self.own
            if value.id in self.kerafine_names or value.id in self.local_classes:
                return True
            if self.dunder_depth and self.class_stack and self._defined_by_class(attr):
                return True  # other._x inside __eq__/__lt__/... of a kerafine class
            if self.typed and any(self._class_defines(c, attr) for c in self.typed[-1].get(value.id, ())):
                return True  # isinstance(x, KerafineClass) or x = KerafineClass(...) in this function
            return False
        if isinstance(value, ast.Attribute):
            links, root = [attr], value
            while isinstance(root, ast.Attribute):
                links.append(root.attr)
                root = root.value
            if not isinstance(root, ast.Name):
                return False
            if root.id in self.kerafine_names:
                return True  # kerafine.x.y._z: a chain rooted at a kerafine module
            # self._detector._align: every link is a private name kerafine defines; a
            # public link (self.model._x) leaves kerafine's own objects.
            if root.id not in ("self", "cls") or not all(_is_private(l) for l in links):
                return False
            first, rest = links[-1], links[:-1]
            return self._owned(root, first) and all(l in self.own for l in rest)
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "type":
            return attr in self.own  # type(self)._x
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            # super()._x: defined by a kerafine base of the enclosing class (not by Keras's Callback).
            return bool(self.class_stack) and any(
                self._class_defines(base, attr) for base in self.classes.get(self.class_stack[-1], {}).get("bases", [])
            )
        return False

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name):
            if node.value.id == "keras" and node.attr == "src":
                self.report(node, "reaches keras.src")
            if node.value.id in ("tf", "tensorflow") and node.attr == "python":
                self.report(node, "reaches tensorflow.python")
            if node.value.id == "inspect" and node.attr in ("stack", "trace"):
                self.report(node, f"inspects stack frames (inspect.{node.attr})")
        if node.attr in FRAME_ATTRS:
            self.report(node, f"inspects stack frames (.{node.attr})")
        elif _is_private(node.attr) and not self._owned(node.value, node.attr):
            self.report(node, f"touches the private attribute {ast.unparse(node)!r} of an object kerafine does not own")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Name)
            and func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
        ):
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and _is_private(name.value):
                if not self._owned(node.args[0], name.value):
                    self.report(node, f"{func.id}(..., {name.value!r}) on an object kerafine does not own")
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            self._check_module_path(node, node.args[0].value)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        # Comparison/copy dunders may read `other._x` of their own class; __init__ and __call__
        # take arbitrary objects, so they get no such licence.
        dunder = (
            node.name.startswith("__")
            and node.name.endswith("__")
            and node.name not in ("__init__", "__new__", "__call__", "__post_init__", "__init_subclass__")
        )
        self.dunder_depth += dunder
        self.typed.append(self._typed_names(node))
        self.generic_visit(node)
        self.typed.pop()
        self.dunder_depth -= dunder

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.class_stack.append(node.name)
        self.generic_visit(node)
        self.class_stack.pop()


def _is_mutable_value(value: ast.AST | None) -> bool:
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return True
    if isinstance(value, ast.Call):
        f = value.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        return name in MUTABLE_CALLS
    return False


def _registry_problems(path: pathlib.Path, tree: ast.Module) -> list[str]:
    containers: dict[str, int] = {}
    for stmt in tree.body:
        targets, value = [], None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        if _is_mutable_value(value):
            for t in targets:
                if isinstance(t, ast.Name) and t.id != "__all__" and (_rel(path), t.id) not in ALLOWED_MODULE_STATE:
                    containers[t.id] = stmt.lineno
    if not containers:
        return []
    problems = []

    def flag(node: ast.AST, name: str, how: str) -> None:
        problems.append(
            f"{_rel(path)}:{node.lineno}: mutates the module-level container {name!r} "
            f"(defined line {containers[name]}) {how}"
        )

    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    seen: set[tuple[int, int]] = set()
    for fn in functions:
        for node in ast.walk(fn):
            key = (id(node), 0)
            if key in seen:
                continue
            seen.add(key)
            if isinstance(node, ast.Global):
                for name in node.names:
                    if name in containers:
                        flag(node, name, "(rebinds it through `global`)")
            elif isinstance(node, (ast.Subscript,)) and isinstance(node.ctx, (ast.Store, ast.Del)):
                if isinstance(node.value, ast.Name) and node.value.id in containers:
                    flag(node, node.value.id, "(item assignment/deletion)")
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id in containers:
                flag(node, node.target.id, "(augmented assignment)")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                if isinstance(owner, ast.Name) and owner.id in containers and node.func.attr in MUTATING_METHODS:
                    flag(node, owner.id, f"(.{node.func.attr}())")
    return sorted(set(problems))


def _all_problems() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"internals": [], "registries": []}
    for path in _sources():
        tree = _parse(path)
        checker = _Checker(path, tree)
        checker.visit(tree)
        out["internals"].extend(checker.problems)
        out["registries"].extend(_registry_problems(path, tree))
    return out


def test_the_scan_covers_the_package():
    files = {_rel(p) for p in _sources()}
    assert "kerafine/transfer.py" in files and "kerafine/drift/stats.py" in files
    assert "kerafine/_keras_compat.py" not in files


def test_no_keras_internals_private_attributes_or_stack_frames_outside_the_compat_module():
    problems = _all_problems()["internals"]
    assert not problems, "Keras/TensorFlow internals used outside kerafine/_keras_compat.py:\n" + "\n".join(problems)


def test_no_module_level_mutable_registry():
    problems = _all_problems()["registries"]
    assert not problems, "module-level mutable state:\n" + "\n".join(problems)


# The scanner itself must catch what it claims to catch: each rule on a snippet.
@pytest.mark.parametrize(
    "source, expected",
    [
        ("from keras.src.backend.config import keras_home", "internal module 'keras.src.backend.config'"),
        ("import tensorflow.python.framework", "internal module 'tensorflow.python.framework'"),
        ("from keras import src", "internal module 'keras.src'"),
        ("import keras\nkeras.src.utils", "reaches keras.src"),
        ("from scipy.stats import _stats_py", "private name 'scipy.stats._stats_py'"),
        ("def f(model):\n    return model._nodes_by_depth", "model._nodes_by_depth"),
        ("def f(model):\n    return getattr(model, '_functional', None)", "getattr(..., '_functional')"),
        ("class C:\n    def f(self):\n        return self._keras_private_thing", "self._keras_private_thing"),
        # kerafine defines an `_is_improvement` elsewhere; inherited from Keras here, it is Keras's.
        (
            "import keras\nclass E(keras.callbacks.EarlyStopping):\n    def f(self):\n        return self._is_improvement(1, 2)",
            "self._is_improvement",
        ),
        ("import sys\nsys._getframe(1)", "stack frames"),
        ("import inspect\ninspect.currentframe()", "stack frames"),
        ("import inspect\ninspect.stack()", "stack frames"),
    ],
)
def test_scanner_flags_internals(tmp_path, source, expected):
    path = PACKAGE / "_scanner_probe.py"  # only for file naming; never written
    tree = ast.parse(source)
    checker = _Checker(path, tree)
    checker.visit(tree)
    assert any(expected in p for p in checker.problems), checker.problems
    assert all(p.startswith("kerafine/_scanner_probe.py:") for p in checker.problems)


@pytest.mark.parametrize(
    "source",
    [
        "class C:\n    def __init__(self):\n        self._x = 1\n    def f(self):\n        return self._x",
        "import kerafine.drift.stats as S\nS._ks_statistic",
        "from kerafine import transfer\ntransfer._pin_recorded_inference",
        "class _C:\n    _K = 1\nclass D:\n    def f(self):\n        return _C._K",
        "class C:\n    def __eq__(self, other):\n        return self._x == other._x\n    def g(self):\n        self._x = 0",
        "class Base:\n    def _hook(self):\n        pass\nclass Child(Base):\n    def f(self):\n        self._hook()",
    ],
)
def test_scanner_allows_kerafines_own_private_names(source):
    tree = ast.parse(source)
    checker = _Checker(PACKAGE / "_scanner_probe.py", tree)
    checker.visit(tree)
    assert checker.problems == []


@pytest.mark.parametrize(
    "source, name",
    [
        ("_REG = {}\ndef register(k, v):\n    _REG[k] = v", "_REG"),
        ("import weakref\n_LIVE = weakref.WeakSet()\ndef track(x):\n    _LIVE.add(x)", "_LIVE"),
        ("_SEEN = []\ndef see(x):\n    _SEEN.append(x)", "_SEEN"),
        ("_CACHE = dict()\ndef reset():\n    global _CACHE\n    _CACHE = {}", "_CACHE"),
    ],
)
def test_scanner_flags_module_level_registries(source, name):
    problems = _registry_problems(PACKAGE / "_scanner_probe.py", ast.parse(source))
    assert any(repr(name) in p for p in problems), problems


def test_scanner_allows_constant_tables_built_at_import():
    source = "_TABLE = {}\nfor k in 'ab':\n    _TABLE[k] = k.upper()\ndef get(k):\n    return _TABLE[k]"
    assert _registry_problems(PACKAGE / "_scanner_probe.py", ast.parse(source)) == []
