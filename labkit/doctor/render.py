"""Print doctor rows: a rich table for people, JSON for machines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit.doctor import Check

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["print_table"]

_STYLE = {True: ("ok", "green"), False: ("missing", "red"), None: ("partial", "yellow")}


def print_table(rows: list[Check], console: Console | None = None) -> None:
    """One line per check: status in green/red/yellow, the detail, and the hint."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="labkit doctor", show_lines=False)
    table.add_column("check", style="bold")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    table.add_column("hint", overflow="fold", style="dim")
    for r in rows:
        word, colour = _STYLE[r.ok]
        table.add_row(r.name, f"[{colour}]{word}[/{colour}]", r.detail, r.hint or "")
    console.print(table)

