"""A console progress bar (tqdm): steps, steps/s, recent mean return, ETA."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """Progress over ``total`` env steps; a no-op when ``enabled`` is False.

    :param total: env steps this ``learn`` call will run.
    :param enabled: show the bar.
    :param description: the bar's label (agent and env).
    """

    def __init__(self, total: int, enabled: bool = True, description: str = "") -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="step", unit_scale=True, desc=description, dynamic_ncols=True, smoothing=0.1)

    def update(self, steps: int, recent_return: float | None) -> None:
        """Advance by ``steps``; show the recent mean episode return."""
        if self._bar is None:
            return
        if recent_return is not None:
            self._bar.set_postfix_str(f"return={recent_return:.3g}", refresh=False)
        self._bar.update(steps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
