"""The package's layering, read from its source with `ast` (every import, also those inside functions):
the runner sits on top, so nothing below it imports salmon_lib.runner; and a stage package uses
another stage package only through its public names."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "salmon_lib"
STAGE_PACKAGES = ("prompts", "self_align", "engrave", "preferences", "reward", "rl", "evaluate")

# Cross-stage private imports allowed for now. This list only shrinks: an entry whose import is gone
# fails the test until it is deleted here. (Empty since the shared scoring layer, salmon_lib/scoring.)
KNOWN_PRIVATE: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """[(absolute module, [names imported from it])] of every import statement in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [alias.name for alias in node.names]))
    return out


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "salmon_lib" and parts[1] in STAGE_PACKAGES else None


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def upward_imports() -> list[str]:
    found = []
    for path in sources():
        if "runner" in path.relative_to(PACKAGE).parts[:1]:
            continue
        for target, _ in imports(path):
            if target == "salmon_lib.runner" or target.startswith("salmon_lib.runner."):
                found.append(f"{module_name(path)} imports {target}")
    return found


def private_cross_stage_imports() -> set[tuple[str, str]]:
    found = set()
    for path in sources():
        here = module_name(path)
        for target, names in imports(path):
            there = stage_of(target)
            if there is None or there == stage_of(here):
                continue
            # a private module on the way (salmon_lib.x._impl) or a private name taken from it
            if any(part.startswith("_") for part in target.split(".")[2:]):
                found.add((here, target))
            found |= {(here, f"{target}.{n}") for n in names if n.startswith("_")}
    return found


def test_the_resolver_reads_relative_imports_as_the_interpreter_does(tmp_path):
    assert ("salmon_lib.launch", ["launch"]) in imports(PACKAGE / "engrave" / "stage.py")
    assert ("salmon_lib.config", ["ConfigError", "StageConfig"]) in imports(PACKAGE / "rl" / "config.py")


def test_no_module_below_the_runner_imports_it():
    assert upward_imports() == [], "base and stage modules must not depend on salmon_lib.runner"


def test_stage_packages_use_each_other_only_through_public_names():
    found = private_cross_stage_imports()
    assert found - KNOWN_PRIVATE == set(), "import the public name, or move the helper to a shared module"
    gone = KNOWN_PRIVATE - found
    assert not gone, f"no longer imported, delete from KNOWN_PRIVATE: {sorted(gone)}"


@pytest.mark.parametrize("snippet, expected", [
    ("from ..runner.kernel import x\n", ["salmon_lib.engrave.mod imports salmon_lib.runner.kernel"]),
    ("def f():\n    from salmon_lib.runner import cli\n", ["salmon_lib.engrave.mod imports salmon_lib.runner"]),
    ("from ..launch import launch\n", []),
])
def test_an_upward_import_is_found_even_inside_a_function(monkeypatch, tmp_path, snippet, expected):
    root = tmp_path / "salmon_lib"
    (root / "engrave").mkdir(parents=True)
    (root / "engrave" / "mod.py").write_text(snippet)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root)
    assert upward_imports() == expected


def test_a_private_name_from_another_stage_is_found(monkeypatch, tmp_path):
    root = tmp_path / "salmon_lib"
    (root / "rl").mkdir(parents=True)
    (root / "rl" / "mod.py").write_text(
        "from ..reward.score import _batch, load\nfrom ..rl.draw import _own\nfrom ..preferences._impl import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root)
    assert private_cross_stage_imports() == {("salmon_lib.rl.mod", "salmon_lib.reward.score._batch"),
                                             ("salmon_lib.rl.mod", "salmon_lib.preferences._impl")}
