"""The `layerprobe` command: a thin layer over the Python API.

Each sub-module defines one or two click commands that turn flags into a config dataclass and call
the library. Sub-modules import only click and the standard library at import time, so
`layerprobe --help` stays fast; the heavy imports happen inside the command bodies.

Exit codes: 0 ok, 1 failure (a `LayerprobeError`, printed as one line), 2 usage error (click).
`--debug` re-raises so the full traceback is shown.
"""

from __future__ import annotations

import sys

import click

from layerprobe import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="layerprobe")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """layerprobe: extract MLLM activations once, probe every layer offline, score feature health.

    \b
    Typical study:
      layerprobe extract --model ./medgemma --dataset busi:/data/BUSI --out runs/medgemma-busi.zarr
      layerprobe probe runs/medgemma-busi.zarr --out results/medgemma-busi.parquet
      layerprobe report results/medgemma-busi.parquet --out report/
    Try it all on tiny offline models first:  layerprobe demo
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


_INTERRUPTED = "error: interrupted; stored data is intact and a probe sweep keeps its finished groups (rerun the same command to resume)"
"""What Ctrl-C prints: extract resumes its store from the committed blocks, probe its sweep from the
groups kept in ``<out>.partial/``."""


def _register() -> None:
    # Each import only defines click commands; see the module docstring.
    from layerprobe.cli import commands

    for command in commands.all_commands():
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning LayerprobeError into a one-line message, exit 1."""
    from layerprobe.errors import LayerprobeError

    _register()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="layerprobe", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(_INTERRUPTED, err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except LayerprobeError as err:
        if debug:
            raise
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(_INTERRUPTED, err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except OSError as err:
        if debug:
            raise
        # Disk full, permission denied, missing paths outside our own checks: still one line.
        click.echo(f"error: {err.strerror or err} ({err.filename or 'no file'}); fix the path or free space, then rerun", err=True)
        sys.exit(1)
