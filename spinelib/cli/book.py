"""``spinelib book`` and ``spinelib synthetic``: thin wrappers of :func:`spinelib.book.main` and
:func:`spinelib.data.synthetic.generator.main`."""

from __future__ import annotations


def cmd_book(args) -> int:
    from spinelib import book

    argv = ["--profile", args.profile, "--seed", str(args.seed)] + (["--no-render"] if args.no_render else [])
    if args.only:
        argv += ["--only", *args.only]
    if args.jobs is not None:
        argv += ["--jobs", str(args.jobs)]
    return book.main(argv)


def cmd_synthetic(args) -> int:
    from spinelib.data.synthetic import generator

    argv = ["--out", args.out, "--n", str(args.n), "--seed", str(args.seed), "--scale", str(args.scale)]
    argv += ["--irregular"] * args.irregular + ["--overwrite"] * args.overwrite + ["--quiet"] * args.quiet
    return generator.main(argv)
