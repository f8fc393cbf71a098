"""The ground floor: anatomical structures and the paper's numbers (:mod:`~spinelib.core.structures`),
profiles and dataset discovery (:mod:`~spinelib.core.config`), image reading and atomic writes
(:mod:`~spinelib.core.imageio`), run records and fingerprints (:mod:`~spinelib.core.provenance`) and
run plumbing: cache keys, JSON records, quiet TensorFlow, CPU cost (:mod:`~spinelib.core.runs`)."""
