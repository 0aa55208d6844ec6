"""The peer denoisers of benchmarks/peers.py: each denoises, on the pixels it is given."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

from dipstop.errors import DipstopError
from dipstop.lab.peers import bm3d_denoise, nlmeans_denoise, pair_downsample, zsn2n_denoise
from dipstop.metrics import psnr
from dipstop.noise import add_gaussian_noise


@pytest.fixture(scope="module")
def pair(smooth_rgb):
    clean = smooth_rgb / 255.0
    return clean, add_gaussian_noise(clean, 25, seed=5)


def test_pair_downsample_averages_each_blocks_two_diagonals():
    x = torch.rand(1, 3, 6, 8)
    a, b = pair_downsample(x)
    assert a.shape == b.shape == (1, 3, 3, 4)
    assert torch.allclose(a, (x[..., 0::2, 1::2] + x[..., 1::2, 0::2]) / 2)
    assert torch.allclose(b, (x[..., 0::2, 0::2] + x[..., 1::2, 1::2]) / 2)


def test_zsn2n_learns_to_denoise_without_a_noise_level(pair):
    clean, noisy = pair
    short, longer = zsn2n_denoise(noisy, steps=1), zsn2n_denoise(noisy, steps=300)
    assert longer.shape == noisy.shape and longer.dtype == np.float32
    assert psnr(longer, clean) > psnr(noisy, clean) + 2.0
    assert psnr(longer, clean) > psnr(short, clean) + 1.0  # it is the training that helps
    gray = zsn2n_denoise(noisy[:, :, 0], steps=2)
    assert gray.shape == noisy.shape[:2]


def test_nlmeans_denoises_with_its_own_sigma_estimate(pair):
    clean, noisy = pair
    out = nlmeans_denoise(noisy)
    assert out.shape == noisy.shape and psnr(out, clean) > psnr(noisy, clean) + 2.0


def test_bm3d_denoises_at_the_given_sigma(pair):
    clean, noisy = pair
    right, wrong = bm3d_denoise(noisy, 25), bm3d_denoise(noisy, 2)
    assert psnr(right, clean) > psnr(noisy, clean) + 3.0
    assert psnr(right, clean) > psnr(wrong, clean) + 2.0  # sigma is used, and in 0-255 units


def test_bm3d_without_its_package_names_the_extra(pair, monkeypatch):
    real = builtins.__import__

    def no_bm3d(name, *args, **kwargs):
        if name == "bm3d":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bm3d)
    with pytest.raises(DipstopError, match=r"pip install 'dipstop\[peers\]'"):
        bm3d_denoise(pair[1], 25)


def test_the_peers_benchmark_stores_each_row_once_and_shares_kept_fits(tmp_path, smooth_rgb):
    """Rows are stored once, a rerun skips them; a run with more fits a tile fits only the
    seeds the kept folder lacks, and its CPU figure counts every fit of its image."""
    import json
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    import cv2

    root = Path(__file__).resolve().parents[1]
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(6):  # the validation photos of a folder of 6: the first and the sixth
        cv2.imwrite(str(data / f"p{i}.png"), np.roll(smooth_rgb, 9 * i, axis=1))
    store = tmp_path / "peers.sqlite"
    opts = {"width": 8, "max_iters": 3, "patience": 2, "ensemble": 2}
    cmd = [sys.executable, "-m", "benchmarks.peers", "--data", str(data), "--photos", "2",
           "--shard", "1/2",  # of the two photos, this worker's: the second
           "--sigmas", "25", "--methods", "nlmeans,dipstop", "--store", str(store),
           "--dipstop-options", json.dumps(opts)]  # fmt: skip
    first = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True)
    assert "p5.png sigma 25 dipstop:" in first.stdout
    rows = sqlite3.connect(store).execute("SELECT method, psnr, options FROM peers").fetchall()
    assert {r[0] for r in sqlite3.connect(store).execute("SELECT photo FROM peers")} == {"p5.png"}
    assert sorted(r[0] for r in rows) == ["dipstop", "nlmeans"]
    psnrs = {r[0]: r[1] for r in rows}
    assert psnrs["nlmeans"] > 22.5 and 5 < psnrs["dipstop"] < 40  # noisy input: 20.2 dB
    (kept,) = (tmp_path / "peers").glob("p5_25_*.partial")  # the fits stay for larger runs
    assert sorted(p.name for p in kept.iterdir()) == ["tile_000000_seed0.pt",
                                                      "tile_000000_seed1.pt"]  # fmt: skip
    again = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True)
    assert "sigma 25 dipstop:" not in again.stdout  # a rerun skips stored rows
    table = {line.split(" | ")[1].split()[0]: line for line in again.stdout.splitlines()
             if line.startswith("| 25 |")}  # fmt: skip
    assert table["dipstop"].endswith("| 1.000 | 1.000 |")  # the ratios' reference: itself
    paired = f"| {psnrs['nlmeans'] - psnrs['dipstop']:+.2f} +- nan (1) |"  # on the same photo
    assert paired in table["nlmeans"]
    per_photo = next(line for line in again.stdout.splitlines() if line.startswith("| p5.png |"))
    assert per_photo == f"| p5.png | {psnrs['nlmeans']:.2f} | {psnrs['dipstop']:.2f} |"
    assert json.dumps(opts, sort_keys=True) in table["dipstop"]
    assert len(sqlite3.connect(store).execute("SELECT * FROM peers").fetchall()) == 2
    three = subprocess.run([*cmd[:-1], json.dumps({**opts, "ensemble": 3})],
                           cwd=root, capture_output=True, text=True, check=True)  # fmt: skip
    assert "p5.png sigma 25 dipstop:" in three.stdout
    assert len(list(kept.iterdir())) == 3  # the third seed's fit joins the two kept
    cpu = dict(sqlite3.connect(store).execute(
        "SELECT options, fits_cpu_s FROM peers WHERE method = 'dipstop'").fetchall())  # fmt: skip
    two_fits, three_fits = (cpu[o] for o in sorted(cpu))  # '"ensemble": 2' sorts first
    each = [torch.load(p, weights_only=True)["result"]["cpu_seconds"]
            for p in sorted(kept.iterdir())]  # fmt: skip
    assert min(each) > 0 and two_fits == pytest.approx(sum(each[:2]))
    assert three_fits == pytest.approx(sum(each))  # all three fits, the kept ones included
    resumed = sqlite3.connect(store).execute(
        "SELECT resumed FROM peers WHERE options LIKE '%\"ensemble\": 3%'").fetchone()  # fmt: skip
    assert resumed == (1,)  # its process time is the third seed's alone


def test_a_row_another_run_stored_meanwhile_is_kept_not_a_crash(tmp_path, smooth_rgb, monkeypatch):
    """Two runs on one store (two workers, or a worker and a hand-started run) may finish
    the same row: the second keeps the first's row and goes on."""
    import sqlite3

    import cv2

    from benchmarks import peers

    data = tmp_path / "photos"
    data.mkdir()
    cv2.imwrite(str(data / "p0.png"), smooth_rgb)
    store = tmp_path / "peers.sqlite"
    real = peers.timed

    def meanwhile(fn, x):
        out = real(fn, x)
        with sqlite3.connect(store) as other:  # the other run stores its row first
            other.execute("INSERT INTO peers (photo, sigma, method, psnr, options) "
                          "VALUES ('p0.png', 25, 'nlmeans', -1, '')")  # fmt: skip
        return out

    monkeypatch.setattr(peers, "timed", meanwhile)
    assert peers.main(["--data", str(data), "--photos", "1", "--sigmas", "25",
                       "--methods", "nlmeans", "--store", str(store)]) == 0  # fmt: skip
    rows = sqlite3.connect(store).execute("SELECT psnr FROM peers").fetchall()
    assert rows == [(-1.0,)]
