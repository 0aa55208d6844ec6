"""The collaborative (block-matching) Wiener stage (`dipstop.collaborative`)."""

import numpy as np
import pytest
import torch

import dipstop.collaborative as collaborative
from dipstop.collaborative import (
    collaborative_threshold,
    collaborative_wiener,
    dct_2d,
    match,
    reference_grid,
    wavelet_2d,
)
from dipstop.metrics import psnr
from dipstop.wiener import wiener_filter

pytestmark = pytest.mark.usefixtures("one_thread")


def _texture(h: int = 48, w: int = 48) -> np.ndarray:
    """A checker-like texture that repeats every 6 pixels, on a slow ramp."""
    yy, xx = np.mgrid[0:h, 0:w]
    return 0.3 + 0.3 * (yy / h) + 0.2 * np.sign(np.sin(xx * np.pi / 3) * np.sin(yy * np.pi / 3))


def test_matching_finds_a_copied_patch_first_after_the_reference_itself():
    rng = np.random.default_rng(0)
    img = rng.random((40, 40)).astype(np.float32)
    img[20:28, 25:33] = img[5:13, 6:14]  # a copy of the patch at (5, 6), 15 rows and 19 cols on
    where, dist = match(torch.from_numpy(img), torch.tensor([5]), torch.tensor([6]), 8, 19, 4)
    nw = 40 - 8 + 1
    assert where[0, :2].tolist() == [5 * nw + 6, 20 * nw + 25]
    assert dist[0, :2].tolist() == [0.0, 0.0] and dist[0, 2] > 0.01


def test_matching_never_picks_a_patch_outside_the_image():
    img = torch.rand(20, 20)
    where, _ = match(img, reference_grid(13, 3), reference_grid(13, 3), 8, 10, 32)
    assert int(where.min()) >= 0 and int(where.max()) < 13 * 13


def test_a_repeated_texture_is_recovered_from_a_pilot_that_smoothed_it():
    """The stage's reason to be: noise differs from patch to patch of a group, the texture does
    not, so a group averages the noise away where a single patch cannot."""
    rng = np.random.default_rng(1)
    truth = _texture().astype(np.float32)
    noisy = truth + rng.normal(0, 25 / 255, truth.shape).astype(np.float32)
    pilot = 0.5 * truth + 0.5 * truth.mean()  # the texture at half its contrast
    grouped = wiener_filter(noisy, pilot, 25, collaborative=1)
    sliding = wiener_filter(noisy, pilot, 25, collaborative=0)
    assert psnr(grouped, truth) > psnr(sliding, truth) + 2


def test_a_vanishing_sigma_gives_back_the_noisy_image_and_a_tiny_image_the_pilot():
    rng = np.random.default_rng(2)
    noisy, pilot = (torch.from_numpy(rng.random((2, 30, 26)).astype(np.float32)) for _ in "ab")
    out = collaborative_wiener(noisy, pilot, pilot.mean(0), 1e-6)
    assert torch.allclose(out, noisy, atol=1e-4)
    small = pilot[:, :7]
    assert torch.equal(collaborative_wiener(noisy[:, :7], small, small[0], 0.1), small)


def test_bands_of_references_give_the_image_one_band_gives(monkeypatch):
    rng = np.random.default_rng(3)
    truth = torch.from_numpy(_texture(40, 36).astype(np.float32))[None]
    noisy = truth + torch.from_numpy(rng.normal(0, 0.1, truth.shape).astype(np.float32))
    whole = collaborative_wiener(noisy, truth, truth[0], 0.1, radius=6)
    monkeypatch.setattr(collaborative, "BAND_REFERENCES", 20)  # one reference row a band
    assert torch.allclose(whole, collaborative_wiener(noisy, truth, truth[0], 0.1, radius=6),
                          atol=1e-5)  # fmt: skip


