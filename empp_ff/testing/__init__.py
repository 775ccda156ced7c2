"""Helpers for tests, examples and benchmarks: small random models, toy graphs,
test structures, LAMMPS reference runs, and what the benchmark scripts share (they are
thin command lines over these). The library itself never imports them.

* ``models``: tiny random-weight backbones, potentials, checkpoints and model files
  (one factory, one table of reference energies);
* ``batches``: random molecules and their graphs/batches (graphs from
  :mod:`empp_ff.neighbours`, as in training);
* ``structures``: aspirin, periodic boxes of small molecules (random placements, the
  water/methanol lattice of ``md_examples/lammps``, water at a density), clusters;
* ``lammps``: the ASE-calculator reference and ``lmp`` single points for the
  pair style; ``lammps_timing``: the LAMMPS speed and MPI-scaling runs of the benchmarks;
* ``benchmarking``: the machine and its load, interleaved timing, the ASE MD runner, the
  paired-ratio statistic;
* ``accuracy``: the EMPP accuracy studies' cells, variants, runs and reports;
* ``packages``, ``halo``, ``processes``: edited model files, the halo protocol on fake
  domains, signalling a command mid-run.

Random weights and structures come from seeded local generators (or a forked
global RNG that is restored afterwards): calling a helper never changes the
caller's random state.
"""
