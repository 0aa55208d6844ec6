"""The paper's Table 1 and Figures 1-4 from a results store, as PNGs, CSV and Markdown.

Selection is redone here (Eq. 4 with a report-time S), so one recorded grid serves any S
up to T - t*. Every number in the report is also written to CSV.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dipstop import __version__  # noqa: E402
from dipstop.codecs import jpeg_bytes, quantise, tensor_to_uint8  # noqa: E402
from dipstop.criteria import REGISTRY, Context  # noqa: E402
from dipstop.errors import DipstopError  # noqa: E402
from dipstop.fitting import Fitter, Iteration, resolve_device  # noqa: E402
from dipstop.imageio import read_image  # noqa: E402
from dipstop.lab.datasets import centre_crop, list_images, noise_seed, synthetic_pair  # noqa: E402
from dipstop.lab.rules import Replay, Rule  # noqa: E402
from dipstop.lab.selection import (  # noqa: E402
    AVERAGE_PEAK,
    DIPSTOP,
    EST_SIGMA,
    order_methods,
    policy_scores,
    scores,
    select,
)
from dipstop.lab.store import ResultStore, StoredRun  # noqa: E402
from dipstop.lambda_table import table_output  # noqa: E402
from dipstop.metrics import psnr  # noqa: E402
from dipstop.noise import add_gaussian_noise  # noqa: E402
from dipstop.protocols import Protocol, get_protocol  # noqa: E402
from dipstop.recording import record  # noqa: E402

# The paper's Table 1 (CBSD68 rows), mean and std of PSNR, for side-by-side comparison.
PAPER_TABLE1 = {
    15: {
        "BRISQUE": (27.750, 2.108),
        "NIQE": (27.484, 4.172),
        "ES-WMV": (28.640, 3.877),
        "CIFS": (29.223, 2.618),
        "No ES": (26.464, 0.535),
        "Peak": (30.463, 2.066),
    },
    25: {
        "BRISQUE": (24.754, 2.740),
        "NIQE": (26.642, 2.759),
        "ES-WMV": (26.375, 3.577),
        "CIFS": (27.338, 2.634),
        "No ES": (21.740, 0.410),
        "Peak": (27.767, 2.206),
    },
    50: {
        "BRISQUE": (21.078, 2.183),
        "NIQE": (23.782, 2.369),
        "ES-WMV": (23.289, 2.826),
        "CIFS": (23.803, 2.321),
        "No ES": (15.843, 0.416),
        "Peak": (24.388, 2.241),
    },
}


def table_rows(
    runs: list[StoredRun], patience: int, table: dict, own: dict | None = None
) -> list[dict]:
    """One row per run and method: detected t, PSNR, SSIM (`selection.scores`)."""
    rows = []
    for run in runs:
        for method, sc in scores(run, patience, table, own).items():
            rows.append(
                {
                    "dataset": run.spec["dataset"],
                    "image": run.spec["image"],
                    "sigma": run.spec["sigma"],
                    "seed": run.spec["seed"],
                    "method": method,
                    **sc,
                }
            )
    return rows


def summarise(rows: list[dict]) -> dict[tuple[str, float], dict[str, tuple[float, float, int]]]:
    """(dataset, sigma) -> method -> (mean PSNR, std PSNR, n)."""
    groups: dict[tuple[str, float], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["dataset"], r["sigma"])][r["method"]].append(r["psnr"])
    return {
        key: {m: (float(np.mean(v)), float(np.std(v)), len(v)) for m, v in methods.items()}
        for key, methods in sorted(groups.items())
    }


def _methods(summary: dict) -> list[str]:
    """Every method in a summary, in table order."""
    return order_methods({m for methods in summary.values() for m in methods})


def _cell(values: dict, method: str) -> str:
    if method not in values:
        return "-"
    return f"{values[method][0]:.3f} ± {values[method][1]:.3f}"


def table1_markdown(summary: dict) -> str:
    """Table 1 as Markdown: mean ± std PSNR per data set, sigma and method."""
    columns = _methods(summary)
    head = "| data set | sigma | n | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (3 + len(columns))]
    for (dataset, sigma), methods in summary.items():
        n = next(iter(methods.values()))[2]
        cells = [_cell(methods, m) for m in columns]
        lines.append(f"| {dataset} | {sigma:g} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_markdown(summary: dict, label: str) -> str:
    """dipstop's CBSD68 rows beside the paper's Table 1, PSNR and (in brackets) method - Peak.

    The gap to Peak is what compares across protocols: absolute PSNR depends on crop size
    and T, the gap on how well each method stops. Empty when no CBSD68 sigma matches.

    >>> methods = ("BRISQUE", "NIQE", "ES-WMV", "CIFS", "No ES", "Peak")
    >>> s = {("cbsd68", 25.0): {m: (27.0, 2.0, 12) for m in methods}}
    >>> rows = comparison_markdown(s, "cpu protocol").splitlines()
    >>> rows[2].split(" | ")[5]  # the paper's CIFS at sigma 25, and its gap to Peak
    '27.338 ± 2.634 (-0.43)'
    >>> rows[3].split(" | ")[1]
    'dipstop, cpu protocol, n=12'
    """
    methods = [m for m in _methods(summary) if m != EST_SIGMA]
    lines = [
        "| sigma | source | " + " | ".join(methods) + " |",
        "|" + "---|" * (2 + len(methods)),
    ]

    def cells(values: dict[str, tuple]) -> str:
        peak = values["Peak"][0]
        out = []
        for m in methods:
            if m not in values:
                out.append("-")
                continue
            mean, std = values[m][0], values[m][1]
            gap = "" if m == "Peak" else f" ({mean - peak:+.2f})"
            out.append(f"{mean:.3f} ± {std:.3f}{gap}")
        return " | ".join(out)

    found = False
    for (dataset, sigma), values in summary.items():
        paper = PAPER_TABLE1.get(int(sigma))
        if dataset.lower() != "cbsd68" or paper is None or sigma != int(sigma):
            continue
        found = True
        n = values["Peak"][2]
        lines.append(f"| {sigma:g} | paper (Table 1) | {cells(paper)} |")
        lines.append(f"| {sigma:g} | dipstop, {label}, n={n} | {cells(values)} |")
    return "\n".join(lines) if found else ""


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def figure1(folder: Path, crop: int | None, path: Path, sigmas=range(0, 80, 5)) -> list[dict]:
    """Fig. 1: JPEG q95 size (bytes per pixel) of noisy images against sigma, over a data set."""
    files = list_images(folder)
    rows = []
    for f in files:
        clean = centre_crop(read_image(f).pixels, crop)
        for sigma in sigmas:
            noisy = add_gaussian_noise(clean, sigma, noise_seed(f.name, sigma, 0))
            b = jpeg_bytes(quantise(noisy))
            rows.append({"image": f.name, "sigma": sigma, "bpp": b / clean[..., 0].size})
    sig = np.array(list(sigmas))
    per = np.array([[r["bpp"] for r in rows if r["sigma"] == s] for s in sig])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sig, per.mean(axis=1), "o-", label=f"mean over {len(files)} images")
    ax.fill_between(sig, per.min(axis=1), per.max(axis=1), alpha=0.2, label="min-max")
    ax.set_xlabel("Gaussian noise sigma (0-255)")
    ax.set_ylabel("JPEG q95 size (bytes per pixel)")
    ax.set_title(f"Fig. 1: JPEG size against noise ({folder.name})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return rows


def figure2(table: dict, path: Path) -> None:
    """Fig. 2: calibrated lam against sigma (log scale), with the runs behind each point."""
    e = table["entries"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy([x["sigma"] for x in e], [x["lam"] for x in e], "o-")
    for x in e:
        ax.annotate(
            f"n={x.get('n_runs', '?')}",
            (x["sigma"], x["lam"]),
            fontsize=7,
            textcoords="offset points",
            xytext=(3, 3),
        )
    ax.set_xlabel("sigma (0-255)")
    ax.set_ylabel("lam = lambda_paper / (H W)")
    ax.set_title(f"Fig. 2: calibrated lam ({table['protocol'].get('name', '?')} protocol)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure3(summary: dict, path: Path) -> None:
    """Fig. 3: mean gap to Peak PSNR against sigma, per method and data set."""
    fig, ax = plt.subplots(figsize=(6, 4))
    datasets = sorted({d for d, _ in summary})
    for di, dataset in enumerate(datasets):
        keys = sorted(s for d, s in summary if d == dataset)
        for mi, method in enumerate(m for m in _methods(summary) if m != "Peak"):
            gap = [
                summary[(dataset, s)]["Peak"][0] - summary[(dataset, s)][method][0]
                if method in summary[(dataset, s)]
                else np.nan
                for s in keys
            ]
            ax.plot(
                keys,
                gap,
                "o-" if di == 0 else "s--",
                color=f"C{mi}",
                label=method if di == 0 else None,
            )
    ax.set_xlabel("sigma (0-255)")
    ax.set_ylabel("Peak PSNR - method PSNR (dB)")
    ax.set_yscale("symlog", linthresh=1)
    ax.axhline(0, color="k", lw=0.5)  # below: the method beats the raw output's oracle
    ticks = [-4, -2, -1, -0.5, 0, 0.25, 0.5, 1, 2, 4, 8, 16]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_title("Fig. 3: gap to Peak (" + ", ".join(datasets) + ")")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def image_path(run: StoredRun, data: Path | None = None) -> Path:
    """Where a run's clean image is now: in `data` if given, else where the bench read it."""
    path = data / run.spec["image"] if data is not None else Path(run.summary["path"])
    if not path.is_file():
        raise DipstopError(
            f"clean image {run.spec['image']} not found at {path}; pass --data with the "
            f"folder of the {run.spec['dataset']} images"
        )
    return path


