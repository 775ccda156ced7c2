"""``import empp_ff.calculator`` / ``from empp_ff.calculator import EMPPCalculator``:
the documented short path of the ASE calculator, which lives in
:mod:`empp_ff.inference.calculator` with the other code that runs model files."""

from empp_ff.inference.calculator import EMPPCalculator

__all__ = ["EMPPCalculator"]
