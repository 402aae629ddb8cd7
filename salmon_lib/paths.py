"""Where files named by parameters are found: one resolver for every stage.

JupyterLab starts a notebook's kernel in `notebooks/`, the runner in the project root and a user's
script wherever it likes, so a relative path in a parameter ("principles/judge.yaml") is looked
up in the working directory first, then in the project root. Errors name the parameter and every
place tried.
"""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError

# The checkout (or install) holding the salmon_lib package; computed once, used everywhere.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def candidates(value: str | Path, beside_project: bool = False) -> list[Path]:
    """Where `value` is looked for, in order. `beside_project` adds the project root's parents,
    for data kept next to a checkout (a git worktree sits one folder deeper than the clone)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return [path]
    bases = [Path.cwd(), PROJECT_ROOT, *(PROJECT_ROOT.parents if beside_project else ())]
    out: list[Path] = []
    for base in bases:
        if (base / path) not in out:
            out.append(base / path)
    return out


def find_file(value: str | Path, beside_project: bool = False) -> Path | None:
    """The first existing file among `candidates(value)`, absolute; None when there is none."""
    return next((p.resolve() for p in candidates(value, beside_project) if p.is_file()), None)


def resolve_file(param: str, value: str | Path, beside_project: bool = False) -> Path:
    """The file a parameter names, absolute; a ConfigError naming the parameter and every place
    tried when it exists nowhere."""
    found = find_file(value, beside_project)
    if found is None:
        places = candidates(value, beside_project)
        folder = next((p for p in places if p.is_dir()), None)
        if folder is not None:
            raise ConfigError(f"{param}: {value}: {folder} is a folder, expected a file")
        raise ConfigError(f"{param}: {value}: file not found (tried {', '.join(map(str, places))})")
    return found


def resolve_run_dir(value: str | Path) -> str:
    """A relative run directory means the project's own outputs/, whatever the working directory
    (never notebooks/outputs/); outside a checkout (no pyproject.toml) it is the working directory's."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    base = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path.cwd()
    return str(base / path)
