"""``polypseg data``: check, generate and cache data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from polypseg.cli.common import console, data_app, labels, print_notes
from polypseg.errors import EXIT_BAD_INPUT, InputError


@data_app.command("check")
def data_check(
    paths: Annotated[list[str], typer.Argument(help="Data folders, .npz files or 'synthetic'.")],
    layout: Annotated[str | None, typer.Option(help="Force a data layout instead of detecting it.")] = None,
    foreground_labels: Annotated[
        str | None, typer.Option(help="Mask labels that count as polyp in multi-label masks, e.g. '1,2'.")
    ] = None,
) -> None:
    """Read every pair once; print counts per split, sizes, mask coverage and every problem.
    Exits 0 only when the data is usable."""
    from polypseg.data.check import check_data

    r = check_data(paths, layout, labels(foreground_labels))
    table = Table(title="pairs")
    table.add_column("source / split")
    table.add_column("pairs", justify="right")
    for key, n in r.counts.items():
        table.add_row(key, str(n))
    table.add_row("[bold]total[/]", f"[bold]{r.n_pairs}[/]")
    console.print(table)
    if r.n_pairs:
        console.print(
            f"image size: width {r.width_range[0]}-{r.width_range[1]}, height {r.height_range[0]}-"
            f"{r.height_range[1]} px; masks: {r.empty_masks} empty, foreground fraction mean "
            f"{r.fg_fraction_mean:.3f} (range {r.fg_fraction_range[0]:.3f}-{r.fg_fraction_range[1]:.3f})"
        )
    print_notes(r.note_counts)
    if r.problems:
        console.print(f"[bold red]{len(r.problems)} problem(s):[/]")
        for p in r.problems:
            console.print(f"  - {p}", markup=False, soft_wrap=True)
        raise typer.Exit(code=EXIT_BAD_INPUT)
    console.print("[bold green]usable[/]")


@data_app.command("synthetic")
def data_synthetic(
    out: Annotated[Path, typer.Argument(help="Folder to write (train/ val/ test/ with images/ masks/).")],
    n: Annotated[int, typer.Option(help="Number of frames.")] = 400,
    size: Annotated[int, typer.Option(help="Frame size (pixels).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Write the built-in synthetic set to a folder."""
    from polypseg.data.synthetic import write_synthetic

    if out.exists():
        raise InputError(f"{out} exists; choose a new folder")
    write_synthetic(out, n=n, size=size, seed=seed)
    console.print(f"wrote {n} synthetic frames to {out}")


@data_app.command("cache")
def data_cache(
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove entries (all, or with --older-than); never a build still running.")
    ] = False,
    older_than: Annotated[
        float | None, typer.Option(help="With --clear: only entries unused for more than this many days.")
    ] = None,
) -> None:
    """List the decoded-data cache ($POLYPSEG_CACHE or ~/.cache/polypseg) and optionally clear it.
    Runs rebuild what they need; clearing loses no results."""
    from datetime import datetime

    from polypseg.data.cache import clear_cache, list_cache
    from polypseg.paths import cache_root

    if older_than is not None and not clear:
        raise InputError("--older-than only applies with --clear")
    entries = clear_cache(older_than_days=older_than) if clear else list_cache()
    table = Table(title=f"{'removed from' if clear else 'cache'} {cache_root() / 'arrays'}")
    for col in ("entry", "size px", "pairs", "MB", "last used"):
        table.add_column(col, justify="left" if col in ("entry", "last used") else "right")
    for e in entries:
        used = datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        size = str(e.size) if e.complete else "building now" if e.building else "interrupted build"
        table.add_row(e.path.name, size, str(e.n_pairs), f"{e.n_bytes / 2**20:.1f}", used)
    console.print(table)
    console.print(f"{len(entries)} entries, {sum(e.n_bytes for e in entries) / 2**20:.1f} MB")
