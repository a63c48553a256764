import json
import subprocess
import sys

from typer.testing import CliRunner

from munit_cli.cli import app

runner = CliRunner()


def test_help_works():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "info" in r.output
    r = runner.invoke(app, ["info", "--help"])
    assert r.exit_code == 0 and "--json" in r.output
    r = subprocess.run([sys.executable, "-m", "munit_cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "info" in r.stdout
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and "munit" in r.output


def test_info_json(tiny_gen_ckpt):
    r = runner.invoke(app, ["info", str(tiny_gen_ckpt), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["kind"] == "generator" and d["domains"] == {"a": "dog", "b": "cat"} and d["step"] == 7
    assert d["parameters"]["gen_a"] == d["parameters"]["gen_b"] > 0
    assert d["model_config"]["gen"]["dim"] == 8


def test_info_table(tiny_gen_ckpt):
    r = runner.invoke(app, ["info", str(tiny_gen_ckpt)])
    assert r.exit_code == 0 and "generator" in r.stdout and "dog" in r.stdout


def test_info_missing_and_foreign(tmp_path):
    r = subprocess.run([sys.executable, "-m", "munit_cli", "info", str(tmp_path / "nope.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error:") and "does not exist" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    bad = tmp_path / "x.safetensors"
    bad.write_text("hello, not a checkpoint")
    r = runner.invoke(app, ["info", str(bad)])
    assert r.exit_code == 1 and "not a safetensors file" in r.output


def test_bad_usage_exit_2():
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 2


def _classifier_file(tmp_path):
    """A file laid out like `munit train-classifier` writes it (kind "classifier")."""
    import torch

    from munit_cli.checkpoint import save_tensors

    path = tmp_path / "clf.safetensors"
    meta = {"format_version": "1", "kind": "classifier", "domain_a": "cat", "domain_b": "dog",
            "classes": json.dumps(["cat", "dog"]), "holdout_accuracy": json.dumps({"cat": 0.97, "dog": 0.95}),
            "recipe": json.dumps({"image_size": 64, "widths": [16, 32]}), "munit_version": "0.1.0",
            "split": json.dumps({"holdout_files": {"cat": [f"cat{i:04d}.jpg" for i in range(100)]}})}
    save_tensors(path, {"clf.conv.weight": torch.zeros(16, 3, 3, 3), "clf.head.weight": torch.zeros(2, 16),
                        "train_hashes": torch.zeros(10, 8, dtype=torch.uint8)}, meta)
    return path


def test_info_describes_a_classifier_generically(tmp_path):
    path = _classifier_file(tmp_path)
    r = runner.invoke(app, ["info", str(path), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["kind"] == "classifier" and d["domains"] == {"a": "cat", "b": "dog"} and d["format_version"] == 1
    assert d["parameters"] == {"clf": 16 * 27 + 32, "train_hashes": 80}
    assert json.loads(d["extra"]["holdout_accuracy"]) == {"cat": 0.97, "dog": 0.95}
    assert json.loads(d["extra"]["recipe"])["widths"] == [16, 32] and len(d["extra"]["split"]) > 1000
    assert any(line.startswith("domain classifier, float32") for line in d["holds"])
    r = runner.invoke(app, ["info", str(path)])
    assert r.exit_code == 0 and "holdout_accuracy" in r.stdout and "a = cat, b = dog" in r.stdout
    flat = " ".join(r.stdout.split())  # the table wraps long cells
    assert "characters, --json shows all)" in flat and "cat0099.jpg" not in flat  # long values are cut in the table


def test_description_is_built_in_the_core(tiny_gen_ckpt, tmp_path):
    from munit_cli.describe import describe

    d = describe(tiny_gen_ckpt)
    assert d.kind == "generator" and d.step == 7 and d.domains == {"a": "dog", "b": "cat"} and not d.has_ema
    assert "styles" not in d.to_dict() and d.holds[0].startswith("generator a (dog)")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest.safetensors").write_bytes(tiny_gen_ckpt.read_bytes())
    assert describe(run).path == str(run / "checkpoints" / "latest.safetensors")
