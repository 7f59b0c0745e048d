"""Vectorised walk_pmd_range over a whole range (placeholder: the sequential walk runs)."""


def walk_pmd_range_fast(args, start, end):
    return None
