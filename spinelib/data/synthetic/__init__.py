"""Synthetic spine X-rays in the paper's layout: the dataset generator
(:mod:`~spinelib.data.synthetic.generator`), the column's anatomy (:mod:`~spinelib.data.synthetic.anatomy`)
and its drawing as two X-ray views (:mod:`~spinelib.data.synthetic.rendering`)."""
