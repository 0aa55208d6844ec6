"""Curated mutation testing: deliberate bugs, each applied to a copy of the source, must fail
the tests named for it.

Each `Mutation` names a module under src/dipstop, an exact snippet of its source, the
snippet's replacement and the pytest selection that should catch the bug. A mutant is
applied to a temporary copy of src/ (the working tree is never modified) and the named tests
run against the copy from the project root (`PYTHONPATH=<copy>/src` first on the path, so
`import dipstop` finds the copy before the editable install) with `-x -q -p no:cacheprovider`
and a timeout. Outcomes: "killed" (the tests failed), "survived" (they passed), "stale" (the
snippet no longer occurs exactly once: the code moved on, update the mutation), "timeout",
and "broken" (the selection collected no test, or the unmutated tests fail, so a failure
would prove nothing). Each area's tests first run once unmutated to check that.

Why a curated list rather than mutmut: mutmut 3.8.1 (the current release, pip-installable)
mutates every operator and constant of every function and reruns the tests that cover each
mutant. This suite fits real networks (seconds to minutes per test on a CPU), the fitting
loop and tiler are covered by slow end-to-end tests, and mutmut 3 wants the whole suite to
pass under its own trampolined copy of the package first (with --doctest-modules and
--import-mode=importlib here, that alone takes most of an hour on two shared cores). Its
thousands of mutants would then take days, most of them in log text and error messages. A
list of the bugs that matter (off-by-one at a boundary, a wrong table, a dropped snapshot,
truncation for rounding), each run against its narrow tests, takes minutes per area and
says precisely which behaviour is pinned.

Usage (from the project root)::

    python tools/mutation.py                 # every area
    python tools/mutation.py --only guard    # one area (repeatable)
    python tools/mutation.py --list          # the mutations, and which are stale
    python tools/mutation.py --table         # the table of the results saved so far

Results are saved per area as results/mutation/<area>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dipstop.runtime import cpu_name

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
RESULTS = ROOT / "results" / "mutation"
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]


@dataclass(frozen=True)
class Mutation:
    """One deliberate bug: `old` (exactly once in src/dipstop/`module`) becomes `new`;
    `tests` are the pytest arguments (paths, node ids, "-k EXPR") that must fail."""

    area: str
    module: str
    old: str
    new: str
    tests: tuple[str, ...]
    what: str


def m(area: str, module: str, old: str, new: str, tests: str, what: str) -> Mutation:
    """A Mutation; `tests` is split as a shell would split it."""
    return Mutation(area, module, old, new, tuple(shlex.split(tests)), what)


STOP = 'tests/test_stopping.py -k "not denoise"'
WIENER = "tests/test_wiener.py"
COLLAB = "tests/test_collaborative.py tests/test_wiener.py"
CIFS = (
    "tests/test_boundaries.py tests/test_codecs.py "
    "tests/test_experiments.py::test_selection_applies_eq4_per_criterion "
    '-k "cifs or codecs or selection"'
)
POLICY = 'tests/test_boundaries.py tests/test_policies.py -k "since_best or averages or policies"'
TILING = (
    "tests/test_boundaries.py tests/test_tiling.py "
    '-k "crossfade or strip or plan_covers or weights_sum or identity_tiles or constant_per"'
)
LAM = (
    "tests/test_boundaries.py::test_lam_without_a_size_is_the_smallest_calibrated_sizes "
    "tests/test_lambda_sizes.py "
    "tests/test_default_path.py::test_default_lam_is_the_since_best_tables_at_the_estimated_sigma"
)
GUARD = (
    "tests/test_guard_and_resume_edges.py tests/test_fitting.py "
    '-k "guard or diverge or nan or infinite or snapshot or restore"'
)
RESUME_FIT = (
    "tests/test_guard_and_resume_edges.py tests/test_fitting.py "
    '-k "resume or loaded or another_fit"'
)
RESUME_KEY = "tests/test_guard_and_resume_edges.py tests/test_resume_key_properties.py -k key"
IMAGEIO = 'tests/test_boundaries.py tests/test_codecs.py -k "bit or round or quantis or read_as"'
SUMMARY = 'tests/test_boundaries.py -k "peak or stop_iteration"'
NOISE = 'tests/test_boundaries.py tests/test_noise.py -k "synthetic or reproducible"'
SIGMA = (
    "tests/test_boundaries.py::test_sigma_of_an_8_bit_image_is_that_of_its_float_values "
    "tests/test_default_path.py::test_default_lam_is_the_since_best_tables_at_the_estimated_sigma"
)

# fmt: off
MUTATIONS: list[Mutation] = [
    # -- the Eq. 4 stop rule -----------------------------------------------------------------
    m("stop", "stopping.py", "qualifies = (m[: n - patience] <= following_min)",
      "qualifies = (m[: n - patience] < following_min)", STOP, "ties pick the later t"),
    m("stop", "stopping.py", "if n <= patience:\n        return fallback",
      "if n < patience:\n        return fallback", STOP, "a series of exactly S values"),
    m("stop", "stopping.py", "if finite.any() else n - 1", "if finite.any() else 0", STOP,
      "all-NaN series gives the first index"),
    m("stop", "stopping.py", "& finite[: n - patience]", "", STOP, "NaN can be selected"),
    m("stop", "stopping.py", "sliding_window_view(m[1:], patience)",
      "sliding_window_view(m[:-1], patience)", STOP, "window includes t, not t+1..t+S"),
    m("stop", "stopping.py", "return int(hits[0]) if hits.size else fallback",
      "return int(hits[-1]) if hits.size else fallback", STOP, "last qualifying t"),
    m("stop", "stopping.py", "(v < self.best_value or self.best_index < 0)",
      "(v <= self.best_value or self.best_index < 0)", STOP, "online ties move t*"),
    m("stop", "stopping.py", "self.count - 1 - self.best_index >= self.patience",
      "self.count - self.best_index >= self.patience", STOP, "fires one step early"),
    m("stop", "stopping.py", "self.improved = not math.isnan(v) and",
      "self.improved = True and", STOP, "NaN becomes the minimum online"),
    # -- CIFS --------------------------------------------------------------------------------
    m("cifs", "criteria/cifs.py", "return lam * mse + bpp * bpp", "return lam * mse + bpp",
      CIFS, "size term not squared"),
    m("cifs", "criteria/cifs.py", "return lam * mse + bpp * bpp",
      "return mse + lam * bpp * bpp", CIFS, "lam weights the size term"),
    m("cifs", "criteria/cifs.py", "bpp = nbytes / pixels", "bpp = nbytes / pixels**0.5", CIFS,
      "bytes per side, not per pixel"),
    m("cifs", "codecs.py", "q = y.clamp(0, 1).mul_(255).round_().to(torch.uint8)",
      "q = y.clamp(0, 1).mul_(255).to(torch.uint8)", CIFS, "outputs truncated to 8 bits"),
    m("cifs", "criteria/cifs.py", "return lam * height * width", "return lam * height * height",
      CIFS, "paper lambda from the wrong side"),
    m("cifs", "codecs.py", "JPEG_QUALITY = 95", "JPEG_QUALITY = 90", CIFS, "JPEG q90"),
    m("cifs", "codecs.py", "image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)", "pass", CIFS,
      "RGB fed to OpenCV as BGR"),
    m("cifs", "criteria/cifs.py", "context.pixels, context.lam)", "context.pixels, 1.0)", CIFS,
      "the context's lam ignored"),
    # -- output policies and running averages ------------------------------------------------
    m("policies", "policies.py", "max_iters - patience\n", "max_iters - patience + 1\n",
      POLICY, "since-best tail starts at T - S + 1"),
    m("policies", "policies.py", "if full_tail and self._best.n < self._window:",
      "if full_tail and self._best.n < self._window - 1:", POLICY,
      "t* = T - S + 1 returns the S outputs since t*"),
    m("policies", "policies.py", "self._t >= self._tail_from", "self._t > self._tail_from",
      POLICY, "tail sum starts one late"),
    m("policies", "policies.py", "return None if self.sum is None else (self.sum / self.n)",
      "return None if self.sum is None else (self.sum / max(self.n - 1, 1))", POLICY,
      "mean divides by n - 1"),
    m("policies", "policies.py", "        if improved:\n            self._kept = view",
      "        if improved or True:\n            self._kept = view", POLICY,
      "raw keeps the last output"),
    m("policies", "policies.py", 'if improved or self.when == "stop":',
      "if improved:", POLICY, "avg@stop read at t*"),
    m("policies", "policies.py", "return averages[self.average].clone()",
      "return averages[self.average]", POLICY, "kept average moves on in place"),
    m("policies", "averaging.py", "add_(output, alpha=1 - self.weight)",
      "add_(output, alpha=self.weight)", POLICY, "EMA weights swapped"),
    m("policies", "averaging.py", "if self.count >= self.window:",
      "if self.count > self.window:", POLICY, "box mean keeps one output too many"),
    m("policies", "averaging.py", "(self._sum / min(self.count, self.window))",
      "(self._sum / self.window)", POLICY, "box mean of a short run divides by the window"),
    m("policies", "policies.py", "self._window, self._tail_from = patience + 1,",
      "self._window, self._tail_from = patience,", POLICY, "window of S, not S + 1"),
    # -- tiling geometry and blending --------------------------------------------------------
    m("tiling", "tiling.py", "k = 1 + math.ceil((n - tile) / (tile - overlap))",
      "k = 1 + math.floor((n - tile) / (tile - overlap))", TILING, "too few tiles"),
    m("tiling", "tiling.py", "if n <= tile:\n        return [0]",
      "if n < tile:\n        return [0]", TILING, "a side of exactly one tile"),
    m("tiling", "tiling.py", "row, col = divmod(index, len(self.cols))",
      "row, col = divmod(index, len(self.rows))", TILING, "tile index to row/col"),
    m("tiling", "tiling.py", "min(tile, height),\n        min(tile, width),",
      "min(tile, width),\n        min(tile, height),", TILING, "tile sides swapped"),
    m("tiling", "tiled_run.py", "self.plan.weight(i // self.members)", "self.plan.weight(0)",
      TILING, "every tile blended with the first tile's weights"),
    m("tiling", "tiling.py", "rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / max(r, 1))",
      "rise = (np.arange(r) + 0.5) / max(r, 1)", TILING, "linear crossfade, not a cosine"),
    m("tiling", "tiling.py", "[np.ones(before_this), 1 - rise, np.zeros(",
      "[np.ones(before_this), rise, np.zeros(", TILING, "the earlier tile rises too"),
    m("tiling", "tiled_run.py", "return slice(r, r + h), slice(c, c + w)",
      "return slice(r, r + h), slice(c, c + h)", TILING, "tile region uses its height twice"),
    # -- lam lookup --------------------------------------------------------------------------
    m("lam", "single.py", "tab = load_table(o.table, output=policy.name, width=proto.width)",
      'tab = load_table(o.table, output="raw", width=proto.width)', LAM,
      "default reads the raw policy's table"),
    m("lam", "lambda_table.py", '"since-best": "lambda_table_since-best.json"',
      '"since-best": TABLE_NAME', LAM, "since-best ships the raw table"),
    m("lam", "lambda_table.py",
      'return float(np.interp(sigma, sigmas, np.log([e["lam"] for e in entries])))',
      'return float(np.log(np.interp(sigma, sigmas, [e["lam"] for e in entries])))', LAM,
      "lam interpolated linearly, not in log"),
    m("lam", "lambda_table.py", "base = by_size[max(sizes, key=",
      "base = by_size[min(sizes, key=", LAM, "base size is the one with fewest sigmas"),
    m("lam", "lambda_table.py", "np.interp(where, np.log(sizes), logs)",
      "np.interp(np.exp(where), sizes, logs)", LAM, "sizes interpolated linearly in pixels"),
    m("lam", "lambda_table.py", "lam = lam_for_sigma(sigma, tab, pixels)",
      "lam = lam_for_sigma(sigma, tab)", LAM, "lam at the smallest size, not the image's"),
    m("lam", "lambda_table.py", "where = np.log(pixels if pixels is not None else sizes[0])",
      "where = np.log(pixels if pixels is not None else sizes[-1])", LAM,
      "no size given: the largest"),
    # -- the divergence guard ----------------------------------------------------------------
    m("guard", "fitting.py", "            if t % s.snapshot_every == 0:\n",
      "            if t % 1 == 0:\n", GUARD, "a snapshot every step"),
    m("guard", "fitting.py", "value > self.previous_loss * 10 ** (s.guard_db / 10)",
      "value > self.previous_loss * 10 ** (s.guard_db / 20)", GUARD, "threshold in amplitude dB"),
    m("guard", "fitting.py",
      "if self.snapshot is None:\n            self.snapshot, self.snapshot_loss = "
      "self._take_snapshot(), math.inf",
      "if self.snapshot is None:\n            self.snapshot, self.snapshot_loss = "
      "self._take_snapshot(), 0.0", GUARD, "NaN before the first snapshot diverges"),
    m("guard", "fitting.py", "            self.opt.state.clear()\n", "            pass\n", GUARD,
      "restoring the initial snapshot keeps Adam's moments"),
    m("guard", "fitting.py", "if self.restores > s.max_restores:",
      "if self.restores >= s.max_restores:", GUARD, "one restore fewer allowed"),
    m("guard", "fitting.py", "                self.previous_loss = self.snapshot_loss\n",
      "", GUARD, "guard reference not reset on a restore"),
    m("guard", "fitting.py", "                self.snapshot_loss = value\n",
      "                self.snapshot_loss = math.inf\n", GUARD, "snapshot's loss forgotten"),
    m("guard", "fitting.py", "not math.isfinite(value) or value >",
      "math.isnan(value) or value >", GUARD, "an infinite loss passes the guard"),
    # -- resume ------------------------------------------------------------------------------
    m("resume", "fitting.py",
      '"snapshot": None if self.snapshot is None else _cpu_copy(self.snapshot),',
      '"snapshot": None,', RESUME_FIT, "saved state drops the guard's snapshot"),
    m("resume", "fitting.py",
      "            self.snapshot = [x.to(self.device) for x in state[\"snapshot\"]]\n",
      "            pass\n", RESUME_FIT, "load ignores the guard's snapshot"),
    m("resume", "fitting.py",
      'self.previous_loss, self.snapshot_loss = state["previous_loss"], state["snapshot_loss"]',
      'self.snapshot_loss = state["snapshot_loss"]', RESUME_FIT, "guard reference not resumed"),
    m("resume", "fitting.py", 'self.noise_gen.set_state(state["noise_gen"])', "pass",
      RESUME_FIT, "perturbation stream restarts"),
    m("resume", "fitting.py", 'self.t, self.restores = state["t"], state["restores"]',
      'self.t, self.restores = state["t"], 0', RESUME_FIT, "restore count not resumed"),
    m("resume", "checkpoints.py", 'if k not in ("device", "switches")}',
      'if k not in ("device", "switches", "seed")}', RESUME_KEY, "key ignores the seed"),
    m("resume", "checkpoints.py", "h = hashlib.sha256(str(array.shape).encode())",
      "h = hashlib.sha256()", RESUME_KEY, "key ignores the pixels' shape"),
    m("resume", "checkpoints.py", '"clean": digest(clean)', '"clean": None', RESUME_KEY,
      "key ignores the clean image"),
    # -- image I/O ---------------------------------------------------------------------------
    m("imageio", "imageio.py", "array = np.rint(array / 257.0).astype(np.uint8)",
      "array = (array >> 8).astype(np.uint8)", IMAGEIO, "16 to 8 bits by truncation"),
    m("imageio", "imageio.py",
      "out = quantise(pixels, like.max_value, like.dtype)",
      "out = (np.clip(pixels, 0, 1) * like.max_value).astype(like.dtype)", IMAGEIO,
      "float back to integers by truncation"),
    m("imageio", "imageio.py", "        array = quantise(array)\n",
      "        array = (np.clip(array, 0, 1) * 255).astype(np.uint8)\n", IMAGEIO,
      "float written as 8 bits by truncation"),
    m("imageio", "imageio.py", "scale = 1.0 if array.dtype.kind == \"f\" else float(np.iinfo(",
      "scale = 1.0 if array.dtype.kind == \"f\" else 1.0 + float(np.iinfo(", IMAGEIO,
      "integers read over 2^n, not 2^n - 1"),
    m("imageio", "codecs.py", "return np.rint(np.clip(image, 0.0, 1.0) * max_value)",
      "return np.floor(np.clip(image, 0.0, 1.0) * max_value)", IMAGEIO,
      "CIFS's 8-bit pictures by truncation"),
    # -- summary fields ----------------------------------------------------------------------
    m("summary", "single.py", 'result.peak_iteration = int(np.argmax(rec.series["psnr"])) + 1',
      'result.peak_iteration = int(np.argmax(rec.series["psnr"]))', SUMMARY,
      "peak iteration 0-based"),
    m("summary", "single.py", 'result.peak_psnr = float(rec.series["psnr"].max())',
      'result.peak_psnr = float(rec.series["psnr"][-1])', SUMMARY, "peak PSNR is the last"),
    m("summary", "lab/runs.py", '"peak_t": peak + 1,', '"peak_t": peak,', SUMMARY,
      "a run's peak_t 0-based"),
    m("summary", "single.py", "    t_star = stopper.best_index + 1\n",
      "    t_star = stopper.best_index\n", SUMMARY, "stop iteration 0-based"),
    # -- synthetic noise ---------------------------------------------------------------------
    m("noise", "noise.py", "rng.normal(0.0, sigma / 255.0, size=clean.shape)",
      "rng.normal(0.0, sigma / 256.0, size=clean.shape)", NOISE, "sigma / 256"),
    m("noise", "noise.py", "return np.clip(noisy, 0.0, 1.0).astype(np.float32)",
      "return noisy.astype(np.float32)", NOISE, "noise not clipped"),
    m("noise", "noise.py", "rng = np.random.default_rng(seed)",
      "rng = np.random.default_rng(seed + 1)", NOISE, "another draw for the seed"),
    # -- sigma estimation --------------------------------------------------------------------
    m("sigma", "noise.py", "return float(sigma) * 255.0", "return float(sigma) * 256.0", SIGMA,
      "raw estimate scaled by 256"),
    m("sigma", "noise.py", "channel_axis = -1 if image.ndim == 3 else None",
      "channel_axis = None", SIGMA, "colour read as a third spatial axis"),
    m("sigma", "noise.py", "return float(np.interp(raw_sigma(image), raw, nominal))",
      "return raw_sigma(image)", SIGMA, "correction curve not applied"),
    m("sigma", "noise.py", "image = image / float(np.iinfo(image.dtype).max)",
      "image = image / 256.0", SIGMA, "8-bit input scaled by 256"),
    # -- the Wiener filter that finishes a run -----------------------------------------------
    m("wiener", "wiener.py", "excess = (power - sigma**2).clamp_min(0)", "excess = power",
      WIENER, "gate opened by pure noise (sigma^2 not taken off)"),
    m("wiener", "wiener.py", "gain = gain * excess / (excess + sigma**2)",
      "gain = excess / (excess + sigma**2)", WIENER, "gate without the pilot's Wiener gain"),
    m("wiener", "wiener.py",
      "weight = 1.0 / gain.square().sum(dim=1, keepdim=True).clamp_min(1e-8)",
      "weight = torch.ones_like(gain[:, :1])", WIENER, "patches averaged unweighted"),
    m("wiener", "wiener.py", "gated: bool = True,", "gated: bool = False,", WIENER,
      "the classical filter by default"),
    m("wiener", "wiener.py", "passes: int = 2,", "passes: int = 1,", WIENER, "one pass"),
    m("wiener", "wiener.py", "halo = window // 2", "halo = 0", WIENER,
      "bands cut the gate's neighbourhood"),
    m("wiener", "api.py", "if opts.wiener and result.sigma > 0 and not unfitted:", "if False:",
      WIENER, "denoise never filters"),
    m("wiener", "api.py", "result.sigma > 0 and not unfitted:", "result.sigma > 0:",
      "tests/test_tiling.py -k deadline_keep", "a run cut before any fit filtered"),
    m("wiener", "options.py", "    wiener: bool = True", "    wiener: bool = False", WIENER,
      "presets without the filter"),
    m("wiener", "tile_store.py", 'AFTER_FITS = ("wiener",)', "AFTER_FITS = ()", WIENER,
      "kept fits not shared with and without the filter"),
    m("collaborative", "wiener.py", "collaborative: float = 0.7,", "collaborative: float = 0.0,",
      COLLAB, "the stage left out by default"),
    m("collaborative", "wiener.py", "q = q + collaborative * (group", "q = q + 0.3 * (group",
      COLLAB, "another share than asked"),
    m("collaborative", "collaborative.py", "gain = tq.square() / (tq.square() + var)",
      "gain = ty.square() / (ty.square() + var)", COLLAB, "gains from the noisy group"),
    m("collaborative", "collaborative.py", "dist, min(group, dist.shape[0]), dim=0, largest=False",
      "dist, min(group, dist.shape[0]), dim=0, largest=True", COLLAB, "the least alike grouped"),
    m("collaborative", "collaborative.py",
      "(var * gain.square().sum(dim=(0, 2, 3))).clamp_min(1e-12)",
      "torch.ones_like(gain[0, :, 0, 0])", COLLAB, "groups averaged unweighted"),
    m("collaborative", "collaborative.py", "dist[(span * span) // 2] = -1.0", "pass", COLLAB,
      "the reference left out of its group among exact ties"),
    m("collaborative", "collaborative.py", "across = dct_matrix(local.shape[1])",
      "across = torch.eye(local.shape[1])", COLLAB, "no transform across the group"),
    m("collaborative", "collaborative.py", "lo, hi = max(int(band[0]) - radius, 0)",
      "lo, hi = max(int(band[0]) - radius + 1, 0)", COLLAB, "a band's coefficients a row short"),
    m("collaborative", "collaborative.py", "down[:, rows - top + patch] - down[:, rows - top]",
      "down[:, rows - top + patch - 1] - down[:, rows - top]", COLLAB,
      "patch distances a row short"),
]
# fmt: on

AREAS = list(dict.fromkeys(mu.area for mu in MUTATIONS))


def occurrences(mu: Mutation) -> int:
    """How often the mutation's snippet occurs in the current source (1 when applicable)."""
    return (SRC / "dipstop" / mu.module).read_text().count(mu.old)


