"""Probing compositionality: the paper's experiments as functions (and `latentcomp probe ...` commands).

    from latentcomp.probe.common import load_pipeline, Sizes
    from latentcomp.probe.report import run_report
    run_report([load_pipeline("toyfaces"), load_pipeline("toyfaces-stylegan2")], "out/", analyzer=an)

Modules: tradeoff (reconstruction vs realism per method), independence (regression vs latent
interpolation edits), parts (k-means part discovery), rebalance (raise a rare attribute's share),
report (all of them, one HTML page). See docs/probe.md.
"""

from .common import Sizes, load_pipeline

__all__ = ["Sizes", "load_pipeline"]
