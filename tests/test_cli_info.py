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
