"""Spine geometry from landmarks and masks: Cobb angles (:mod:`spinelib.geometry.cobb`), a vertebra
mask's bodies and their levels (:mod:`spinelib.geometry.vertebral_bodies`) and the corners fitted to
them (:mod:`spinelib.geometry.corners`)."""
