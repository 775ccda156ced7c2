/* pair_style empp: watching the run. The instability guard (close atoms,
 * non-finite energies or forces, and with max_bond_stretch a broken bond end the
 * run with the step and the atom IDs) and the per-run timing line. See pair_empp.h. */

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
#include <cstdint>
#include <numeric>
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
   Bond-stretch guard (max_bond_stretch R, Angstrom; 0: off, the default): the ASE
   calculator's check (empp_ff/inference/guard.py, InstabilityGuard.check_bonds),
   same name and semantics:
   - molecules only: inactive when any direction of the box is periodic (the
     calculator skips structures with any periodic direction); init_style warns;
   - the bonds are those of the reference structure, the first configuration the
     pair style sees: pairs closer than 1.2 x the sum of their covalent radii
     (ASE's covalent_radii). A new reference is taken after a new `pair_style
     empp` command, and when the atoms or their elements change (the calculator
     takes a new one when the atomic numbers change);
   - every step, the bond whose length deviates most from its reference length
     (longer or shorter); more than R stops the run.
   Collective, every rank every step: each bond is measured by the rank owning its
   first atom (the partner is a local or ghost atom there or, beyond the ghost
   shell, fetched from its owner), then MAXLOC over ranks and error->all.
------------------------------------------------------------------------- */

namespace {
constexpr double kBondFactor = 1.2;    // guard.py's _BOND_FACTOR

// ase.data.covalent_radii (Cordero et al. 2008; 0.2 for Z = 0, 2.0 where missing), Angstrom
const double kCovalentRadii[] = {
    0.2,  0.31, 0.28, 1.28, 0.96, 0.84, 0.76, 0.71, 0.66, 0.57, 0.58, 1.66, 1.41, 1.21, 1.11, 1.07,
    1.05, 1.02, 1.06, 2.03, 1.76, 1.7,  1.6,  1.53, 1.39, 1.39, 1.32, 1.26, 1.24, 1.32, 1.22, 1.22,
    1.2,  1.19, 1.2,  1.2,  1.16, 2.2,  1.95, 1.9,  1.75, 1.64, 1.54, 1.47, 1.46, 1.42, 1.39, 1.45,
    1.44, 1.42, 1.39, 1.39, 1.38, 1.39, 1.4,  2.44, 2.15, 2.07, 2.04, 2.03, 2.01, 1.99, 1.98, 1.98,
    1.96, 1.94, 1.92, 1.92, 1.89, 1.9,  1.87, 1.87, 1.75, 1.7,  1.62, 1.51, 1.44, 1.41, 1.36, 1.36,
    1.32, 1.45, 1.46, 1.48, 1.4,  1.5,  1.5,  2.6,  2.21, 2.15, 2.06, 2.0,  1.96, 1.9,  1.87, 1.8,
    1.69, 2.0,  2.0,  2.0,  2.0,  2.0,  2.0,  2.0,  2.0,  2.0,  2.0,  2.0,  2.0,  2.0,  2.0,  2.0,
    2.0,  2.0,  2.0,  2.0,  2.0,  2.0,  2.0};
constexpr int kNumRadii = sizeof(kCovalentRadii) / sizeof(kCovalentRadii[0]);

double covalent_radius(int z)
{
  return kCovalentRadii[(z >= 0 && z < kNumRadii) ? z : 0];
}

uint64_t mix64(uint64_t v)    // splitmix64's finaliser
{
  v += 0x9e3779b97f4a7c15ULL;
  v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ULL;
  v = (v ^ (v >> 27)) * 0x94d049bb133111ebULL;
  return v ^ (v >> 31);
}

double distance(const double *a, const double *b)
{
  const double dx = b[0] - a[0], dy = b[1] - a[1], dz = b[2] - a[2];
  return std::sqrt(dx * dx + dy * dy + dz * dz);
}
}    // namespace

void PairEMPP::init_bond_guard()
{
  const bool periodic = domain->xperiodic || domain->yperiodic || domain->zperiodic;
  bond_guard = max_bond_stretch > 0.0 && !periodic;
  if (max_bond_stretch > 0.0 && periodic && !bond_guard_warned) {
    bond_guard_warned = true;
    if (comm->me == 0)
      error->warning(FLERR,
                     "pair_style empp: max_bond_stretch {} is inactive in this box: like the ASE "
                     "calculator's guard it watches molecules only, boxes without a periodic direction "
                     "(boundary f or s in x, y and z)",
                     max_bond_stretch);
  }
  if (bond_guard && atom->tag_enable == 0)
    error->all(FLERR, "pair_style empp: max_bond_stretch requires atom IDs (atom_modify id yes)");
}

/* a hash of (atom ID, element) over all atoms, and the number of atoms (collective) */

void PairEMPP::atom_signature(uint64_t sig[2])
{
  uint64_t mine[2] = {0, (uint64_t) atom->nlocal};
  for (int a = 0; a < atom->nlocal; ++a)
    mine[0] += mix64(((uint64_t) atom->tag[a] << 8) | (uint64_t) type2z[atom->type[a]]);
  MPI_Allreduce(mine, sig, 2, MPI_UINT64_T, MPI_SUM, world);
}

/* the bonds of the current structure: every rank gathers all atoms (once per
   reference) and finds the same bonds, sweeping the atoms sorted by x */

void PairEMPP::set_bond_reference(const uint64_t sig[2])
{
  const int nlocal = atom->nlocal, nprocs = comm->nprocs;
  std::vector<double> mine(5 * (size_t) nlocal);    // ID, Z, x, y, z
  for (int a = 0; a < nlocal; ++a) {
    double *r = &mine[5 * (size_t) a];
    r[0] = (double) atom->tag[a];
    r[1] = (double) type2z[atom->type[a]];
    for (int d = 0; d < 3; ++d) r[2 + d] = atom->x[a][d];
  }
  int n = 5 * nlocal;
  std::vector<int> counts(nprocs), displs(nprocs, 0);
  MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, world);
  for (int r = 1; r < nprocs; ++r) displs[r] = displs[r - 1] + counts[r - 1];
  std::vector<double> all((size_t) displs[nprocs - 1] + counts[nprocs - 1]);
  MPI_Allgatherv(mine.data(), n, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE, world);

  const int natoms = (int) (all.size() / 5);
  auto row = [&](int k) { return &all[5 * (size_t) k]; };
  std::vector<int> order(natoms);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return row(a)[2] < row(b)[2] || (row(a)[2] == row(b)[2] && row(a)[0] < row(b)[0]);
  });
  double largest = 0.0;
  bond_ref = BondReference();
  for (int k = 0; k < natoms; ++k) {
    largest = std::max(largest, covalent_radius((int) row(k)[1]));
    bond_ref.max_tag = std::max(bond_ref.max_tag, (tagint) row(k)[0]);
  }
  const double reach = kBondFactor * 2.0 * largest;
  for (int p = 0; p < natoms; ++p) {
    const double *a = row(order[p]);
    for (int q = p + 1; q < natoms && row(order[q])[2] - a[2] < reach; ++q) {
      const double *b = row(order[q]);
      const double d = distance(a + 2, b + 2);
      if (!(d < kBondFactor * (covalent_radius((int) a[1]) + covalent_radius((int) b[1])))) continue;
      const bool swap = b[0] < a[0];
      bond_ref.i.push_back((tagint) (swap ? b[0] : a[0]));
      bond_ref.j.push_back((tagint) (swap ? a[0] : b[0]));
      bond_ref.zi.push_back((int) (swap ? b[1] : a[1]));
      bond_ref.zj.push_back((int) (swap ? a[1] : b[1]));
      bond_ref.length.push_back(d);
    }
  }
  bond_ref.set = true;
  bond_ref.signature[0] = sig[0];
  bond_ref.signature[1] = sig[1];
  tag_index.assign((size_t) bond_ref.max_tag + 1, -1);
  if (comm->me == 0)
    utils::logmesg(lmp,
                   "pair_style empp: max_bond_stretch {} A: {} bond(s) among {} atoms in the reference "
                   "structure (step {})\n",
                   max_bond_stretch, bond_ref.length.size(), natoms, update->ntimestep);
}

/* positions of the atoms with IDs `want` (this rank's list) from their owners, as
   rows x, y, z, found (collective: every rank calls it, with or without a list) */

void PairEMPP::bond_partner_positions(const std::vector<tagint> &want, std::vector<double> &xyz)
{
  int n = (int) want.size(), total = 0;
  MPI_Allreduce(&n, &total, 1, MPI_INT, MPI_SUM, world);
  xyz.clear();
  if (total == 0) return;
  const int nprocs = comm->nprocs;
  std::vector<int> counts(nprocs), displs(nprocs, 0);
  MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, world);
  for (int r = 1; r < nprocs; ++r) displs[r] = displs[r - 1] + counts[r - 1];
  std::vector<tagint> all(total);
  MPI_Allgatherv(want.data(), n, MPI_LMP_TAGINT, all.data(), counts.data(), displs.data(), MPI_LMP_TAGINT,
                 world);
  std::vector<double> rows(4 * (size_t) total, 0.0);
  for (int k = 0; k < total; ++k) {
    const int a = (all[k] > 0 && all[k] <= bond_ref.max_tag) ? tag_index[all[k]] : -1;
    if (a < 0 || a >= atom->nlocal) continue;
    for (int d = 0; d < 3; ++d) rows[4 * (size_t) k + d] = atom->x[a][d];
    rows[4 * (size_t) k + 3] = 1.0;
  }
  MPI_Allreduce(MPI_IN_PLACE, rows.data(), 4 * total, MPI_DOUBLE, MPI_SUM, world);
  xyz.assign(rows.begin() + 4 * (size_t) displs[comm->me], rows.begin() + 4 * (size_t) (displs[comm->me] + n));
}

void PairEMPP::check_bonds()
{
  if (!bond_guard) return;
  uint64_t sig[2];
  atom_signature(sig);
  if (!bond_ref.set || sig[0] != bond_ref.signature[0] || sig[1] != bond_ref.signature[1]) {
    set_bond_reference(sig);
    return;
  }
  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  const tagint *tag = atom->tag;
  double **x = atom->x;
  for (int a = nall - 1; a >= 0; --a)    // local atoms last: they win over any ghost copy
    if (tag[a] > 0 && tag[a] <= bond_ref.max_tag) tag_index[tag[a]] = a;

  double worst = -1.0, worst_length = 0.0;
  size_t worst_bond = 0;
  auto note = [&](size_t b, double length) {
    const double deviation = std::fabs(length - bond_ref.length[b]);
    if (deviation > worst) worst = deviation, worst_bond = b, worst_length = length;
  };
  std::vector<tagint> want;           // partners beyond this rank's ghost shell
  std::vector<size_t> want_bond;
  std::vector<int> want_atom;
  for (size_t b = 0; b < bond_ref.length.size(); ++b) {
    const int ia = tag_index[bond_ref.i[b]];
    if (ia < 0 || ia >= nlocal) continue;    // measured by the owner of its first atom
    const int ja = tag_index[bond_ref.j[b]];
    if (ja >= 0) {
      note(b, distance(x[ia], x[ja]));
    } else {
      want.push_back(bond_ref.j[b]);
      want_bond.push_back(b);
      want_atom.push_back(ia);
    }
  }
  std::vector<double> xyz;
  bond_partner_positions(want, xyz);
  for (size_t k = 0; k < want.size(); ++k)
    if (xyz[4 * k + 3] > 0.0) note(want_bond[k], distance(x[want_atom[k]], &xyz[4 * k]));
  for (int a = 0; a < nall; ++a)
    if (tag[a] > 0 && tag[a] <= bond_ref.max_tag) tag_index[tag[a]] = -1;

  struct {
    double deviation;
    int rank;
  } mine{worst, comm->me}, most;
  MPI_Allreduce(&mine, &most, 1, MPI_DOUBLE_INT, MPI_MAXLOC, world);
  if (!(most.deviation > max_bond_stretch)) return;
  double bond[6] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0};    // IDs, Zs, reference and current length
  if (comm->me == most.rank) {
    const size_t b = worst_bond;
    bond[0] = (double) bond_ref.i[b], bond[1] = (double) bond_ref.j[b];
    bond[2] = bond_ref.zi[b], bond[3] = bond_ref.zj[b], bond[4] = bond_ref.length[b], bond[5] = worst_length;
  }
  MPI_Bcast(bond, 6, MPI_DOUBLE, most.rank, world);
  error->all(FLERR,
             "pair_style empp: step {}: the bond between atoms {} ({}) and {} ({}) changed from {:.3f} A to "
             "{:.3f} A, more than max_bond_stretch {} A: the molecule is breaking up (unstable dynamics; "
             "max_bond_stretch 0 disables this check)",
             update->ntimestep, (long) bond[0], element_symbol((int64_t) bond[2]), (long) bond[1],
             element_symbol((int64_t) bond[3]), bond[4], bond[5], max_bond_stretch);
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

