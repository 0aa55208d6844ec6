"""Checks that need a CUDA GPU; skipped elsewhere (CI has none). Run on a lent GPU."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from dipstop.api import denoise
from dipstop.codecs import jpeg_bytes, tensor_to_uint8
from dipstop.criteria import CifsCriterion
from dipstop.fitting import FitSettings, Fitter
from dipstop.recording import record
from dipstop.sample import sample_pair

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_denoise_on_cuda_raises_psnr_and_returns_the_input_form():
    clean, noisy = sample_pair(side=64)
    out, res = denoise(noisy, device="cuda", width=16, max_iters=300, patience=100, clean=clean)
    assert out.shape == noisy.shape and out.dtype == np.uint8
    assert res.settings["device"].startswith("cuda")
    noisy_psnr = 10 * np.log10(1 / np.mean((noisy / 255.0 - clean / 255.0) ** 2))
    assert res.psnr > noisy_psnr + 2


def test_cuda_first_step_matches_cpu():
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    still = FitSettings(width=8, z_noise_std=0.0)
    cpu = next(Fitter(noisy, still, "cpu").run(1)).output
    gpu = next(Fitter(noisy, still, "cuda").run(1)).output.cpu()
    # TF32 convolutions (PyTorch's default on Ampere and later) and cuDNN's choice of
    # algorithm: ~1e-3 apart (max 1e-3 failed once on an H100); a wrong network is ~0.1 off
    assert (cpu - gpu).abs().mean() < 2e-3 and (cpu - gpu).abs().max() < 2e-2


@pytest.mark.parametrize("variant", [{"channels_last": True}, {"bf16": True}])
def test_fast_variants_fit_on_cuda(variant):
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    settings = dataclasses.replace(FitSettings(width=8), **variant)
    losses = [it.loss for it in Fitter(noisy, settings, "cuda").run(60)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_cuda_graph_fit_matches_an_eager_fit():
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    graphed = Fitter(noisy, FitSettings(width=8), "cuda")
    eager = Fitter(noisy, FitSettings(width=8, cuda_graph=False), "cuda")
    assert graphed.use_graph and not eager.use_graph
    a = list(graphed.run(150))  # steps 4.. are graph replays
    b = list(eager.run(150))
    assert graphed.use_graph  # the capture worked: no eager fallback
    assert a[-1].output.data_ptr() != a[-2].output.data_ptr()  # each output is its own copy
    # the replayed output and loss belong together
    assert a[-1].loss == pytest.approx(float(((a[-1].output.cpu() - noisy) ** 2).mean()), 1e-4)
    # the same fit up to rounding, which Adam amplifies: compare where the losses settle
    la, lb = np.mean([i.loss for i in a[-20:]]), np.mean([i.loss for i in b[-20:]])
    assert abs(la - lb) < 0.1 * lb and la < 0.7 * np.mean([i.loss for i in a[:5]])


def test_divergence_guard_restores_a_graphed_fit():
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    fitter = Fitter(noisy, FitSettings(width=8, snapshot_every=5), "cuda")
    seen = []
    for it in fitter.run(30):
        seen.append((it.t, it.loss))
        if it.t == 12:  # poison the weights in place, as a numerical blow-up would
            with torch.no_grad():
                next(fitter.net.parameters()).fill_(float("nan"))
    assert [t for t, _ in seen] == list(range(1, 31))
    assert all(math.isfinite(v) for _, v in seen)
    assert fitter.restores >= 1


def test_overlapped_scoring_of_cuda_outputs_matches_inline_scoring():
    """Each output's JPEG, encoded on the worker while the next steps are replayed, is the
    JPEG of that output: the graph's output is copied out before the next replay."""
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    fitter = Fitter(noisy, FitSettings(width=8), "cuda")
    seen = []
    rec = record(
        fitter,
        40,
        [CifsCriterion()],
        depth=1,
        on_row=lambda it, row: seen.append(
            (it.t, row["jpeg_bytes"], jpeg_bytes(tensor_to_uint8(it.output)))
        ),
    )
    assert [t for t, _, _ in seen] == list(range(1, 41)) and rec.iterations == 40
    assert [scored for _, scored, _ in seen] == [again for _, _, again in seen]


def test_a_graphed_fit_resumes_from_a_state_saved_without_graphs(tmp_path):
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    eager = Fitter(noisy, FitSettings(width=8, cuda_graph=False), "cuda")
    losses, state = [], None
    for it in eager.run(42, state_every=40):
        losses.append(it.loss)
        state = it.state or state
    torch.save(state, tmp_path / "state.pt")
    resumed = Fitter(noisy, FitSettings(width=8), "cuda")
    resumed.load_state_dict(torch.load(tmp_path / "state.pt"))
    assert all(g["capturable"] for g in resumed.opt.param_groups)  # kept for the graph
    rest = [it.loss for it in resumed.run(80)]
    # its first steps are eager warm-up steps from the same state as the saved fit's
    assert rest[:2] == pytest.approx(losses[40:42], rel=1e-4)
    assert len(rest) == 40 and resumed.use_graph  # then captured again, no eager fallback
    assert np.mean(rest[-10:]) < np.mean(rest[:5])


def test_a_cuda_index_beyond_the_gpus_is_refused_naming_them():
    from dipstop.errors import DipstopError
    from dipstop.fitting import resolve_device

    n = torch.cuda.device_count()
    assert resolve_device(f"cuda:{n - 1}") == torch.device("cuda", n - 1)
    assert resolve_device(None).type == "cuda"
    with pytest.raises(DipstopError, match=rf"has {n} cuda device.*; use one of cpu, cuda:0"):
        resolve_device(f"cuda:{n}")
