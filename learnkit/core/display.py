"""Showing a table: an HTML table in a notebook, aligned text in a terminal.

>>> import pandas as pd
>>> _ = display_df(pd.DataFrame({"a": [1]}), show=False)
"""
from __future__ import annotations

import pandas as pd

from .callbacks.progress import in_notebook

__all__ = ["display_df"]


def display_df(df: pd.DataFrame, show: bool = True, max_colwidth: int | None = None) -> pd.DataFrame:
    """Display ``df`` (HTML in a notebook, text otherwise; cells cut at ``max_colwidth`` characters) and
    return it for further use."""
    if show:
        if in_notebook():
            from IPython.display import display
            display(df)
        else:
            with pd.option_context("display.max_columns", None, "display.width", 200,
                                   "display.max_colwidth", max_colwidth):
                print(df.to_string())
    return df
