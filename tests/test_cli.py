"""One name per concept across subcommands; the old spellings still parse to the same thing."""

from __future__ import annotations

import pytest

from dipstop.cli import build_parser


def parse(line: str, folder: str = "d"):
    return vars(build_parser().parse_args(line.replace("DIR", folder).split()))


@pytest.mark.parametrize(
    "new, old",
    [
        ("bench --data d -T 60", "bench --data d --iters 60"),
        ("calibrate --data DIR -T 60", "calibrate --images DIR --iters 60"),
        ("calibrate --data d -o t.json", "calibrate --data d --table t.json"),
        ("demo -o out/x", "demo --out out/x"),
        ("report s.sqlite -o rep", "report s.sqlite --out rep"),
        ("denoise a.png -o b.png -T 9", "denoise a.png --output b.png --max-iters 9"),
    ],
)
def test_old_spellings_are_hidden_aliases_of_the_new_names(new, old, tmp_path):
    assert parse(new, str(tmp_path)) == parse(old, str(tmp_path))


def test_the_same_concept_has_the_same_option_in_every_subcommand():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    options = {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.items()}
    for name in ("denoise", "demo", "calibrate", "bench"):
        assert {"-T", "--max-iters", "-S", "--patience", "--threads"} <= options[name], name
    for name in ("denoise", "demo", "calibrate", "report"):
        assert {"-o", "--output"} <= options[name], name
    for name in ("calibrate", "bench"):
        assert {"--data", "--images", "--n-images", "--store", "--ray"} <= options[name], name


def test_report_takes_the_runs_own_patience_unless_given():
    assert parse("report s.sqlite")["patience"] is None
    assert parse("report s.sqlite -S 7")["patience"] == 7


def test_an_option_given_a_bare_double_dash_is_refused_not_defaulted(capsys):
    """argparse would read "--sigma=--" as no value (the default); dipstop refuses it."""
    from dipstop.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["denoise", "a.png", "--sigma=--"])
    assert exit_info.value.code == 2
    assert "--sigma: expected a value" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["bench", "calibrate"])
def test_crop_full_records_whole_images(command, tmp_path, image_folder, capsys):
    """`--crop full` fits the whole 112x104 image under the named protocol's other settings;
    a side that is neither a number nor "full" is one line naming both."""
    from dipstop.cli import main
    from dipstop.lab.store import ResultStore

    store = tmp_path / "s.sqlite"
    args = [command, "--data", str(image_folder), "--images", "a.png", "--sigmas", "25",
            "--crop", "full", "-T", "4", "-S", "2", "--width", "8", "--store", str(store),
            "--quiet", *(["--output-policy", "raw"] if command == "calibrate" else
                         ["--every", "2"])]  # fmt: skip
    assert main(args) == 0
    (run,) = ResultStore(store).runs()
    assert run.spec["protocol"]["crop"] is None and run.spec["protocol"]["name"] == "cpu"
    assert run.summary["pixels"] == 112 * 104
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--crop", "half"])
    assert "'half' is neither a side in pixels nor 'full'" in capsys.readouterr().err
