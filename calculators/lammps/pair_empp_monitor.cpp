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
   Both checks are collective (every rank calls them every step, atoms or not),
   so the run ends through error->all: rank 0 prints the message to the screen
   and the log, and every rank exits (error->one from another rank can lose its
   message when MPI_Abort tears the job down).
------------------------------------------------------------------------- */

void PairEMPP::check_min_distance()
{
  if (min_distance <= 0.0) return;
  struct {
    double r2;
    int rank;
  } mine{min_r2 >= 0.0 ? min_r2 : HUGE_VAL, comm->me}, closest;
  MPI_Allreduce(&mine, &closest, 1, MPI_DOUBLE_INT, MPI_MINLOC, world);
  if (closest.r2 >= min_distance * min_distance) return;
  double pair[3] = {0.0, 0.0, 0.0};    // distance, tag i, tag j on the rank that saw it
  if (comm->me == closest.rank)
    pair[0] = std::sqrt(min_r2), pair[1] = (double) atom->tag[min_i], pair[2] = (double) atom->tag[min_j];
  MPI_Bcast(pair, 3, MPI_DOUBLE, closest.rank, world);
  error->all(FLERR,
             "pair_style empp: step {}: atoms {} and {} are {:.3g} A apart, closer than "
             "min_distance {} A (the simulation is unstable or the structure is broken; "
             "min_distance 0 disables this check)",
             update->ntimestep, (long) pair[1], (long) pair[2], pair[0], min_distance);
}

namespace {
constexpr int kShownIDs = 10;

/* IDs of the first kShownIDs atoms whose rows hold a non-finite number (-1 padded) */
std::vector<double> nonfinite_ids(const torch::Tensor &rows, const std::vector<int> &row_atom, const tagint *tag,
                                  int &count)
{
  std::vector<double> ids(kShownIDs, -1.0);
  count = 0;
  if (!rows.defined() || rows.size(0) == 0) return ids;
  auto bad = torch::isfinite(rows.reshape({rows.size(0), -1})).logical_not().any(1).nonzero().flatten();
  count = (int) bad.numel();
  for (int k = 0; k < std::min(count, kShownIDs); ++k)
    ids[k] = (double) tag[row_atom[bad[k].item<int64_t>()]];
  return ids;
}
}    // namespace

/* node_energy: local atoms' rows first; forces: one row per node (node_atom).
   Undefined tensors (a rank without atoms) count as finite. */

void PairEMPP::check_finite(const torch::Tensor &forces, const torch::Tensor &node_energy)
{
  int count[2];
  std::vector<double> ids[2];
  torch::Tensor energy = node_energy.defined() ? node_energy.detach().to(torch::kCPU).slice(0, 0, atom->nlocal)
                                               : node_energy;
  ids[0] = nonfinite_ids(energy, node_atom, atom->tag, count[0]);
  ids[1] = nonfinite_ids(forces.defined() ? forces.detach().to(torch::kCPU) : forces, node_atom, atom->tag,
                         count[1]);
  int total[2];
  MPI_Allreduce(count, total, 2, MPI_INT, MPI_SUM, world);
  const int kind = total[0] ? 0 : (total[1] ? 1 : -1);
  if (kind < 0) return;
  std::vector<double> all((size_t) kShownIDs * comm->nprocs);
  MPI_Allgather(ids[kind].data(), kShownIDs, MPI_DOUBLE, all.data(), kShownIDs, MPI_DOUBLE, world);
  std::string shown;
  int n = 0;
  for (double id : all)
    if (id >= 0 && n < kShownIDs) shown += " " + std::to_string((long) id), ++n;
  if (total[kind] > n) shown += " ...";
  error->all(FLERR, "pair_style empp: step {}: non-finite {} {} atom(s), IDs:{}", update->ntimestep,
             kind == 0 ? "energy for" : "forces on", total[kind], shown);
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

