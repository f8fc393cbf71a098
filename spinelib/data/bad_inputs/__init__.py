"""A corpus of bad and odd inputs, each made afresh in a temporary folder, each with a decided behaviour.

:data:`spinelib.data.bad_inputs.corpus.CASES` is the one table: ``(kind, maker, outcome, expected,
behaviour)``; :func:`spinelib.data.bad_inputs.corpus.run_case` makes one case's input and checks the
decided outcome. The makers of single files (images, masks, DICOM) are
:mod:`spinelib.data.bad_inputs.file_makers`, those of dataset folders, AASCE labels and parameters
:mod:`spinelib.data.bad_inputs.folder_makers`. ``tests/test_bad_inputs.py`` runs every case;
``python -m scripts.make_reliability_table`` runs them again and writes the book's table of
behaviours (``docs/reliability.md``).

Outcomes:

``error``     the call raises the expected exception type, and its message names the file (or the
              parameter) and contains every keyword;
``excluded``  :func:`~spinelib.data.clinical.scan_clinical` excludes the patient, reason has the keywords;
``ignored``   the scan ignores the file or folder, ``ignored_reasons`` has the keywords;
``problem``   :func:`~spinelib.data.audit.audit_clinical` lists the file in ``problems`` with that kind;
``warned``    the loader skips the patient with a warning naming the file and the problem;
``loaded``    the input is read, and a check asserts what was read.

Every call runs inside :func:`spinelib.core.provenance.assert_unchanged` over the input tree: no
loader may add, remove or change an input file. A deviation is an ``AssertionError`` (the checks
are ``assert`` statements: run with assertions enabled, not ``python -O``).
"""
