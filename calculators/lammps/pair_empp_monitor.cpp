/* pair_style empp: watching the run. The instability guard (close atoms,
 * non-finite energies or forces end the run with the step and the atom IDs) and
 * the per-run timing line. See pair_empp.h. */

#include "pair_empp.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "update.h"
#include "utils.h"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <string>

using namespace LAMMPS_NS;

/* ----------------------------------------------------------------------
   Instability guard: stop with the step and the atoms' IDs instead of running
   on with nonsense (atoms on top of each other, NaN/inf from the model).
------------------------------------------------------------------------- */

void PairEMPP::check_min_distance()
{
  if (min_distance <= 0.0 || min_r2 < 0.0 || min_r2 >= min_distance * min_distance) return;
  error->one(FLERR,
             "pair_style empp: step {}: atoms {} and {} are {:.3g} A apart, closer than "
             "min_distance {} A (the simulation is unstable or the structure is broken; "
             "min_distance 0 disables this check)",
             update->ntimestep, (long) atom->tag[min_i], (long) atom->tag[min_j], std::sqrt(min_r2),
             min_distance);
}

namespace {
/* IDs of the (first 10) atoms whose rows hold a non-finite number */
std::string nonfinite_ids(const torch::Tensor &rows, const std::vector<int> &row_atom, const tagint *tag,
                          int &count)
{
  auto bad = torch::isfinite(rows.reshape({rows.size(0), -1})).logical_not().any(1).nonzero().flatten();
  count = (int) bad.numel();
  std::string ids;
  for (int k = 0; k < std::min(count, 10); ++k)
    ids += " " + std::to_string((long) tag[row_atom[bad[k].item<int64_t>()]]);
  return count > 10 ? ids + " ..." : ids;
}
}    // namespace

/* node_energy: local atoms' rows first; forces: one row per node (node_atom) */

void PairEMPP::check_finite(const torch::Tensor &forces, const torch::Tensor &node_energy)
{
  int count = 0;
  auto energy = node_energy.detach().to(torch::kCPU).slice(0, 0, atom->nlocal);
  std::string ids = nonfinite_ids(energy, node_atom, atom->tag, count);
  if (count)
    error->one(FLERR, "pair_style empp: step {}: non-finite energy for {} atom(s), IDs:{}",
               update->ntimestep, count, ids);
  ids = nonfinite_ids(forces.detach().to(torch::kCPU), node_atom, atom->tag, count);
  if (count)
    error->one(FLERR, "pair_style empp: step {}: non-finite forces on {} atom(s), IDs:{}",
               update->ntimestep, count, ids);
}

/* ----------------------------------------------------------------------
   End of a run: where the pair style's time went, per call, averaged over ranks.
   Communication includes waiting for the slowest neighbour.
------------------------------------------------------------------------- */

void PairEMPP::finish()
{
  double mine[5] = {timing.graph, timing.forward, timing.backward, timing.comm, (double) timing.calls};
  double sum[5], most[5];
  MPI_Allreduce(mine, sum, 5, MPI_DOUBLE, MPI_SUM, world);
  MPI_Allreduce(mine, most, 5, MPI_DOUBLE, MPI_MAX, world);
  const double per = 1e3 / comm->nprocs / std::max(1.0, most[4]);
  if (comm->me == 0 && most[4] > 0)
    utils::logmesg(lmp,
                   "pair_style empp timing ({} mode, {} rank(s), {} call(s)), ms per call: graph {:.2f}, "
                   "model {:.2f} (forward {:.2f}, backward {:.2f}), halo comm {:.3f} (slowest rank {:.3f})\n",
                   halo ? "halo" : (folding() ? "fold" : "plain"), comm->nprocs, (long) most[4],
                   per * sum[0], per * (sum[1] + sum[2]), per * sum[1], per * sum[2], per * sum[3],
                   1e3 * most[3] / std::max(1.0, most[4]));
  timing = Timing();
}

