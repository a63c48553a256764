import os

import pytest
import torch

from munit_cli import atomic
from munit_cli.checkpoint import (base_metadata, load_generators, load_tensors, parse_info, save_generators,
                                  save_tensors)
from munit_cli.errors import MunitError
from munit_cli.models import build_generator


def test_save_load_identical_outputs(tiny_gen_ckpt, tiny_cfg):
    torch.manual_seed(0)
    # rebuild the same generators the fixture saved
    gens = {"a": build_generator(tiny_cfg), "b": build_generator(tiny_cfg)}
    bundle = load_generators(tiny_gen_ckpt)
    assert bundle.info.kind == "generator" and bundle.info.domains == ("dog", "cat") and bundle.info.step == 7
    x = torch.rand(2, 3, 36, 44) * 2 - 1
    s = torch.randn(2, 8, 1, 1)
    with torch.no_grad():
        for d in "ab":
            gens[d].eval()
            c, _ = gens[d].encode(x)
            c2, _ = bundle.gens[d].encode(x)
            assert torch.equal(gens[d].decode(c, s), bundle.gens[d].decode(c2, s))


def test_strict_load_names_keys(tmp_path, tiny_cfg):
    gen = build_generator(tiny_cfg)
    tensors = {f"gen_a.{k}": v for k, v in gen.state_dict().items()}
    tensors.update({f"gen_b.{k}": v for k, v in gen.state_dict().items()})
    del tensors["gen_b.mlp.model.0.weight"]
    tensors["gen_a.extra.weight"] = torch.zeros(1)
    p = tmp_path / "bad.safetensors"
    save_tensors(p, tensors, base_metadata("generator", tiny_cfg, ("a", "b"), 0))
    with pytest.raises(MunitError) as e:
        load_generators(p)
    assert "gen_a.extra.weight" in str(e.value) or "gen_b.mlp.model.0.weight" in str(e.value)
    tensors.pop("gen_a.extra.weight")
    tensors["gen_b.mlp.model.0.weight"] = torch.zeros(3, 3)
    save_tensors(p, tensors, base_metadata("generator", tiny_cfg, ("a", "b"), 0))
    with pytest.raises(MunitError, match="wrong shape gen_b.mlp.model.0.weight"):
        load_generators(p)


def test_atomic_write_keeps_old_file(tmp_path, tiny_cfg, monkeypatch):
    p = tmp_path / "m.safetensors"
    save_tensors(p, {"x": torch.ones(3)}, base_metadata("generator", tiny_cfg, ("a", "b"), 1))
    before = p.read_bytes()

    real_fsync = os.fsync

    def boom(fd):  # the write is interrupted after data went to the temp file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(MunitError, match="previous file"):
        save_tensors(p, {"x": torch.zeros(1000)}, base_metadata("generator", tiny_cfg, ("a", "b"), 2))
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left
    assert torch.equal(load_tensors(p)["x"], torch.ones(3))


def test_interrupt_mid_write_keeps_old_file(tmp_path, tiny_cfg, monkeypatch):
    p = tmp_path / "m.safetensors"
    save_tensors(p, {"x": torch.ones(3)}, base_metadata("generator", tiny_cfg, ("a", "b"), 1))
    before = p.read_bytes()
    monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_tensors(p, {"x": torch.zeros(5)}, base_metadata("generator", tiny_cfg, ("a", "b"), 2))
    assert p.read_bytes() == before
    assert len(list(tmp_path.iterdir())) == 1


def test_truncated_and_foreign_files(tmp_path, tiny_gen_ckpt):
    data = tiny_gen_ckpt.read_bytes()
    t = tmp_path / "trunc.safetensors"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(MunitError, match="truncated"):
        parse_info(t)
    f = tmp_path / "foreign.safetensors"
    save_tensors(f, {"w": torch.ones(2)}, {})
    with pytest.raises(MunitError, match="not a munit checkpoint"):
        parse_info(f)
    newer = tmp_path / "newer.safetensors"
    save_tensors(newer, {"w": torch.ones(2)}, {"format_version": "99", "kind": "generator"})
    with pytest.raises(MunitError, match="upgrade munit"):
        parse_info(newer)


def test_metadata_fields(tiny_gen_ckpt):
    info = parse_info(tiny_gen_ckpt)
    for key in ("format_version", "kind", "model_config", "domain_a", "domain_b", "image_size", "step", "munit_version"):
        assert key in info.meta
    assert info.image_size == 32
