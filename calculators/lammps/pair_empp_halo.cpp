/* pair_style empp, halo mode: the model evaluated layer by layer on this rank's
 * local atoms, with a ghost shell of one r_max (+ skin) whatever the number of
 * layers. Before layer t >= 1 the node features of ghost atoms are copied from
 * their owners (LAMMPS forward communication); in the backward pass the
 * gradients with respect to them are summed into the owners (reverse
 * communication) before the layer below. Ghosts are explicit periodic images, so
 * the virial is f.r (virial_fdotr_compute). The model file's entry points
 * (halo_prepare, halo_layer) are documented in empp_ff/export/wrappers.py.
 *
 * Every rank makes the same L-1 forward and L-1 reverse exchanges in the same
 * order, also a rank without local atoms (it sends zero rows), or its neighbours
 * would wait forever. */

#include "pair_empp.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "neigh_list.h"
#include "platform.h"
#include "utils.h"

#include <torch/csrc/autograd/autograd.h>

#include <cstring>

using namespace LAMMPS_NS;

void PairEMPP::compute_halo()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  double t0 = platform::walltime();
  build_graph_unfolded(list->inum);    // edges into local atoms only
  check_min_distance();
  log_graph_once("halo: edges into local atoms only");
  timing.graph += platform::walltime() - t0;
  HaloPass pass;
  t0 = platform::walltime();
  if (nlocal > 0) halo_prepare(pass);
  timing.forward += platform::walltime() - t0;

  halo_forward(pass);
  torch::Tensor forces = halo_backward(pass);
  if (nlocal == 0) {
    check_finite(torch::Tensor(), torch::Tensor());    // collective
    return;
  }

  torch::Tensor node_energy = torch::zeros({nlocal}, torch::kFloat64);
  for (const auto &e : pass.energy) node_energy += e.detach().to(torch::kCPU, torch::kFloat64);
  if (!forces.defined()) forces = torch::zeros({nall, 3}, torch::kFloat64);    // no edges at all
  check_finite(forces, node_energy);
  const double conv = unit_factor();
  add_forces(forces, conv);
  if (eflag_global) eng_vdwl += conv * node_energy.sum().item<double>();
  if (eflag_atom) add_atom_energies(node_energy, conv);
}

/* positions (a float64 leaf that requires grad), species, edges -> halo_prepare */

void PairEMPP::halo_prepare(HaloPass &pass)
{
  const int nall = atom->nlocal + atom->nghost;
  const int64_t nedges = (int64_t) senders.size();
  const int *type = atom->type;
  znodes.resize(nall);
  for (int a = 0; a < nall; ++a) znodes[a] = type2z[type[a]];
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  // atom->x is one contiguous block; copy it so that autograd owns its input
  pass.pos = torch::from_blob(&atom->x[0][0], {nall, 3}, f64).to(device, torch::kFloat64, false, true);
  pass.pos.requires_grad_(true);
  torch::Tensor z = torch::from_blob(znodes.data(), {nall}, i64).to(device, torch::kInt64, false, true);
  torch::Tensor edge_index = torch::empty({2, nedges}, i64);
  if (nedges > 0) {
    std::memcpy(edge_index.data_ptr<int64_t>(), senders.data(), nedges * sizeof(int64_t));
    std::memcpy(edge_index.data_ptr<int64_t>() + nedges, receivers.data(), nedges * sizeof(int64_t));
  }
  torch::Tensor shifts = torch::zeros({nedges, 3}, torch::TensorOptions().dtype(dtype).device(device));
  try {
    pass.ctx = runner->script_module()->get_method("halo_prepare")({pass.pos, z, edge_index.to(device), shifts,
                                                 (int64_t) atom->nlocal})
                   .toTensorList();
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style empp: model evaluation (halo_prepare) failed: {}", e.what());
  }
}

/* layer by layer; the input of layer t >= 1 is layer t-1's output on the local
   atoms plus the owners' values on the ghosts */

void PairEMPP::halo_forward(HaloPass &pass)
{
  const int nlocal = atom->nlocal;
  const int L = (int) num_interactions;
  torch::jit::Method layer = runner->script_module()->get_method("halo_layer");
  pass.in.assign(L, torch::Tensor());
  pass.out.assign(L, torch::Tensor());
  pass.energy.assign(L, torch::Tensor());
  double t0 = platform::walltime();
  for (int t = 0; t < L; ++t) {
    torch::jit::IValue feats;    // None: layer 0 embeds the species itself
    if (t > 0) {
      const int width = (int) halo_comm_dims[t - 1];
      torch::Tensor local_rows = nlocal > 0 ? pass.out[t - 1] : torch::zeros({0, width}, torch::kFloat64);
      if (local_rows.dim() != 2 || local_rows.size(0) != nlocal || local_rows.size(1) != width)
        error->one(FLERR, "pair_style empp: halo_layer {} returned features of shape {}, expected [{}, {}]",
                   t - 1, c10::str(local_rows.sizes()), nlocal, width);
      const double tc = platform::walltime();
      pass.in[t] = exchange_forward(local_rows, width).requires_grad_(true);
      t0 += platform::walltime() - tc;    // counted as communication, not model time
      feats = pass.in[t];
    }
    if (nlocal == 0) continue;
    try {
      auto res = layer({(int64_t) t, pass.ctx, feats, (int64_t) nlocal}).toTuple();
      pass.out[t] = res->elements()[0].toTensor();
      pass.energy[t] = res->elements()[1].toTensor();
    } catch (const std::exception &e) {
      error->one(FLERR, "pair_style empp: model evaluation (halo_layer {}) failed: {}", t, e.what());
    }
  }
  timing.forward += platform::walltime() - t0;
}

