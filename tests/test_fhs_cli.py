"""`layerprobe fhs` and `layerprobe report` through click."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from test_fhs_profile import HAND_RUN, make_results

from layerprobe.cli import main
from layerprobe.cli.fhs_cmd import fhs, report


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "r.parquet"
    make_results([HAND_RUN]).write_parquet(path)
    return path


def test_fhs_prints_the_table(results, tmp_path):
    res = CliRunner().invoke(fhs, [str(results)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[2] == "| tiny-llava | 104.64 -> 76.62 -> 88.14 -> 74.00 |"  # see test_fhs_profile
    res = CliRunner().invoke(fhs, [str(results), "--json", "--llm-layers", "all", "--out", str(tmp_path / "t.csv")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["config"]["llm_layers"] is None and data["runs"][0]["fhs_l"] == pytest.approx(74.9981659863879540)
    assert data["runs"][0]["fhs_v_std"] == pytest.approx(6.21372041706948511) and data["runs"][0]["p_final_std"] is None
    assert (tmp_path / "t.csv").is_file()


def test_fhs_options_reach_the_config(results):
    res = CliRunner().invoke(fhs, [str(results), "--connector-layers", "-1", "--llm-alt-site", "none", "--lambda", "0.5", "--json"])
    run = json.loads(res.stdout)["runs"][0]
    assert run["fhs_c"] == pytest.approx(78.0) and run["fhs_l_alt"] is None
    # V with lambda 0.5 on 52, 61, 79: 79 * (1 + ln(79/52)) * exp(-0.5 * 27 / 79) = 94.4389083805642906 (bc -l)
    assert run["fhs_v"] == pytest.approx(94.4389083805642906, rel=1e-9)


def test_report_prints_its_folder(results, tmp_path):
    res = CliRunner().invoke(report, [str(results), "--out", str(tmp_path / "rep"), "--no-bands"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(tmp_path / "rep") and (tmp_path / "rep" / "report.html").is_file()


def test_errors_are_one_line(results, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fhs", str(tmp_path / "missing.parquet")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: results table") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["fhs", str(results), "--preset", "nope"])
    assert exit_info.value.code == 1 and "presets present: paper" in capsys.readouterr().err


def test_help_has_examples_and_import_is_light():
    for command in (fhs, report):
        assert "Example:" in CliRunner().invoke(command, ["--help"]).output
    code = "import sys, layerprobe.cli.fhs_cmd; print(sorted(m for m in ('polars', 'numpy', 'matplotlib', 'torch') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
