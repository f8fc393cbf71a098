"""Spine geometry from landmarks and masks: Cobb angles (:mod:`spinelib.geometry.cobb`) and
vertebra corners fitted to masks (:mod:`spinelib.geometry.corners`)."""
