"""The book's experiments, one module per page (they never import each other): the page setup and
per-profile plans (:mod:`~spinelib.paper.page`), Table 2 (:mod:`~spinelib.paper.table2_losses`),
Table 3 and its remedies (:mod:`~spinelib.paper.table3_unet`), the AASCE runs
(:mod:`~spinelib.paper.aasce_runs`), Table 4 (:mod:`~spinelib.paper.table4_backbones`), the final
classifier (:mod:`~spinelib.paper.final_classifier`) and the headline numbers (:mod:`~spinelib.paper.report`)."""
