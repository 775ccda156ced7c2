/* pair_style empp, full-shell mode: the whole model on local + ghost atoms, with a
 * ghost shell of num_interactions * r_max + skin (halo no, or model files without
 * layer-wise entry points). See pair_empp.h and README.md. */

#include "pair_empp.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "utils.h"

#include <cstring>
#include <unordered_map>

using namespace LAMMPS_NS;

/* ----------------------------------------------------------------------
   One step: build the graph, evaluate the model on it, add its forces,
   energies and virial to LAMMPS's accumulators.
------------------------------------------------------------------------- */

void PairEMPP::compute_full_shell()
{
  if (atom->nlocal == 0) {    // no local energy on this rank: no forces, no virial
    check_min_distance();     // (the guard's checks are collective)
    check_finite(torch::Tensor(), torch::Tensor());
    return;
  }
  const bool folded = folding();
  double t0 = platform::walltime();
  if (folded)
    build_graph_folded();
  else
    build_graph_unfolded(list->inum + list->gnum);
  check_min_distance();
  log_graph_once(folded ? "folded" : "all ghosts are nodes");
  const bool want_virial = folded && vflag_global;
  empp::ModelInput inputs = graph_inputs(folded, want_virial);
  timing.graph += platform::walltime() - t0;

  t0 = platform::walltime();
  empp::ModelOutput out = evaluate_model(inputs);
  timing.forward += platform::walltime() - t0;
  check_finite(out.forces, out.node_energy);
  const double conv = unit_factor();
  add_forces(out.forces, conv);
  if (eflag_global) eng_vdwl += conv * out.energy.to(torch::kCPU, torch::kFloat64).item<double>();
  if (eflag_atom) add_atom_energies(out.node_energy, conv);
  if (want_virial) add_model_virial(out.virial, conv);
}

/* ---------------------------------------------------------------------- */

bool PairEMPP::folding() const
{
  return fold && !domain->triclinic;
}

/* ----------------------------------------------------------------------
   Graph with every local and ghost atom as a node (node n is LAMMPS atom n),
   zero shifts. Edges within r_max into the first `ncentres` entries of the
   neighbour list: local and ghost atoms in the full-shell mode (fold no,
   triclinic boxes; virial by f.r), local atoms only in halo mode.
------------------------------------------------------------------------- */

void PairEMPP::build_graph_unfolded(int ncentres)
{
  double **x = atom->x;
  const int nall = atom->nlocal + atom->nghost;
  const double cutsq_model = r_max * r_max;

  node_atom.resize(nall);
  for (int i = 0; i < nall; ++i) node_atom[i] = i;
  senders.clear();
  receivers.clear();
  shift_buf.clear();
  for (int ii = 0; ii < ncentres; ++ii) {
    const int i = list->ilist[ii];
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = list->firstneigh[i];
    const int jnum = list->numneigh[i];
    for (int jj = 0; jj < jnum; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      const double r2 = dx * dx + dy * dy + dz * dz;
      if (r2 < cutsq_model) {
        senders.push_back(j);
        receivers.push_back(i);
        note_distance(r2, i, j);
      }
    }
  }
}

/* ----------------------------------------------------------------------
   Folded graph (default, orthogonal boxes). All copies of one atom (local atom
   and its periodic images, or several images of a remote atom) become ONE node:
   the copy nearest to this subdomain (the local atom when owned here); edges to
   other copies carry the shift x[copy] - x[rep]. Only nodes that can influence
   local energies receive edges: local atoms and ghosts within
   (num_interactions-1)*r_max + skin of the subdomain. This is exact (the
   representative has the most complete environment of all copies), makes a
   serial periodic run evaluate exactly the N-atom periodic graph, and cuts the
   edge count under MPI. Shifts break f.r, so the virial comes from the model.
------------------------------------------------------------------------- */

void PairEMPP::build_graph_folded()
{
  double **x = atom->x;
  const tagint *tag = atom->tag;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const double *lo = domain->sublo, *hi = domain->subhi;
  const double cutsq_model = r_max * r_max;
  const double recv_cut = (num_interactions - 1) * r_max + neighbor->skin;
  const double recv_cut2 = recv_cut * recv_cut;

  // representative copy per atom ID
  std::unordered_map<tagint, int> best;
  best.reserve(2 * (size_t) nall);
  dist2.resize(nall);
  rep.resize(nall);
  for (int i = 0; i < nlocal; ++i) {
    dist2[i] = 0.0;
    best[tag[i]] = i;
  }
  for (int j = nlocal; j < nall; ++j) {
    double d2 = 0.0;
    for (int k = 0; k < 3; ++k) {
      const double d = x[j][k] < lo[k] ? lo[k] - x[j][k] : (x[j][k] > hi[k] ? x[j][k] - hi[k] : 0.0);
      d2 += d * d;
    }
    dist2[j] = d2;
    auto it = best.find(tag[j]);
    if (it == best.end())
      best.emplace(tag[j], j);
    else if (it->second >= nlocal && d2 < dist2[it->second])
      it->second = j;
  }
  for (int i = 0; i < nlocal; ++i) rep[i] = i;
  for (int j = nlocal; j < nall; ++j) rep[j] = best[tag[j]];

  node_of_atom.assign(nall, -1);
  node_atom.clear();
  for (int i = 0; i < nlocal; ++i) {
    node_of_atom[i] = i;
    node_atom.push_back(i);
  }
  auto node = [&](int a) -> int64_t {
    if (node_of_atom[a] < 0) {
      node_of_atom[a] = (int) node_atom.size();
      node_atom.push_back(a);
    }
    return node_of_atom[a];
  };

  senders.clear();
  receivers.clear();
  shift_buf.clear();
  const int ntotal = list->inum + list->gnum;
  for (int ii = 0; ii < ntotal; ++ii) {
    const int i = list->ilist[ii];
    if (i >= nlocal && (rep[i] != i || dist2[i] > recv_cut2)) continue;
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = list->firstneigh[i];
    const int jnum = list->numneigh[i];
    int64_t ni = -1;
    for (int jj = 0; jj < jnum; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      const double r2 = dx * dx + dy * dy + dz * dz;
      if (r2 < cutsq_model) {
        note_distance(r2, i, j);
        if (ni < 0) ni = node(i);
        const int rj = rep[j];
        senders.push_back(node(rj));
        receivers.push_back(ni);
        // model: vec = pos[receiver] - pos[sender] + shift must equal x[i] - x[j]
        shift_buf.push_back(x[rj][0] - x[j][0]);
        shift_buf.push_back(x[rj][1] - x[j][1]);
        shift_buf.push_back(x[rj][2] - x[j][2]);
      }
    }
  }
}