def pytest_run(args: tuple[str, ...], src: Path, timeout: float) -> tuple[str, int, str]:
    """Run pytest on `args` with `src` first on the path: (outcome, return code, tail)."""
    path = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(
            [*PYTEST, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", -1, ""
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    if done.returncode == 0:
        return "survived", 0, tail
    if done.returncode in (4, 5):  # usage error or nothing collected: the list is wrong
        return "broken", done.returncode, tail
    return "killed", done.returncode, tail


def copy_source(into: Path) -> Path:
    """A copy of src/ under `into` (without bytecode), for the mutants."""
    dest = into / "src"
    shutil.copytree(SRC, dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def run_mutant(mu: Mutation, timeout: float) -> dict:
    """Apply `mu` to a fresh copy of the source and run its tests."""
    start = time.monotonic()
    if occurrences(mu) != 1:
        return {"status": "stale", "seconds": 0.0, "tail": f"{occurrences(mu)} occurrences"}
    with tempfile.TemporaryDirectory(prefix="dipstop-mutant-") as tmp:
        src = copy_source(Path(tmp))
        path = src / "dipstop" / mu.module
        path.write_text(path.read_text().replace(mu.old, mu.new))
        status, code, tail = pytest_run(mu.tests, src, timeout)
    return {"status": status, "rc": code, "seconds": round(time.monotonic() - start, 1),
            "tail": tail if status != "killed" else ""}  # fmt: skip


def baseline(area: str, timeout: float) -> tuple[bool, str]:
    """Whether every selection the area's mutants name passes on the unmutated source."""
    selections = dict.fromkeys(mu.tests for mu in MUTATIONS if mu.area == area)
    with tempfile.TemporaryDirectory(prefix="dipstop-baseline-") as tmp:
        src = copy_source(Path(tmp))
        for tests in selections:
            status, _, tail = pytest_run(tests, src, timeout)
            if status != "survived":
                return False, f"{' '.join(tests)}: {status}\n{tail}"
    return True, ""


def score(results: list[dict]) -> tuple[int, int, int, float]:
    """(killed, survived, other, score %) where the score counts killed among killed+survived
    (stale and broken mutants prove nothing either way; a timeout counts as killed)."""
    killed = sum(r["status"] in ("killed", "timeout") for r in results)
    survived = sum(r["status"] == "survived" for r in results)
    other = len(results) - killed - survived
    return killed, survived, other, 100.0 * killed / max(killed + survived, 1)


def print_table(by_area: dict[str, list[dict]]) -> None:
    """Per-area counts and score, then every mutant that was not killed."""
    print(f"{'area':10} {'mutants':>7} {'killed':>6} {'survived':>8} {'other':>5} {'score':>6}")
    everything = []
    for area, results in by_area.items():
        k, s, o, pct = score(results)
        everything += results
        print(f"{area:10} {len(results):7d} {k:6d} {s:8d} {o:5d} {pct:5.0f}%")
    k, s, o, pct = score(everything)
    print(f"{'all':10} {len(everything):7d} {k:6d} {s:8d} {o:5d} {pct:5.0f}%")
    for r in everything:
        if r["status"] not in ("killed", "timeout"):
            print(f"  {r['status']}: [{r['area']}] {r['module']}: {r['what']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", choices=AREAS, help="run this area (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--table", action="store_true", help="print the saved results and exit")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per pytest run")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated runs")
    args = ap.parse_args(argv)
    areas = args.only or AREAS
    if args.list:
        for i, mu in enumerate(MUTATIONS):
            n = occurrences(mu)
            flag = "" if n == 1 else f"  STALE ({n} occurrences)"
            print(f"{i:3d} [{mu.area}] {mu.module}: {mu.what}{flag}\n      {' '.join(mu.tests)}")
        return 0
    if args.table:
        saved = {a: json.loads((RESULTS / f"{a}.json").read_text()) for a in AREAS
                 if (RESULTS / f"{a}.json").is_file()}  # fmt: skip
        for a, doc in saved.items():
            print(f"{a}: {doc['date']} on {doc['cpu']}: {doc['command']}")
        print_table({a: doc["mutants"] for a, doc in saved.items()})
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    by_area: dict[str, list[dict]] = {}
    for area in areas:
        mutants = [mu for mu in MUTATIONS if mu.area == area]
        ok, why = (True, "") if args.no_baseline else baseline(area, args.timeout)
        results = []
        for mu in mutants:
            if ok:
                outcome = run_mutant(mu, args.timeout)
            else:
                outcome = {"status": "broken", "seconds": 0.0, "tail": f"baseline: {why}"}
            results.append({**asdict(mu), **outcome})
            print(f"[{area}] {outcome['status']:8} {outcome['seconds']:6.1f}s  {mu.what}",
                  flush=True)  # fmt: skip
        by_area[area] = results
        doc = {
            "area": area,
            "date": datetime.date.today().isoformat(),
            "cpu": cpu_name(),
            "command": " ".join(
                ["python tools/mutation.py", *(sys.argv[1:] if argv is None else argv)]
            ),
            "score": score(results)[3],
            "mutants": results,
        }
        (RESULTS / f"{area}.json").write_text(json.dumps(doc, indent=1) + "\n")
    print_table(by_area)
    return 0


if __name__ == "__main__":
    sys.exit(main())
