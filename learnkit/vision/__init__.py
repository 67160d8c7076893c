"""Vision (placeholder while being written)."""
