"""Showing decoded rows: `display_df` (shared with the other tasks, from `learnkit.core.display`)."""
from __future__ import annotations

from ..core.display import display_df

__all__ = ["display_df"]
