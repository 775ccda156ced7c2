"""empp-ff: EMPP-augmented training of MACE force fields, export, ASE and LAMMPS.

Importing this package is cheap and has no side effects: the training stack
(mace, e3nn) is only imported by the modules that need it, and the inference
path (``EMPPCalculator``) needs torch and ase alone.
"""

__version__ = "0.1.0"

__all__ = ["EMPPCalculator", "__version__"]


def __getattr__(name):
    # Lazy so that `import empp_ff` never pulls in torch/mace.
    if name == "EMPPCalculator":
        from empp_ff.inference.calculator import EMPPCalculator

        return EMPPCalculator
    raise AttributeError(f"module 'empp_ff' has no attribute {name!r}")