@dataclass
class Fig4Refit:
    """What Fig. 4 takes from a refit: the 8-bit outputs at the picked iterations, the image
    dipstop's output policy returns (None without its table), its PSNR, and the largest loss
    difference to the stored run."""

    outputs: dict[int, np.ndarray]
    averaged: np.ndarray | None
    refit_psnr: float | None
    drift: float


def _own_replay(run: StoredRun, patience: int, own: dict | None) -> tuple[Replay | None, dict]:
    """dipstop's default rule replayed on the stored run (None without `own` or its series),
    and its scores."""
    own_scores = policy_scores(run, patience, own) if own else {}
    if not own_scores:
        return None, own_scores
    rule = Rule("cifs", table_output(own), patience)
    return Replay(rule, run.series, run.summary["pixels"], run.table_lam(own)), own_scores


def refit_fig4(
    run: StoredRun,
    patience: int,
    table: dict,
    device: str | None = None,
    data: Path | None = None,
    own: dict | None = None,
) -> Fig4Refit:
    """Refit `run` (same seeds, settings and, on the CPU, thread count when recorded) up to
    the last iteration Fig. 4 shows, keeping the outputs it shows; the slow part of Fig. 4.

    With dipstop's own table (`own`), the image its default output policy returns (an
    average) is rebuilt from the refit's outputs by `Replay`.
    """
    picks = select(run, patience, table)
    proto = Protocol(**{**run.spec["protocol"], "patience": patience})
    sigma, seed = run.spec["sigma"], run.spec["seed"]
    clean, noisy = synthetic_pair(image_path(run, data), proto.crop, sigma, seed)
    precision = "bf16" if run.spec.get("fit", {}).get("bf16") else "fp32"
    settings = proto.fit_settings(seed).with_precision(precision)  # as the run was recorded
    fitter = Fitter(torch.from_numpy(noisy).permute(2, 0, 1), settings, device)
    wanted, outputs, drift = set(picks.values()), {}, [0.0]
    replay, _ = _own_replay(run, patience, own)
    if replay is not None:
        wanted.add(replay.outcome.t_end)

    def keep(it: Iteration, row: dict) -> None:
        drift[0] = max(drift[0], abs(row["mse"] - run.series["mse"][it.t - 1]))
        if it.t in wanted:
            outputs[it.t] = tensor_to_uint8(it.output)
        if replay is not None:
            replay.feed(it.output)

    threads = torch.get_num_threads()
    if fitter.device.type == "cpu" and run.summary.get("threads"):
        torch.set_num_threads(run.summary["threads"])  # the recorded run's float sums
    try:
        record(fitter, max(wanted), on_row=keep)
    finally:
        torch.set_num_threads(threads)
    if replay is None:
        return Fig4Refit(outputs, None, None, drift[0])
    averaged = replay.result()
    return Fig4Refit(outputs, tensor_to_uint8(averaged), psnr(averaged.cpu(), clean), drift[0])


