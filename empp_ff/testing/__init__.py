"""Helpers for tests, examples and benchmarks: small random models, toy graphs,
test structures and LAMMPS reference runs. The library itself never imports them.

* ``models``: tiny random-weight backbones, potentials, checkpoints and model files
  (one factory, one table of reference energies);
* ``batches``: random molecules and their graphs/batches (graphs from
  :mod:`empp_ff.neighbours`, as in training);
* ``structures``: aspirin, periodic boxes of small molecules (random placements, the
  water/methanol lattice of ``md_examples/lammps``, water at a density), clusters;
* ``lammps``: the ASE-calculator reference and ``lmp`` single points for the
  pair style.

Random weights and structures come from seeded local generators (or a forked
global RNG that is restored afterwards): calling a helper never changes the
caller's random state.
"""