void PairEMPP::log_graph_once(const char *kind)
{
  if (!report_graph) return;
  report_graph = false;
  if (comm->me == 0)
    utils::logmesg(lmp,
                   "pair_style empp: rank 0 graph: {} local + {} ghost atoms -> {} nodes, {} edges "
                   "({})\n",
                   atom->nlocal, atom->nghost, node_atom.size(), senders.size(), kind);
}

/* the model's inputs for the current graph: positions, atomic numbers, edges,
   shifts (Cartesian; zero without folding), n_local, compute_virial (CPU tensors;
   the runner moves them to the model's device and dtype) */

empp::ModelInput PairEMPP::graph_inputs(bool folded, bool want_virial)
{
  double **x = atom->x;
  const int *type = atom->type;
  const int64_t nnodes = (int64_t) node_atom.size();
  const int64_t nedges = (int64_t) senders.size();
  pos_buf.resize(3 * nnodes);
  znodes.resize(nnodes);
  for (int64_t n = 0; n < nnodes; ++n) {
    const int a = node_atom[n];
    pos_buf[3 * n + 0] = x[a][0];
    pos_buf[3 * n + 1] = x[a][1];
    pos_buf[3 * n + 2] = x[a][2];
    znodes[n] = type2z[type[a]];
  }

  auto cpu_i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto cpu_f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor pos = torch::from_blob(pos_buf.data(), {nnodes, 3}, cpu_f64);
  torch::Tensor z = torch::from_blob(znodes.data(), {nnodes}, cpu_i64);
  torch::Tensor edge_index = torch::empty({2, nedges}, cpu_i64);
  if (nedges > 0) {
    std::memcpy(edge_index.data_ptr<int64_t>(), senders.data(), nedges * sizeof(int64_t));
    std::memcpy(edge_index.data_ptr<int64_t>() + nedges, receivers.data(), nedges * sizeof(int64_t));
  }
  torch::Tensor shifts;
  if (folded && nedges > 0)
    shifts = torch::from_blob(shift_buf.data(), {nedges, 3}, cpu_f64).to(dtype);
  else
    shifts = torch::zeros({nedges, 3}, torch::TensorOptions().dtype(dtype));
  if (!device.is_cuda()) {
    pos = pos.clone();    // the model may mark it requires_grad; keep our buffer private
    z = z.clone();
    if (folded && nedges > 0) shifts = shifts.clone();
  }
  return {pos, z, edge_index, shifts, (int64_t) atom->nlocal, want_virial};
}

empp::ModelOutput PairEMPP::evaluate_model(const empp::ModelInput &input)
{
  empp::ModelOutput out;
  try {
    out = runner->run(input);    // node_energy is always returned (the finite check uses it)
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style empp: model evaluation failed: {}", e.what());
  }
  return out;
}

/* forces on nodes -> forces on the LAMMPS atoms they stand for (ghosts included) */

void PairEMPP::add_forces(torch::Tensor forces, double conv)
{
  double **f = atom->f;
  const int64_t nnodes = (int64_t) node_atom.size();
  forces = forces.to(torch::kCPU, torch::kFloat64).contiguous();
  if (forces.dim() != 2 || forces.size(0) != nnodes || forces.size(1) != 3)
    error->one(FLERR, "pair_style empp: model returned forces with {} rows, expected [{}, 3]",
               (int64_t) forces.size(0), nnodes);
  const double *fm = forces.data_ptr<double>();
  for (int64_t n = 0; n < nnodes; ++n) {
    const int a = node_atom[n];
    f[a][0] += conv * fm[3 * n + 0];
    f[a][1] += conv * fm[3 * n + 1];
    f[a][2] += conv * fm[3 * n + 2];
  }
}

/* local atoms are the first nlocal nodes */

void PairEMPP::add_atom_energies(torch::Tensor node_energy, double conv)
{
  node_energy = node_energy.to(torch::kCPU, torch::kFloat64).contiguous();
  const double *em = node_energy.data_ptr<double>();
  for (int i = 0; i < atom->nlocal; ++i) eatom[i] += conv * em[i];
}

/* the model's 3x3 virial W -> LAMMPS's xx, yy, zz, xy, xz, yz */

void PairEMPP::add_model_virial(torch::Tensor model_virial, double conv)
{
  model_virial = model_virial.to(torch::kCPU, torch::kFloat64).contiguous();
  const double *w = model_virial.data_ptr<double>();
  virial[0] += conv * w[0];
  virial[1] += conv * w[4];
  virial[2] += conv * w[8];
  virial[3] += conv * 0.5 * (w[1] + w[3]);
  virial[4] += conv * 0.5 * (w[2] + w[6]);
  virial[5] += conv * 0.5 * (w[5] + w[7]);
}

