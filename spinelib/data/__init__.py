"""Datasets and their checks: :mod:`spinelib.data.label_audit` flags AASCE images whose landmark
labels are geometrically wrong (corner or vertebra order, odd sizes, overlaps, spacing jumps,
clipping) or whose published Cobb angles disagree with their landmarks."""
