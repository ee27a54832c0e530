"""The application layer: run configurations, run directories, reports, figures, comparisons.

It builds on the library (:mod:`vi_vae`) and is used by the command line
(:mod:`vi_vae.cli`); nothing in it parses arguments or prints.
"""