def figure4(
    run: StoredRun,
    patience: int,
    table: dict,
    path: Path,
    device: str | None = None,
    data: Path | None = None,
    own: dict | None = None,
    refit: Fig4Refit | None = None,
) -> dict:
    """Fig. 4: each criterion's curve with its detected t, and the output each method picks.

    The outputs come from `refit` (by default a fresh `refit_fig4`); the curves and picks
    from the stored run. With dipstop's own table (`own`), the image its default output
    policy returns stands beside the raw outputs. Returns the figure's numbers, with the
    refit's largest loss difference to the stored run.
    """
    if refit is None:
        refit = refit_fig4(run, patience, table, device, data, own)
    picks = select(run, patience, table)
    proto = Protocol(**{**run.spec["protocol"], "patience": patience})
    sigma, seed = run.spec["sigma"], run.spec["seed"]
    clean, noisy = synthetic_pair(image_path(run, data), proto.crop, sigma, seed)
    replay, own_scores = _own_replay(run, patience, own)
    outputs = refit.outputs
    s = run.series
    pixels, lam = run.summary["pixels"], run.table_lam(table, sigma)
    by_label = {
        REGISTRY[name].label: np.asarray(REGISTRY[name].values(s, Context(pixels, lam)))
        for name in run.spec["criteria"]
    }  # CIFS first, as in the paper's Fig. 4, then PSNR
    curves = [(m, by_label[m]) for m in reversed(order_methods(list(by_label)))]
    curves.append(("Peak", s["psnr"]))
    panels = [("clean", quantise(clean)), ("noisy", quantise(noisy))] + [
        (f"{m}\n{s['psnr'][picks[m] - 1]:.2f} dB", outputs[picks[m]])
        for m in order_methods([m for m in picks if m != EST_SIGMA])
    ]
    if replay is not None and refit.averaged is not None:
        label = f"{DIPSTOP} ({replay.policy.name})\n{own_scores[DIPSTOP]['psnr']:.2f} dB"
        panels.insert(-2, (label, refit.averaged))  # before No ES and Peak
    columns = len(panels)
    fig = plt.figure(figsize=(1.5 * columns, 5.5))
    grid = fig.add_gridspec(2, columns)
    t_axis = np.arange(1, len(s["mse"]) + 1)
    for i, (name, values) in enumerate(curves):
        ax = fig.add_subplot(grid[0, i * columns // len(curves) : (i + 1) * columns // len(curves)])
        ok = ~np.isnan(values)
        ax.plot(t_axis[ok], values[ok], lw=0.8)
        settled = values[ok][len(values[ok]) // 20 :]  # the first 5% would flatten the rest
        if settled.size and name != "Peak":
            lo, hi = np.percentile(settled, [0, 99])
            ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.axvline(picks[name], color="C3", ls="--", lw=1)
        ax.set_title(f"{'PSNR' if name == 'Peak' else name}: t={picks[name]}", fontsize=9)
        ax.tick_params(labelsize=7)
    for i, (title, img) in enumerate(panels):
        ax = fig.add_subplot(grid[1, i])
        ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Fig. 4: {run.spec['image']}, sigma {sigma:g} (S={patience})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {
        "image": run.spec["image"],
        "sigma": sigma,
        "picks": picks,
        "max_loss_drift": refit.drift,
        **(
            {}
            if replay is None
            else {
                "dipstop": {
                    "policy": replay.policy.name,
                    "t_star": replay.outcome.t_star,
                    "t_end": replay.outcome.t_end,
                    "psnr": own_scores[DIPSTOP]["psnr"],
                    "psnr_refit": refit.refit_psnr,
                }
            }
        ),  # fmt: skip
    }


FIG4_KEPT = "fig4_refit.npz"  # the Fig. 4 refit a report keeps in its folder
FIG4_MODES = ("reuse", "refit", "skip")
_KEY_NAMES = {
    "format": "kept-file format",
    "version": "dipstop version",
    "run": "store run",
    "series": "stored series",
    "image": "image",
    "patience": "S",
    "table": "lam table",
    "own": "dipstop's table",
    "device": "device",
    "threads": "threads",
}


def _digest(value: object) -> str:
    """sha256 of the canonical JSON of `value` (arrays by their bytes)."""
    if isinstance(value, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def fig4_key(
    run: StoredRun,
    patience: int,
    table: dict,
    device: str | None = None,
    data: Path | None = None,
    own: dict | None = None,
) -> dict:
    """Everything that determines `refit_fig4`'s result: the store run (its spec's key and
    stored losses), the clean image's bytes, S, both tables' content, the device type and,
    on the CPU, the thread count the refit runs with."""
    kind = resolve_device(device).type
    threads = (run.summary.get("threads") or torch.get_num_threads()) if kind == "cpu" else None
    return {
        "format": 1,
        "version": __version__,
        "run": run.key,
        "series": _digest(np.asarray(run.series["mse"])),
        "image": hashlib.sha256(image_path(run, data).read_bytes()).hexdigest(),
        "patience": patience,
        "table": _digest(table),
        "own": None if own is None else _digest(own),
        "device": kind,
        "threads": threads,
    }


def save_fig4_refit(path: Path, key: dict, refit: Fig4Refit) -> None:
    """Keep `refit` under `key` in `path` (written under a temporary name, then renamed, so
    an interrupted write never leaves a half file under `path`)."""
    times = sorted(refit.outputs)
    arrays = {
        "key": np.array(json.dumps(key, sort_keys=True)),
        "t": np.array(times, dtype=np.int64),
        "outputs": np.stack([refit.outputs[t] for t in times]),
        "drift": np.array(refit.drift, dtype=np.float64),
    }
    if refit.averaged is not None:
        arrays["averaged"] = refit.averaged
        arrays["refit_psnr"] = np.array(refit.refit_psnr, dtype=np.float64)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_fig4_refit(path: Path) -> tuple[dict, Fig4Refit]:
    """The key and refit kept in `path` by `save_fig4_refit`.

    Raises
    ------
    ValueError
        If the file is not such a file, or is damaged.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            key = json.loads(str(f["key"][()]))
            times = [int(t) for t in f["t"]]
            outputs = np.asarray(f["outputs"])
            drift = float(f["drift"][()])
            averaged = np.asarray(f["averaged"]) if "averaged" in f.files else None
            refit_psnr = float(f["refit_psnr"][()]) if "refit_psnr" in f.files else None
    except Exception as exc:  # a damaged zip fails in many ways (zipfile, zlib, ValueError)
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    images = [outputs] if averaged is None else [outputs, averaged[None]]
    if (
        not isinstance(key, dict)
        or outputs.ndim != 4
        or len(times) != len(outputs)
        or any(a.dtype != np.uint8 or a.shape[1:] != outputs.shape[1:] for a in images)
        or not np.isfinite(drift)
    ):
        raise ValueError("its arrays do not hold a Fig. 4 refit")
    return key, Fig4Refit(dict(zip(times, outputs, strict=True)), averaged, refit_psnr, drift)


def _fig4_refit(
    run: StoredRun,
    patience: int,
    table: dict,
    out: Path,
    mode: str,
    device: str | None,
    data: Path | None,
    own: dict | None,
    log: Callable[[str], None],
) -> tuple[Fig4Refit, bool]:
    """Fig. 4's refit: the one kept in `out` when its key matches (and `mode` is "reuse"),
    else a fresh one, kept for the next report. Returns it and whether it was reused."""
    kept = out / FIG4_KEPT
    key = fig4_key(run, patience, table, device, data, own)
    what = f"{run.spec['image']} at sigma {run.spec['sigma']:g}"
    if mode == "reuse" and kept.is_file():
        try:
            old, refit = load_fig4_refit(kept)
        except ValueError as exc:
            warnings.warn(f"{kept} is damaged ({exc}); ignoring it and refitting", stacklevel=2)
        else:
            changed = [name for k, name in _KEY_NAMES.items() if old.get(k) != key[k]]
            if not changed and _shows(run, patience, table, own, refit):
                log(f"Fig. 4: reusing the refit of {what} kept in {kept} (--refit-fig4 refits)")
                return refit, True
            changed = changed or ["picked iterations"]
            log(f"Fig. 4: the refit kept in {kept} is for another {', '.join(changed)}; refitting")
    log(f"Fig. 4: refitting {what} (--no-fig4 skips it)")
    refit = refit_fig4(run, patience, table, device, data, own)
    try:
        save_fig4_refit(kept, key, refit)
    except OSError as exc:
        warnings.warn(f"cannot keep the Fig. 4 refit in {kept} ({exc})", stacklevel=2)
    return refit, False


def _shows(run: StoredRun, patience: int, table: dict, own: dict | None, refit: Fig4Refit) -> bool:
    """Whether `refit` holds every output Fig. 4 shows of `run`."""
    if not set(select(run, patience, table).values()) <= set(refit.outputs):
        return False
    return (_own_replay(run, patience, own)[0] is None) == (refit.averaged is None)


def _own_columns_note(own: dict, patience: int) -> list[str]:
    """What the "dipstop" and "Peak (average)" columns are, for report.md."""
    policy = table_output(own)
    command = json.dumps(own.get("provenance", {}).get("command", "?"))
    return [
        f"Beyond the paper: **{DIPSTOP}** is dipstop's default, CIFS stopped by Eq. 4 (S = "
        f"{patience}) with lam at the estimated sigma from its own table (`{command}`), "
        f"returning output policy `{policy}`; **{AVERAGE_PEAK}** is the best PSNR that "
        "policy's average reaches anywhere in the run (its oracle). The paper's columns score "
        "the raw outputs.",
        "",
    ]


def _every(run: StoredRun) -> str:
    """Each recorded criterion with its scoring interval, e.g. "CIFS k=1, NIQE k=10"."""
    return ", ".join(
        f"{REGISTRY[name].label} k={settings.get('every', 1)}"
        for name, settings in run.spec["criteria"].items()
    )


def _devices(runs: list[StoredRun]) -> str:
    """How many runs each device recorded, e.g. "6 on cpu, 30 on cuda"."""
    counts = Counter(r.summary.get("device", "?").split(":")[0] for r in runs)
    return ", ".join(f"{n} on {d}" for d, n in sorted(counts.items()))


def recorded_patience(runs: list[StoredRun]) -> int:
    """The S the runs were recorded under (`-S` of the bench that ran them): each run's
    summary says it; runs of stores older than that take their named protocol's S."""
    found = {
        r.summary.get("patience") or get_protocol(r.spec["protocol"]["name"]).patience for r in runs
    }
    if len(found) > 1:
        listed = ", ".join(str(s) for s in sorted(found))
        raise DipstopError(f"the runs were recorded with different S ({listed}); pass -S")
    return found.pop()


def build_report(
    store: ResultStore,
    out: Path,
    patience: int | None,
    table: dict,
    fig4_image: str | None = None,
    data: Path | None = None,
    device: str | None = None,
    own: dict | None = None,
    fig4: str = "reuse",
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write report.md, table1.csv, runs.csv and fig1-4 PNGs into `out`; returns report.md.

    `patience` None takes the S the runs were recorded under (`recorded_patience`). `own`,
    dipstop's lam table for its default output policy, adds the "dipstop" and "Peak
    (average)" columns for runs that recorded that policy's series.

    Fig. 4 refits one run, the slow part of a report; the refit is kept in `out`
    (`FIG4_KEPT`, keyed by `fig4_key`). `fig4` "reuse" draws Fig. 4 from a kept refit of
    the same key (else refits), "refit" always refits, "skip" leaves Fig. 4 out. `log`
    receives one-line notes on what Fig. 4 did.
    """
    if fig4 not in FIG4_MODES:
        raise DipstopError(f"unknown Fig. 4 mode {fig4!r}; use one of {', '.join(FIG4_MODES)}")
    say = log or (lambda _msg: None)
    runs = list(store.runs())
    if not runs:
        raise DipstopError(f"{store.path} holds no bench runs; run `dipstop bench` first")
    if patience is None:
        patience = recorded_patience(runs)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(runs, patience, table, own)
    write_csv(out / "runs.csv", rows)
    summary = summarise(rows)
    write_csv(
        out / "table1.csv",
        [
            {"dataset": d, "sigma": s, "method": m, "mean_psnr": v[0], "std_psnr": v[1], "n": v[2]}
            for (d, s), methods in summary.items()
            for m, v in methods.items()
        ],
    )
    protocol = runs[0].spec["protocol"]
    lines = [
        "# dipstop: the paper's experiments",
        "",
        f"Store `{store.path.name}`: {len(runs)} runs ({_devices(runs)}). "
        f"Protocol: `{json.dumps(protocol)}`. "
        f"Patience S = {patience}; criteria scored every k iterations: {_every(runs[0])} "
        f"(patience S/k on such a series). lam table: "
        f"`{json.dumps(table.get('provenance', {}).get('command', '?'))}`.",
        "",
        *(_own_columns_note(own, patience) if any(DIPSTOP in m for m in summary.values()) else []),
        "## Table 1: PSNR (dB), mean ± std over images",
        "",
        table1_markdown(summary),
        "",
    ]
    beside = comparison_markdown(summary, f"{protocol.get('name', '?')} protocol")
    if beside:
        lines += [
            "## Beside the paper's Table 1 (CBSD68)",
            "",
            "PSNR (dB), mean ± std; in brackets the method's mean minus Peak's. The paper ran",
            "full images for T = 20000 (Takagi et al., Table 1); absolute PSNR differs with",
            "crop and T, the gap to Peak is what the stopping rules decide.",
            "",
            beside,
            "",
        ]
    figure3(summary, out / "fig3_gap_to_peak.png")
    figure2(table, out / "fig2_lambda.png")
    folder = image_path(runs[0], data).parent
    fig1 = figure1(folder, protocol.get("crop"), out / "fig1_jpeg_size.png")
    write_csv(out / "fig1_jpeg_size.csv", fig1)
    lines += [
        "## Figures",
        "",
        "![Fig. 1](fig1_jpeg_size.png)",
        "![Fig. 2](fig2_lambda.png)",
        "![Fig. 3](fig3_gap_to_peak.png)",
    ]
    candidates = [r for r in runs if fig4_image in (None, r.spec["image"])]
    if fig4_image is not None and not candidates:
        raise DipstopError(f"no run of image {fig4_image} in the store; pick one of its images")
    if candidates and fig4 == "skip":
        say("Fig. 4 skipped (--no-fig4)")
        lines += ["", "Fig. 4 not drawn (`--no-fig4`): drawing it refits one run."]
    elif candidates:  # a refit retraces a run only on the kind of device that recorded it
        here = resolve_device(device).type
        same = [r for r in candidates if r.summary.get("device", "cpu").startswith(here)]
        run = min(same or candidates, key=lambda r: abs(r.spec["sigma"] - 25))
        refit, reused = _fig4_refit(run, patience, table, out, fig4, device, data, own, say)
        info = figure4(run, patience, table, out / "fig4_example.png", device, data, own, refit)
        (out / "fig4_example.json").write_text(json.dumps(info, indent=1))
        when = f"kept in {FIG4_KEPT} by an earlier report" if reused else f"kept in {FIG4_KEPT}"
        lines += [
            "![Fig. 4](fig4_example.png)",
            "",
            f"Fig. 4 outputs regenerated by refitting ({when}; `--refit-fig4` refits); largest "
            f"loss difference to the stored run: {info['max_loss_drift']:.2e}.",
        ]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
