"""`--precision auto` (issue 11): bf16 only where this device runs it natively, fp32 elsewhere;
explicit bf16 on a CPU that emulates it runs after one warning. The capability probe is faked,
so every case is checked on any machine."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_domain, make_image
from munit_cli import benchmark as bench, runtime
from munit_cli.cli import app
from munit_cli.runtime import CpuBf16, auto_precision, check_precision

CPU = torch.device("cpu")


@pytest.fixture
def native_cpu(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_bf16", lambda: CpuBf16(True, "the CPU has AMX (bf16 tile instructions)"))


@pytest.fixture
def emulating_cpu(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_bf16", lambda: CpuBf16(False, "torch's CPU kernels run at AVX2 level"))
    monkeypatch.setattr(runtime, "measured_bf16_slowdown", lambda: 123.0)


def fake_cuda(monkeypatch, bf16: bool, major: int) -> torch.device:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
    return torch.device("cuda")


def test_auto_on_a_native_bf16_cpu(native_cpu):
    choice = auto_precision(CPU)
    assert choice.precision == "bf16" and "AMX" in choice.reason
    assert check_precision("auto", CPU) == "bf16"
    assert bench.default_precisions(CPU) == ("fp32", "bf16")
    assert not runtime.bf16_emulated("bf16", CPU)


def test_auto_on_an_emulating_cpu(emulating_cpu):
    choice = auto_precision(CPU)
    assert choice.precision == "fp32" and "AVX2" in choice.reason
    assert check_precision("auto", CPU) == "fp32"
    assert check_precision("bf16", CPU) == "bf16"  # explicit: still runs
    assert bench.default_precisions(CPU) == ("fp32",)  # emulated bf16 only when asked for
    assert runtime.bf16_emulated("bf16", CPU) and not runtime.bf16_emulated("fp32", CPU)


@pytest.mark.parametrize("bf16, major, want", [(True, 8, "bf16"), (False, 7, "fp16"), (False, 6, "fp32")])
def test_auto_on_cuda(monkeypatch, bf16, major, want):
    dev = fake_cuda(monkeypatch, bf16, major)
    choice = auto_precision(dev)
    assert choice.precision == want and "Fake GPU" in choice.reason
    assert check_precision("auto", dev) == want
    assert bench.default_precisions(dev) == (("fp32", "bf16", "fp16") if bf16 else ("fp32", "fp16"))


def test_auto_on_mps_is_fp32():
    assert auto_precision(torch.device("mps")).precision == "fp32"


def test_bad_precisions_are_usage_errors():
    with pytest.raises(runtime.MunitError) as e:
        check_precision("fp8", CPU)
    assert e.value.exit_code == 2 and "fp8" in str(e.value)
    with pytest.raises(runtime.MunitError) as e:
        check_precision("fp16", CPU)
    assert e.value.exit_code == 2 and "auto" in str(e.value)


def test_probe_reads_the_cpu_and_its_overrides(monkeypatch):
    """The real probe: not x86, below AVX-512, or oneDNN capped below bf16 -> not native."""
    probe = runtime.cpu_bf16.__wrapped__  # the uncached function
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):  # whatever this machine's environment sets
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(runtime.platform, "machine", lambda: "arm64")
    assert not probe().native and "arm64" in probe().reason
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not probe().native and "AVX2" in probe().reason
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert probe().native and "AVX512-BF16" in probe().reason
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not probe().native and "ONEDNN_MAX_CPU_ISA" in probe().reason
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert probe().native
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert not probe().native and "neither" in probe().reason


def test_measured_slowdown_is_a_positive_ratio():
    assert runtime.measured_bf16_slowdown.__wrapped__() > 0


def test_translate_defaults_to_fp32_where_bf16_is_emulated(emulating_cpu, tmp_path, tiny_gen_ckpt, monkeypatch):
    seen = []
    real = runtime.autocast
    import munit_cli.inference as inference

    monkeypatch.setattr(inference, "autocast", lambda device, precision: seen.append(precision) or real(device, precision))
    img = make_image(tmp_path / "dog.png", size=(32, 32))
    runner = CliRunner()
    r = runner.invoke(app, ["translate", str(img), "-m", str(tiny_gen_ckpt), "-n", "2", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert seen and set(seen) == {"fp32"}
    assert "emulated" not in r.stderr
    r = runner.invoke(app, ["translate", str(img), "-m", str(tiny_gen_ckpt), "-n", "2", "-o", str(tmp_path / "out2"),
                            "--precision", "bf16"])
    assert r.exit_code == 0, r.output
    assert "bf16" in seen
    warning = [ln for ln in r.stderr.splitlines() if "emulated" in ln]
    assert len(warning) == 1 and "123x slower" in warning[0] and "--precision fp32" in warning[0]


def test_translate_defaults_to_bf16_where_native(native_cpu, tmp_path, tiny_gen_ckpt, monkeypatch):
    seen = []
    real = runtime.autocast
    import munit_cli.inference as inference

    monkeypatch.setattr(inference, "autocast", lambda device, precision: seen.append(precision) or real(device, precision))
    img = make_image(tmp_path / "dog.png", size=(32, 32))
    r = CliRunner().invoke(app, ["translate", str(img), "-m", str(tiny_gen_ckpt), "-n", "2", "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert set(seen) == {"bf16"} and "warning" not in r.stderr


@pytest.mark.parametrize("fixture, want", [("emulating_cpu", "fp32"), ("native_cpu", "bf16")])
def test_train_auto_is_resolved_and_recorded(request, fixture, want, tmp_path, one_thread):
    request.getfixturevalue(fixture)
    make_domain(tmp_path / "data" / "dog", 4, seed=1, size=(36, 36))
    make_domain(tmp_path / "data" / "cat", 4, seed=2, size=(36, 36))
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "data"), "--src", "dog", "--tgt", "cat",
                                 "--preset", "tiny", "--iters", "2", "--out", str(run), "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["precision"] == "auto"  # the request, re-resolved on the machine that resumes
    assert cfg["resolved"]["precision"] == want and cfg["resolved"]["precision_reason"].startswith("CPU:")
    assert f", {want}, into" in r.stderr
    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "data"), "--src", "dog", "--tgt", "cat",
                                 "--preset", "tiny", "--dry-run", "--device", "cpu"])
    assert r.exit_code == 0 and json.loads(r.stdout)["precision"] == want


def test_bench_lists_emulated_bf16_only_when_asked(emulating_cpu):
    cfg = bench.quick_config(CPU, "tiny")
    assert cfg.resolved_precisions() == ("fp32",)
    peak = bench.machine_peak(CPU, "bf16", 1)  # sized down where emulated: quick however slow bf16 is
    assert peak["conv_gflops"] > 0 and peak["matmul_gflops"] > 0


@pytest.mark.parametrize("fixture, want", [("emulating_cpu", "fp32"), ("native_cpu", "bf16")])
def test_info_system_says_what_auto_picks(request, fixture, want):
    request.getfixturevalue(fixture)
    r = CliRunner().invoke(app, ["info", "--system", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    cpu = next(d for d in out["devices"] if d["device"] == "cpu")
    assert cpu["auto_precision"] == want and cpu["reason"].startswith("CPU:")
    assert out["cpu_bf16_native"] == (want == "bf16")
    r = CliRunner().invoke(app, ["info", "--system"])
    assert r.exit_code == 0 and f"--precision auto -> {want}" in r.stdout
    r = CliRunner().invoke(app, ["info"])
    assert r.exit_code == 2 and "--system" in r.stderr


def test_resuming_a_bf16_run_where_bf16_is_emulated_warns(emulating_cpu, tmp_path, one_thread):
    make_domain(tmp_path / "data" / "dog", 4, seed=1, size=(36, 36))
    make_domain(tmp_path / "data" / "cat", 4, seed=2, size=(36, 36))
    run = tmp_path / "run"
    common = ["--preset", "tiny", "--out", str(run), "--quiet", "--device", "cpu"]
    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "data"), "--src", "dog", "--tgt", "cat",
                                 "--iters", "1", "--precision", "bf16", *common])
    assert r.exit_code == 0, r.output
    assert sum("emulated" in ln for ln in r.stderr.splitlines()) == 1
    r = CliRunner().invoke(app, ["train", "--resume", "--iters", "2", *common])
    assert r.exit_code == 0, r.output
    assert sum("emulated" in ln for ln in r.stderr.splitlines()) == 1  # the checkpoint's bf16, not a flag