/* dE/dpos for every atom, down the layers: the gradient of (energy_t, out_t)
   seeded with (1, g_t) w.r.t. (pos, in_t); the ghost rows of dE/d in_t go to
   their owners and become g_{t-1}. Returns forces [nall, 3] (undefined if none). */

torch::Tensor PairEMPP::halo_backward(HaloPass &pass)
{
  const bool here = atom->nlocal > 0;
  torch::Tensor grad_pos, seed;
  double t0 = platform::walltime();
  for (int t = (int) num_interactions - 1; t >= 0; --t) {
    torch::Tensor grad_in;
    if (here) {
      std::vector<torch::Tensor> outputs{pass.energy[t]}, seeds{torch::ones_like(pass.energy[t])};
      std::vector<torch::Tensor> inputs{pass.pos};
      if (seed.defined()) {
        outputs.push_back(pass.out[t]);
        seeds.push_back(seed.to(pass.out[t].dtype()));
      }
      if (t > 0) inputs.push_back(pass.in[t]);
      std::vector<torch::Tensor> grads;
      try {
        grads = torch::autograd::grad(outputs, inputs, seeds, /*retain_graph=*/t > 0,
                                      /*create_graph=*/false, /*allow_unused=*/true);
      } catch (const std::exception &e) {
        error->one(FLERR, "pair_style empp: backward pass of layer {} failed: {}", t, e.what());
      }
      if (grads[0].defined()) grad_pos = grad_pos.defined() ? grad_pos + grads[0] : grads[0];
      if (t > 0) grad_in = grads[1];
    }
    if (t > 0) {
      const double tc = platform::walltime();
      seed = exchange_reverse(grad_in, (int) halo_comm_dims[t - 1]);
      t0 += platform::walltime() - tc;
    }
  }
  timing.backward += platform::walltime() - t0;
  return grad_pos.defined() ? -grad_pos : grad_pos;
}

/* ---------------------------------------------------------------------- */

torch::Tensor PairEMPP::exchange_forward(const torch::Tensor &local_rows, int width)
{
  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  comm_width = width;
  comm_rows.assign((size_t) nall * width, 0.0);
  if (nlocal > 0) {
    auto rows = local_rows.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    std::memcpy(comm_rows.data(), rows.data_ptr<double>(), sizeof(double) * (size_t) nlocal * width);
  }
  const double t0 = platform::walltime();
  comm->forward_comm(this, width);
  timing.comm += platform::walltime() - t0;
  return torch::from_blob(comm_rows.data(), {nall, width}, torch::TensorOptions().dtype(torch::kFloat64))
      .to(device, dtype, false, true);
}

/* all_rows [nall, width] (undefined: zeros); returns the local rows after the
   ghost rows have been added into their owners */

torch::Tensor PairEMPP::exchange_reverse(const torch::Tensor &all_rows, int width)
{
  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  comm_width = width;
  comm_rows.assign((size_t) nall * width, 0.0);
  if (all_rows.defined() && nall > 0) {
    auto rows = all_rows.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    std::memcpy(comm_rows.data(), rows.data_ptr<double>(), sizeof(double) * (size_t) nall * width);
  }
  const double t0 = platform::walltime();
  comm->reverse_comm(this, width);
  timing.comm += platform::walltime() - t0;
  return torch::from_blob(comm_rows.data(), {nlocal, width}, torch::TensorOptions().dtype(torch::kFloat64))
      .to(device, torch::kFloat64, false, true);
}

/* node features are invariant under periodic shifts: no pbc offsets to apply */

int PairEMPP::pack_forward_comm(int n, int *list_, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  int m = 0;
  for (int k = 0; k < n; ++k) {
    const double *row = &comm_rows[(size_t) list_[k] * comm_width];
    for (int c = 0; c < comm_width; ++c) buf[m++] = row[c];
  }
  return m;
}

void PairEMPP::unpack_forward_comm(int n, int first, double *buf)
{
  std::memcpy(&comm_rows[(size_t) first * comm_width], buf, sizeof(double) * (size_t) n * comm_width);
}

int PairEMPP::pack_reverse_comm(int n, int first, double *buf)
{
  std::memcpy(buf, &comm_rows[(size_t) first * comm_width], sizeof(double) * (size_t) n * comm_width);
  return n * comm_width;
}

void PairEMPP::unpack_reverse_comm(int n, int *list_, double *buf)
{
  int m = 0;
  for (int k = 0; k < n; ++k) {
    double *row = &comm_rows[(size_t) list_[k] * comm_width];
    for (int c = 0; c < comm_width; ++c) row[c] += buf[m++];
  }
}
