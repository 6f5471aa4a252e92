"""The wheel installs one top-level name, `reasoner`, and everything the project needs beneath it."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Our wheel, built as pip builds it: the folder it is in, and what the build printed."""
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(root / "dist"), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return root, build.stdout + build.stderr


@pytest.fixture(scope="module")
def installed(built: tuple[Path, str]) -> Path:
    """A fresh venv holding only our wheel (no dependencies): returns its site-packages."""
    root = built[0]
    (wheel,) = (root / "dist").glob("reasoner-*.whl")
    venv.create(root / "venv", with_pip=False)
    python = root / "venv" / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return site


def test_the_build_backend_has_nothing_to_warn_of(built: tuple[Path, str]) -> None:
    # setuptools gave `license = {text = ...}` an end date (2027-02-18), after which it fails the
    # build; and it warned of every prompts folder as a package it would leave out (26 warnings).
    # (pip's own warnings, about the machine's package indexes, are not the project's.)
    output = built[1]
    assert "BuildBackendWarning" not in output and "deprecated" not in output.lower(), output


def test_the_wheel_adds_no_top_level_name_but_reasoner(installed: Path) -> None:
    before = {"_distutils_hack", "distutils-precedence.pth", "pip", "setuptools", "pkg_resources", "__pycache__"}
    added = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info")} - before
    assert added == {"reasoner"}


def test_the_wheel_carries_every_layer_and_its_prompts(installed: Path) -> None:
    pkg = installed / "reasoner"
    for module in ("strategies/react.py", "tools/calculator.py", "bench/gsm8k.py", "cli/main.py", "testing/scripted.py"):
        assert (pkg / module).is_file(), module
    assert list((pkg / "strategies" / "prompts").rglob("*.j2")), "strategy prompts missing from the wheel"
    assert (pkg / "verifiers" / "models" / "mistake_finder.json").is_file(), "the shipped mistake-finder missing from the wheel"
    entry_points = next(installed.glob("reasoner-*.dist-info")) / "entry_points.txt"
    text = entry_points.read_text()
    assert "reasoner = reasoner.cli.main:main" in text
    assert "self-consistency = reasoner.strategies.self_consistency:SelfConsistency" in text


def test_a_clone_that_is_not_installed_imports_its_layers_from_its_own_folders(tmp_path: Path) -> None:
    import shutil
    import site
    import sysconfig

    clone = tmp_path / "clone"
    clone.mkdir()
    for part in ("pyproject.toml", "reasoner", "strategies", "tools", "benchmarks"):
        source = REPO / part
        (shutil.copytree(source, clone / part) if source.is_dir() else shutil.copy(source, clone / part))
    # -S: no site-packages .pth files run, so no editable install can answer for the clone.
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    code = (
        f"import sys; sys.path[:0] = ['', *{deps!r}]\n"
        "from reasoner.strategies.few_shot_cot import FewShotCoT\n"
        "import reasoner, reasoner.strategies, reasoner.tools.calculator, reasoner.bench.report\n"
        "names = ('reasoner', 'reasoner.strategies', 'reasoner.tools.calculator', 'reasoner.bench.report')\n"
        "print(*(sys.modules[name].__file__ for name in names))\n"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=clone, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(path.startswith(str(clone)) for path in result.stdout.split()), result.stdout
