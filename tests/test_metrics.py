import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dipstop.metrics import psnr, ssim


@pytest.mark.parametrize("shape", [(40, 56, 3), (33, 20, 1), (64, 64)])
def test_ssim_and_psnr_match_scikit_image(shape):
    rng = np.random.default_rng(0)
    clean = rng.random(shape)
    noisy = np.clip(clean + rng.normal(0, 0.1, shape), 0, 1)
    channel_axis = -1 if len(shape) == 3 else None
    expected = structural_similarity(noisy, clean, channel_axis=channel_axis, data_range=1.0)
    assert ssim(noisy, clean) == pytest.approx(expected, abs=1e-9)
    assert psnr(noisy, clean) == pytest.approx(
        peak_signal_noise_ratio(clean, noisy, data_range=1.0), abs=1e-9
    )


def test_tensor_and_array_inputs_agree(smooth_rgb):
    clean = smooth_rgb / 255.0
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, 0.05, clean.shape), 0, 1)
    t = torch.from_numpy(noisy).permute(2, 0, 1).float().unsqueeze(0)
    assert ssim(t, clean) == pytest.approx(ssim(noisy.astype(np.float32), clean), abs=1e-6)
    assert psnr(t, clean) == pytest.approx(psnr(noisy.astype(np.float32), clean), abs=1e-6)
    assert ssim(clean, clean) == pytest.approx(1.0) and psnr(clean, clean) == float("inf")
