"""The version floors: requirements-oldest.txt pins exactly the floors make test-oldest tests."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from scripts import import_script

ROOT = Path(__file__).resolve().parents[1]
oldest_python = import_script("tools", "oldest_python")

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10, the floor: pytest brings tomli there
    import tomli as tomllib


def requirement_lines(path: Path) -> list[Requirement]:
    """Return the requirements of a requirements file (no comments, options or editables)."""
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def floors(requirements: list[Requirement]) -> dict[str, Version]:
    """Return the `>=` floor of each requirement that has one, by package name."""
    return {r.name.lower(): Version(s.version) for r in requirements for s in r.specifier
            if s.operator == ">="}


def pins() -> dict[str, Version]:
    """Return requirements-oldest.txt's `==` pins by package name."""
    return {r.name.lower(): Version(s.version)
            for r in requirement_lines(ROOT / "requirements-oldest.txt") for s in r.specifier
            if s.operator == "=="}


def project() -> dict:
    """Return pyproject.toml's [project] table."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_floor_is_pinned_at_the_floor_and_every_pin_is_a_floor() -> None:
    """requirements.txt and pyproject.toml agree on each floor, and the oldest set pins it."""
    declared = floors(requirement_lines(ROOT / "requirements.txt"))
    package = floors([Requirement(d) for d in project()["dependencies"]])
    for name in declared.keys() & package.keys():
        assert declared[name] == package[name], f"{name}: {declared[name]} vs {package[name]}"
    everything = {**declared, **package}
    assert pins() == everything, (
        f"pinned but no floor: {sorted(pins().keys() - everything.keys())}; floor not pinned: "
        f"{sorted(everything.keys() - pins().keys())}; different: "
        f"{sorted(n for n in pins().keys() & everything.keys() if pins()[n] != everything[n])}")


def test_the_oldest_set_is_the_tested_torch_pair_on_python_310() -> None:
    """torch 2.4.1 with its torchvision 0.19.1, numpy 1.x, and Python 3.10 as the floor."""
    assert pins()["torch"] == Version("2.4.1") and pins()["torchvision"] == Version("0.19.1")
    assert pins()["numpy"] < Version("2")
    assert project()["requires-python"] == ">=3.10"
    assert oldest_python.python_floor() == (3, 10)


def test_readme_states_the_tested_floor() -> None:
    """The README names the floor that make test-oldest tests."""
    readme = (ROOT / "README.md").read_text()
    assert "make test-oldest" in readme
    for name in ("torch", "torchvision"):
        assert f"{name} {pins()[name]}" in readme, name
    assert re.search(r"Python 3\.10\b", readme)


def test_oldest_python_prefers_the_oldest_supported_version(monkeypatch, tmp_path: Path) -> None:
    """Among the Pythons found, the oldest at or above the floor wins; none found is None."""
    versions = {"/a/python3.12": (3, 12, 1), "/b/python3.9": (3, 9, 18),
                "/c/python3.10": (3, 10, 13)}
    monkeypatch.setattr(oldest_python, "candidates", lambda floor: [Path(p) for p in versions])
    monkeypatch.setattr(oldest_python, "version_of", lambda p: versions[str(p)])
    assert oldest_python.oldest_supported((3, 10)) == (Path("/c/python3.10"), (3, 10, 13))
    assert oldest_python.oldest_supported((3, 13)) is None
