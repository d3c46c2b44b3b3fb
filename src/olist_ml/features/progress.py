"""A progress bar over the tables of a feature build, shared by both engines (`features.build` and
`olist_ml.spark.features`); a module of its own so that neither engine imports the other's privates."""

from __future__ import annotations


class table_progress:
    """A rich progress bar over tables (no-op when disabled)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total

    def __enter__(self):
        if not self.enabled:
            return lambda name: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(
            TextColumn("[bold]features[/] {task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
        )
        self._p.start()
        task = self._p.add_task("", total=self.total)

        def advance(name: str) -> None:
            self._p.update(task, advance=1, description=name)

        return advance

    def __exit__(self, *exc):
        if self.enabled:
            self._p.stop()
        return False
