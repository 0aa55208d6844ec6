"""The paper's Table 1 and Figures 1-4 from a results store, as PNGs, CSV and Markdown.

Selection is redone here (Eq. 4 with a report-time S), so one recorded grid serves any S
up to T - t*. Every number in the report is also written to CSV.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dipstop.codecs import jpeg_bytes, to_uint8  # noqa: E402
from dipstop.criteria import REGISTRY, Context, output_to_uint8  # noqa: E402
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
            b = jpeg_bytes(to_uint8(noisy))
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


def figure4(
    run: StoredRun,
    patience: int,
    table: dict,
    path: Path,
    device: str | None = None,
    data: Path | None = None,
    own: dict | None = None,
) -> dict:
    """Fig. 4: each criterion's curve with its detected t, and the output each method picks.

    The outputs are regenerated by refitting the run (same seeds, settings and, on the CPU,
    thread count when recorded); the refit's losses are compared with the stored ones and
    the largest difference is returned. With dipstop's own table (`own`), the image its
    default output policy returns (an average) stands beside the raw outputs, rebuilt from
    the refit's outputs by `Replay`.
    """
    picks = select(run, patience, table)
    proto = Protocol(**{**run.spec["protocol"], "patience": patience})
    sigma, seed = run.spec["sigma"], run.spec["seed"]
    clean, noisy = synthetic_pair(image_path(run, data), proto.crop, sigma, seed)
    precision = "bf16" if run.spec.get("fit", {}).get("bf16") else "fp32"
    settings = proto.fit_settings(seed).with_precision(precision)  # as the run was recorded
    fitter = Fitter(torch.from_numpy(noisy).permute(2, 0, 1), settings, device)
    wanted, outputs, drift = set(picks.values()), {}, [0.0]
    replay, own_scores = None, policy_scores(run, patience, own) if own else {}
    if own_scores:
        rule = Rule("cifs", table_output(own), patience)
        replay = Replay(rule, run.series, run.summary["pixels"], run.table_lam(own))
        wanted.add(replay.outcome.t_end)

    def keep(it: Iteration, row: dict) -> None:
        drift[0] = max(drift[0], abs(row["mse"] - run.series["mse"][it.t - 1]))
        if it.t in wanted:
            outputs[it.t] = output_to_uint8(it.output)
        if replay is not None:
            replay.feed(it.output)

    threads = torch.get_num_threads()
    if fitter.device.type == "cpu" and run.summary.get("threads"):
        torch.set_num_threads(run.summary["threads"])  # the recorded run's float sums
    try:
        record(fitter, max(wanted), on_row=keep)
    finally:
        torch.set_num_threads(threads)
    s = run.series
    pixels, lam = run.summary["pixels"], run.table_lam(table, sigma)
    by_label = {
        REGISTRY[name].label: np.asarray(REGISTRY[name].values(s, Context(pixels, lam)))
        for name in run.spec["criteria"]
    }  # CIFS first, as in the paper's Fig. 4, then PSNR
    curves = [(m, by_label[m]) for m in reversed(order_methods(list(by_label)))]
    curves.append(("Peak", s["psnr"]))
    panels = [("clean", to_uint8(clean)), ("noisy", to_uint8(noisy))] + [
        (f"{m}\n{s['psnr'][picks[m] - 1]:.2f} dB", outputs[picks[m]])
        for m in order_methods([m for m in picks if m != EST_SIGMA])
    ]
    refit_psnr = None
    if replay is not None:
        averaged = replay.result()
        refit_psnr = psnr(averaged.cpu(), clean)
        label = f"{DIPSTOP} ({replay.policy.name})\n{own_scores[DIPSTOP]['psnr']:.2f} dB"
        panels.insert(-2, (label, output_to_uint8(averaged)))  # before No ES and Peak
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
        "max_loss_drift": drift[0],
        **(
            {}
            if replay is None
            else {
                "dipstop": {
                    "policy": replay.policy.name,
                    "t_star": replay.outcome.t_star,
                    "t_end": replay.outcome.t_end,
                    "psnr": own_scores[DIPSTOP]["psnr"],
                    "psnr_refit": refit_psnr,
                }
            }
        ),  # fmt: skip
    }


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
) -> Path:
    """Write report.md, table1.csv, runs.csv and fig1-4 PNGs into `out`; returns report.md.

    `patience` None takes the S the runs were recorded under (`recorded_patience`). `own`,
    dipstop's lam table for its default output policy, adds the "dipstop" and "Peak
    (average)" columns for runs that recorded that policy's series.
    """
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
    if candidates:  # a refit retraces a run only on the kind of device that recorded it
        here = resolve_device(device).type
        same = [r for r in candidates if r.summary.get("device", "cpu").startswith(here)]
        run = min(same or candidates, key=lambda r: abs(r.spec["sigma"] - 25))
        info = figure4(run, patience, table, out / "fig4_example.png", device, data, own)
        (out / "fig4_example.json").write_text(json.dumps(info, indent=1))
        lines += [
            "![Fig. 4](fig4_example.png)",
            "",
            f"Fig. 4 outputs regenerated by refitting; largest loss difference to the "
            f"stored run: {info['max_loss_drift']:.2e}.",
        ]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
