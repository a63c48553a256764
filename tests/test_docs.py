"""The README stays true: the command reference matches --help, the quick start has two commands."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_reference():
    spec = importlib.util.spec_from_file_location("make_reference", ROOT / "docs" / "make_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_command_reference_is_current():
    mod = _make_reference()
    assert mod.updated_readme() == (ROOT / "README.md").read_text(), \
        "README command reference is stale: run python docs/make_reference.py"
    for name in ("train", "translate", "sample-styles", "export", "import-official", "info"):
        assert f"### `munit {name}`" in mod.reference()


def test_quick_start_has_two_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [l for l in block.strip().splitlines() if l.strip()]
    assert len(lines) == 2
    assert lines[0].startswith("pip install . && munit translate")
    assert "pytest" in lines[1]
    for path in ("examples/cat.png", "docs/quickstart-grid.png"):
        assert path in text
    assert (ROOT / "examples" / "cat.png").exists()