def _flat_beside_busy(seed: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(truth, noisy): a flat left half at 0.5 beside a random right half, noise std 0.1."""
    rng = np.random.default_rng(seed)
    truth = np.full((48, 48), 0.5, np.float32)
    truth[:, 24:] = rng.random((48, 24)).astype(np.float32)
    t = torch.from_numpy(truth)[None]
    return t, t + torch.from_numpy(rng.normal(0, 0.1, t.shape).astype(np.float32))


def test_flat_parts_where_patches_tie_are_all_covered():
    """In a flat part every patch equals the reference; the reference must still be in its
    own group, or pixels no group holds come out as 0 / 0."""
    truth, noisy = _flat_beside_busy()
    out = collaborative_wiener(noisy, truth, truth[0], 0.1, radius=8)
    assert bool(torch.isfinite(out).all())


def test_groups_are_weighted_by_how_little_noise_their_estimate_keeps():
    """Next to the busy half, flat groups (few open gains: little noise kept) must outweigh
    the groups that reach into the busy half: 0.0065 against 0.0090 unweighted."""
    truth, noisy = _flat_beside_busy()
    out = collaborative_wiener(noisy, truth, truth[0], 0.1, radius=8)
    near_border = out[0, :, 14:24] - 0.5
    assert float(near_border.square().mean().sqrt()) < 0.0075


def test_a_threshold_of_zero_keeps_every_coefficient_and_so_the_noisy_image():
    rng = np.random.default_rng(5)
    noisy = torch.from_numpy(rng.random((2, 30, 26)).astype(np.float32))
    out = collaborative_threshold(noisy, noisy.mean(0), 0.1, threshold=0.0)
    assert torch.allclose(out, noisy, atol=1e-5)
    assert not torch.allclose(collaborative_threshold(noisy, noisy.mean(0), 0.1), noisy, atol=1e-2)


def test_hard_thresholding_a_group_beats_thresholding_its_patch_alone():
    """BM3D's first stage: the texture repeats across a group and is kept by the 1-D
    transform across it, while a patch alone cannot tell it from the noise."""
    rng = np.random.default_rng(6)
    truth = torch.from_numpy(_texture().astype(np.float32))
    noisy = truth + torch.from_numpy(rng.normal(0, 25 / 255, truth.shape).astype(np.float32))
    grouped = collaborative_threshold(noisy[None], noisy, 25 / 255)[0]
    alone = collaborative_threshold(noisy[None], noisy, 25 / 255, group=1)[0]
    assert psnr(grouped, truth) > psnr(alone, truth) + 2
    assert psnr(grouped, truth) > psnr(noisy, truth) + 6


def test_the_first_stage_thresholds_in_bm3ds_wavelet_by_default():
    """BM3D's bior1.5 (on CBSD432 whole photos +0.06 dB to the filter's image at sigma 25
    over the DCT): pinned, since the default's images depend on it."""
    rng = np.random.default_rng(7)
    noisy = torch.from_numpy(rng.random((1, 32, 32)).astype(np.float32))
    default = collaborative_threshold(noisy, noisy[0], 0.1)
    assert torch.equal(default, collaborative_threshold(noisy, noisy[0], 0.1, wavelet="bior1.5"))
    assert not torch.allclose(default, collaborative_threshold(noisy, noisy[0], 0.1, wavelet=None),
                              atol=1e-3)  # fmt: skip


def test_the_wavelet_basis_is_bm3ds_normalised_biorthogonal_one():
    analysis, synthesis = wavelet_2d(8)
    one = torch.kron(torch.ones(1, 8), torch.ones(1, 8)) / 8
    assert torch.allclose(analysis[0], one[0], atol=1e-6)  # the coarsest: the patch's mean
    assert not torch.allclose(analysis, synthesis, atol=1e-2)  # not orthogonal, unlike the DCT
    assert not torch.allclose(analysis, dct_2d(8), atol=1e-2)
    haar, _ = wavelet_2d(8, "haar")
    assert not torch.allclose(analysis, haar, atol=1e-2)
    with pytest.raises(ValueError, match="power of 2"):
        wavelet_2d(6)
