"""The amlkit modules a service imports, so its folder carries those and nothing else.

A service folder runs where amlkit is not installed (an Azure ML deployment), so it carries
a copy of the amlkit modules its scoring script needs, found here rather than listed by hand:
the closure of the amlkit imports (at the top of a module or inside its functions) of the
scoring script, plus, for a pickled model, the modules its pickle refers to (the classes of
amlkit.training.transformers), with every package ``__init__`` on the way (they import
nothing). The runtime loads each backend in a method ``_load_<backend>``; only the
service's own backend's loader counts, so an ONNX service does not carry the Keras code.
"""

from __future__ import annotations

import ast
import pickletools
from collections.abc import Iterable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the amlkit package folder
SCORING_SCRIPT = Path(__file__).with_name("scoring_script.py")
BATCH_DRIVER = Path(__file__).with_name("batch_driver.py")
RUNTIME_MODULE = "amlkit.serving.runtime"


def module_file(name: str) -> Path | None:
    """Return the source file of amlkit module ``name``, or None when it is not a module."""
    if name != "amlkit" and not name.startswith("amlkit."):
        return None
    base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imported(path: Path, module: str, backend: str) -> set[str]:
    """Return the amlkit modules the file of ``module`` imports, for a ``backend`` service."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    if module == RUNTIME_MODULE:
        skipped = {
            id(node)
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef)
            and fn.name.startswith("_load_")
            and fn.name != f"_load_{backend}"
            for node in ast.walk(fn)
        }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            # "from amlkit.serving import auth" names a module; "from x import name" does not
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in names if module_file(name)}


def pickled_modules(path: str | Path) -> set[str]:
    """Return the amlkit modules a pickle refers to (what unpickling it imports).

    Reads the pickle's opcodes (``GLOBAL``'s and ``STACK_GLOBAL``'s module names); nothing
    is unpickled.
    """
    found = set()
    with open(path, "rb") as handle:
        for opcode, arg, _ in pickletools.genops(handle):
            if isinstance(arg, str):
                found.add(arg.split(" ")[0] if opcode.name == "GLOBAL" else arg)
    return {name for name in found if name != "amlkit" and module_file(name)}


def service_modules(
    backend: str, extra: Iterable[str] = (), script: Path = SCORING_SCRIPT
) -> dict[str, Path]:
    """Return the amlkit modules a service of ``backend`` imports, with their files.

    Args:
        backend: ``onnx``, ``sklearn`` or ``keras`` (the runtime's ``_load_<backend>``).
        extra: more modules the service needs, such as :func:`pickled_modules` of its model.
        script: the entry script: the online service's (default) or :data:`BATCH_DRIVER`.

    Returns:
        ``{dotted name: source file}``, sorted by name, packages included.
    """
    todo = _imported(script, "", backend) | {n for n in extra if module_file(n)}
    found: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or name in found:
            continue
        found[name] = path
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}
        todo |= _imported(path, name, backend)
    return dict(sorted(found.items()))


def copy_modules(modules: dict[str, Path], folder: Path) -> None:
    """Copy module files into ``folder/amlkit/...`` as they lie in the package."""
    for path in modules.values():
        target = folder / path.relative_to(PACKAGE_DIR.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
