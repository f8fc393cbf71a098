"""Vertebra landmarks on AP X-rays: the heat-map + corner-offset network
(:mod:`spinelib.landmarks.network`), its target encoding and decoding
(:mod:`spinelib.landmarks.encoding`), training (:mod:`spinelib.landmarks.train`) and the
shipped model's one-call inference (:mod:`spinelib.landmarks.model`)."""
