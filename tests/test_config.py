import json

import pytest

from munit_cli.config import (RunConfig, TrainConfig, from_dict, load_run_config_file, model_from_json,
                              model_preset, to_json, train_from_json, train_preset)
from munit_cli.errors import MunitError


@pytest.mark.parametrize("name", ["munit", "small", "tiny"])
def test_presets_round_trip(name):
    m, t = model_preset(name), train_preset(name)
    assert model_from_json(to_json(m)) == m
    assert train_from_json(to_json(t)) == t


def test_paper_defaults():
    m, t = model_preset("munit"), TrainConfig()
    assert (m.gen.dim, m.gen.style_dim, m.gen.mlp_dim, m.gen.n_downsample, m.gen.n_res) == (64, 8, 256, 2, 4)
    assert (m.dis.dim, m.dis.n_layer, m.dis.num_scales, m.dis.gan_type) == (64, 4, 3, "lsgan")
    assert (t.lr, t.beta1, t.beta2, t.weight_decay, t.lr_step, t.lr_gamma) == (1e-4, 0.5, 0.999, 1e-4, 100_000, 0.5)
    assert (t.gan_w, t.recon_x_w, t.recon_c_w, t.recon_s_w, t.recon_x_cyc_w, t.vgg_w) == (1, 10, 1, 1, 0, 0)
    assert t.batch_size == 1 and t.iters == 1_000_000


def test_unknown_key_named():
    with pytest.raises(MunitError, match="gen.dimm"):
        model_from_json(json.dumps({"gen": {"dimm": 3}}))


def test_invalid_value_named():
    with pytest.raises(MunitError, match="gen.pad_type"):
        model_from_json(json.dumps({"gen": {"pad_type": "mirror"}}))
    with pytest.raises(MunitError, match="batch_size"):
        train_from_json(json.dumps({"batch_size": 0}))
    with pytest.raises(MunitError, match="lr"):
        train_from_json(json.dumps({"lr": "fast"}))
    with pytest.raises(MunitError, match="unknown preset"):
        model_preset("huge")


def test_config_file_overrides_preset(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"model": {"gen": {"dim": 16}}, "train": {"lr": 2e-4}}))
    cfg = load_run_config_file(f, RunConfig(model_preset("small"), train_preset("small")))
    assert cfg.model.gen.dim == 16 and cfg.model.image_size == 128 and cfg.train.lr == 2e-4
    f.write_text("{not json")
    with pytest.raises(MunitError, match="not valid JSON"):
        load_run_config_file(f, RunConfig())
