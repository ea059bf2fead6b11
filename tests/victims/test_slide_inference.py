"""Sliding-window inference as mmseg's ``slide_inference`` defines it: the window grid, the logits averaged over
overlapping windows (equal to mmseg's own method and to the mean of each window's logits computed on its own),
batched over windows, gradients to the input; the victim follows its config's ``test_cfg``."""

from __future__ import annotations

import pytest
import torch

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.victims.base import VICTIMS
from advlab.victims.inference import InferenceMode, slide_inference, slide_windows

INFO = DataInfo(5, (3, 40, 72), [str(i) for i in range(5)], (0.5,) * 3, (0.25,) * 3)
#: a narrow MiT-B0 (one layer per stage) with 32x32 windows every 24 pixels
SLIDE = {"model.backbone.num_layers": [1, 1, 1, 1], "model.backbone.embed_dims": 16,
         "model.decode_head.in_channels": [16, 32, 80, 128], "model.decode_head.channels": 32,
         "model.test_cfg.crop_size": (32, 32), "model.test_cfg.stride": (24, 24)}  # fmt: skip


def test_window_grid_follows_mmseg_and_covers_the_image():
    # 40x72, crop 32, stride 24: rows start at 0 and (shifted back to end at 40) 8; columns at 0, 24, 40
    windows = slide_windows(40, 72, (32, 32), (24, 24))
    assert windows == [(0, 32, 0, 32), (0, 32, 24, 56), (0, 32, 40, 72),
                       (8, 40, 0, 32), (8, 40, 24, 56), (8, 40, 40, 72)]  # fmt: skip
    # an image smaller than the crop is one window of its own size
    assert slide_windows(20, 30, (32, 32), (24, 24)) == [(0, 20, 0, 30)]


def test_slide_inference_is_the_mean_of_independent_window_logits_with_gradients():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 5, padding=2)  # position-independent: overlapping windows differ at borders
    calls = []

    def logits_fn(z):
        calls.append(z.shape[0])
        return conv(z) * z.mean((1, 2, 3), keepdim=True)  # depends on the whole window, not only the pixel

    x = torch.rand(2, 3, 40, 72, requires_grad=True)
    out = slide_inference(logits_fn, x, (32, 32), (24, 24))
    assert calls == [12]  # 6 windows x 2 images in one batch
    total, count = torch.zeros(2, 4, 40, 72), torch.zeros(40, 72)
    for y1, y2, x1, x2 in slide_windows(40, 72, (32, 32), (24, 24)):
        for i in range(2):  # each window of each image on its own
            total[i, :, y1:y2, x1:x2] += logits_fn(x[i : i + 1, :, y1:y2, x1:x2])[0].detach()
        count[y1:y2, x1:x2] += 1
    assert count.min() == 1 and count.max() == 4
    torch.testing.assert_close(out.detach(), total / count)
    calls.clear()
    chunked = slide_inference(logits_fn, x, (32, 32), (24, 24), window_batch=5)
    assert calls == [5, 5, 2]
    torch.testing.assert_close(chunked, out)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and (x.grad.abs().sum((0, 1)) > 0).all()


@pytest.mark.slow
def test_segformer_victim_evaluates_by_slide_inference_as_mmseg_does():
    builder = VICTIMS.build(VICTIMS.parse({"name": "segformer_b0", "cfg_options": SLIDE}))
    victim = builder.build(INFO, 5).eval().requires_grad_(False)
    assert victim.inference == InferenceMode("slide", (32, 32), (24, 24))
    x = torch.rand(2, 3, 40, 72, requires_grad=True)
    out = victim(x)
    assert out.shape == (2, 5, 40, 72)
    # mmseg's own EncoderDecoder.slide_inference on the same normalised input
    z = ((x.detach() - victim.mean) / victim.std).clone()
    from mmengine.config import ConfigDict

    victim.net.test_cfg = ConfigDict(victim.net.test_cfg)  # built from a plain dict; mmseg reads attributes
    with torch.no_grad():
        reference = victim.net.slide_inference(z, [{}])
    torch.testing.assert_close(out.detach(), reference, rtol=1e-4, atol=1e-5)
    whole = victim.logits(z)
    assert not torch.allclose(whole, reference, atol=1e-3)  # the windows matter
    out[:, :, :, 30:50].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # training mode (the fit loop) runs the whole input, as mmseg's loss() does
    victim.train()
    torch.manual_seed(1)  # the same dropout draws for both
    trained = victim(x.detach())
    torch.manual_seed(1)
    torch.testing.assert_close(trained, victim.logits(z), rtol=1e-4, atol=1e-5)


def test_test_cfg_mode_whole_and_bad_slide_settings():
    assert InferenceMode.from_mmseg({"mode": "whole"}) == InferenceMode()
    assert InferenceMode.from_mmseg(None) == InferenceMode()
    with pytest.raises(ConfigError, match="crop_size"):
        InferenceMode.from_mmseg({"mode": "slide", "crop_size": (32, 32)})
    with pytest.raises(ConfigError, match="mode"):
        InferenceMode.from_mmseg({"mode": "tta"})
    with pytest.raises(ConfigError, match="victim.window_batch"):
        VICTIMS.parse({"name": "segformer_b0", "window_batch": 0})
