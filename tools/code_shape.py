"""The shape of the package's code at a git revision: lines per module, the largest functions,
functions over the user-facing layer's limits, and where the fit options' names are spelled.

    python tools/code_shape.py                 # the working tree
    python tools/code_shape.py --rev e1afcef   # an earlier commit, for a before/after table

"Option spellings" counts, in the user-facing layer, the places that name a fit option as a
parameter, a keyword argument, a dict key or a command-line flag: each is a place that must
change when the option does. The options' own definition (`dipstop/options.py`) counts once.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER_LAYER = ("api.py", "batch.py", "cli.py", "cli_args.py", "tiling.py", "tiled_run.py",
              "single.py", "workers.py", "validate.py", "lab/commands.py")  # fmt: skip
OPTIONS = ("sigma", "lam", "protocol", "width", "max_iters", "patience", "lr", "z_noise_std",
           "seed", "output", "table", "precision", "tile", "overlap", "tile_above", "device",
           "ray", "max_minutes", "resume_dir", "switches", "progress", "interruptible",
           "on_estimate", "cancel")  # fmt: skip


def sources(rev: str | None) -> dict[str, str]:
    """Every module of src/dipstop at `rev` (None: the working tree), by relative path."""
    base = "src/dipstop/"
    if rev is None:
        return {str(p.relative_to(ROOT / base)): p.read_text()
                for p in sorted((ROOT / base).rglob("*.py"))}  # fmt: skip
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, base], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    return {n[len(base):]: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=ROOT,
                                          capture_output=True, text=True, check=True).stdout
            for n in names if n.endswith(".py")}  # fmt: skip


def functions(text: str) -> list[tuple[str, int, int]]:
    """(name, lines, parameters) of every function and method."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            params = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
            params -= bool(a.args) and a.args[0].arg in ("self", "cls")
            out.append((node.name, node.end_lineno - node.lineno + 1, params))
    return out


def spellings(text: str) -> int:
    """Places naming a fit option: parameters, keywords, string keys and flags."""
    count = 0
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.arg, ast.keyword)) and node.arg in OPTIONS:
            count += 1
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            flag = node.value.lstrip("-").replace("-", "_")
            if node.value in OPTIONS or (node.value.startswith("--") and flag in OPTIONS):
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", default=None, help="git revision (default: the working tree)")
    args = p.parse_args(argv)
    src = sources(args.rev)
    print(f"## {args.rev or 'working tree'}: {len(src)} modules, "
          f"{sum(t.count(chr(10)) for t in src.values())} lines")  # fmt: skip
    print("\n| module | lines |\n|---|---|")
    for name, text in sorted(src.items(), key=lambda kv: -kv[1].count("\n"))[:12]:
        print(f"| {name} | {text.count(chr(10))} |")
    funcs = [(f"{m}:{n}", lines, params) for m, t in src.items() for n, lines, params in
             functions(t)]  # fmt: skip
    print("\n| largest functions | lines | parameters |\n|---|---|---|")
    for name, lines, params in sorted(funcs, key=lambda f: -f[1])[:8]:
        print(f"| {name} | {lines} | {params} |")
    user = [f for f in funcs if f[0].split(":")[0] in USER_LAYER]
    over = [f for f in user if f[1] > 80 or f[2] > 8]
    print(f"\nuser-facing layer: {len(over)} functions over 80 lines or 8 parameters: "
          + ", ".join(f"{n} ({lines} lines, {k} parameters)" for n, lines, k in over))
    denoise = next((lines for n, lines, _ in funcs if n == "api.py:denoise"), None)
    print(f"api.denoise: {denoise} lines")
    total = sum(spellings(src[m]) for m in USER_LAYER if m in src)
    print(f"fit-option spellings in the user-facing layer: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
