"""The EMPP accuracy studies' cells and reports (``benchmarks/empp_accuracy.py`` and
``benchmarks/empp_generalisation.py``; ``benchmarks/empp_converged.py`` has its own).

* ``cells``: what a cell is (molecule, training-set size, seed, variant, epochs) and where
  its ``result.json`` lives;
* ``runner``: the variants and how a cell is trained: one-thread ``empp-ff train`` runs,
  the mace-torch baseline (``mace_baseline``), two-stage pre-training cells (``two_stage``),
  many cells as parallel jobs, resumable;
* ``report``: the accuracy grid's table and learning curves; ``generalisation``: the
  design/report study's paired ratios with 95 % intervals and the long regime's curves.
"""
