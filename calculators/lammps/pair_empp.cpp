/* pair_style empp: see pair_empp.h and README.md. */

#include "pair_empp.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <ATen/Parallel.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

using namespace LAMMPS_NS;

namespace {

const char *const kSymbols[] = {
    "X",  "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si",
    "P",  "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru",
    "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr",
    "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",
    "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac",
    "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf",
    "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};
const int kNumSymbols = sizeof(kSymbols) / sizeof(kSymbols[0]);

int symbol_to_z(const std::string &s)
{
  for (int z = 1; z < kNumSymbols; ++z)
    if (s == kSymbols[z]) return z;
  return 0;
}

std::string z_to_symbol(int64_t z)
{
  if (z > 0 && z < kNumSymbols) return kSymbols[z];
  return "Z" + std::to_string(z);
}

std::string first_line(const std::string &s)
{
  auto pos = s.find('\n');
  return pos == std::string::npos ? s : s.substr(0, pos);
}

int local_rank_hint(int world_rank)
{
  for (const char *var : {"MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                          "MV2_COMM_WORLD_LOCAL_RANK", "PMI_LOCAL_RANK"}) {
    const char *v = std::getenv(var);
    if (v && *v) return std::atoi(v);
  }
  return world_rank;
}

}    // namespace

/* ---------------------------------------------------------------------- */

PairEMPP::PairEMPP(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 0;
  ghostneigh = 1;    // message passing: ghost atoms need their own edges
  centroidstressflag = CENTROID_NOTAVAIL;    // per-atom (centroid) virial not available
}

PairEMPP::~PairEMPP()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairEMPP::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      setflag[i][j] = 0;
      cutsq[i][j] = 0.0;
      cutghost[i][j] = 0.0;
    }
}

/* ----------------------------------------------------------------------
   pair_style empp [device cpu|cuda|cuda:N] [threads N] [jit_optimize yes|no]
                   [ghost_cutoff R]   (testing only)
------------------------------------------------------------------------- */

void PairEMPP::settings(int narg, char **arg)
{
  int iarg = 0;
  while (iarg < narg) {
    std::string key = arg[iarg];
    if (iarg + 1 >= narg)
      error->all(FLERR, "Illegal pair_style empp command: keyword '{}' needs a value", key);
    std::string val = arg[iarg + 1];
    if (key == "device") {
      if (val == "cpu") {
        device = torch::Device(torch::kCPU);
      } else if (val == "cuda" || utils::strmatch(val, "^cuda:\\d+$")) {
        if (!torch::cuda::is_available())
          error->all(FLERR,
                     "pair_style empp device {}: CUDA is not available to libtorch "
                     "(CPU-only torch build, no GPU visible, or driver problem); "
                     "use 'device cpu' or install a CUDA build of torch and rebuild "
                     "the plugin with 'empp-ff lammps build'",
                     val);
        int ngpu = (int) torch::cuda::device_count();
        int idx;
        if (val == "cuda")
          idx = local_rank_hint(comm->me) % std::max(ngpu, 1);
        else
          idx = std::atoi(val.c_str() + 5);
        if (idx >= ngpu)
          error->all(FLERR, "pair_style empp device {}: only {} CUDA device(s) visible", val, ngpu);
        device = torch::Device(torch::kCUDA, (c10::DeviceIndex) idx);
      } else {
        error->all(FLERR, "pair_style empp: device must be cpu, cuda or cuda:N, got '{}'", val);
      }
      device_name = val;
    } else if (key == "threads") {
      num_threads = utils::inumeric(FLERR, val, false, lmp);
      if (num_threads < 1) error->all(FLERR, "pair_style empp: threads must be >= 1");
    } else if (key == "jit_optimize") {
      jit_optimize = utils::logical(FLERR, val, false, lmp);
    } else if (key == "fold") {
      fold = utils::logical(FLERR, val, false, lmp);
    } else if (key == "ghost_cutoff") {
      ghost_cutoff_user = utils::numeric(FLERR, val, false, lmp);
    } else {
      error->all(FLERR,
                 "Unknown pair_style empp keyword '{}' "
                 "(valid: device, threads, jit_optimize, fold, ghost_cutoff)",
                 key);
    }
    iarg += 2;
  }
  if (num_threads > 0) at::set_num_threads(num_threads);
  torch::jit::setGraphExecutorOptimize(jit_optimize != 0);
}

/* ---------------------------------------------------------------------- */

void PairEMPP::check_units()
{
  std::string units = update->unit_style;
  if (units != "metal" && units != "real")
    error->all(FLERR,
               "pair_style empp supports 'units metal' (eV, Angstrom; the model's own units) and "
               "'units real' (kcal/mol, Angstrom; converted), not 'units {}'",
               units);
}

double PairEMPP::unit_factor() const
{
  // model energies are eV and lengths Angstrom; metal and real both use Angstrom.
  // force->qe2f converts (e * V/Angstrom) to force units: 1 in metal, 23.0605... in real,
  // i.e. exactly the eV -> energy-unit factor since lengths agree.
  return force->qe2f;
}

/* ----------------------------------------------------------------------
   pair_coeff * * model.pt El1 El2 ... (one element symbol per atom type)
------------------------------------------------------------------------- */

void PairEMPP::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  check_units();

  const int ntypes = atom->ntypes;
  if (narg < 3 || std::string(arg[0]) != "*" || std::string(arg[1]) != "*")
    error->all(FLERR, "pair_coeff for pair_style empp must be: pair_coeff * * model.pt El1 ... El{}",
               ntypes);
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff * * {} needs exactly one element symbol per atom type: "
               "{} atom types, got {} element(s)",
               arg[2], ntypes, narg - 3);

  load_model(arg[2]);
  map_types_to_elements(arg + 3);
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
  if (comm->me == 0) log_model_summary();
}

void PairEMPP::load_model(const std::string &path)
{
  model_path = path;
  try {
    runner = empp::make_model_runner(model_path, device);
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_style empp: {}", e.what());
  }
  const empp::ModelInfo &info = runner->info();
  r_max = info.r_max;
  num_interactions = info.num_interactions;
  model_z = info.atomic_numbers;
  model_dtype = info.dtype_name;
  dtype = info.dtype;
  if (!(r_max > 0.0) || num_interactions < 1)
    error->all(FLERR, "pair_style empp: bad model metadata r_max={} num_interactions={}", r_max,
               num_interactions);
}

std::string PairEMPP::model_elements() const
{
  std::string known;
  for (auto z : model_z) known += (known.empty() ? "" : " ") + z_to_symbol(z);
  return known;
}

/* symbols[t - 1] is the element of atom type t */

void PairEMPP::map_types_to_elements(char **symbols)
{
  const int ntypes = atom->ntypes;
  const std::string known = model_elements();
  type2z.assign(ntypes + 1, 0);
  for (int t = 1; t <= ntypes; ++t) {
    std::string sym = symbols[t - 1];
    int z = symbol_to_z(sym);
    if (z == 0)
      error->all(FLERR,
                 "pair_coeff: '{}' (atom type {}) is not a chemical element symbol; "
                 "the model knows: {}",
                 sym, t, known);
    if (std::find(model_z.begin(), model_z.end(), (int64_t) z) == model_z.end())
      error->all(FLERR,
                 "pair_coeff: element '{}' (atom type {}) is not in the model '{}'; "
                 "the model knows: {}",
                 sym, t, model_path, known);
    type2z[t] = z;
  }
}

void PairEMPP::log_model_summary()
{
  std::string msg = fmt::format(
      "pair_style empp: model {} ({}{})\n  elements: {}  r_max = {} A  num_interactions = {}  "
      "dtype = {}  device = {}\n  ghost shell needed = num_interactions * r_max = {} A (+ skin)\n"
      "  type -> element:\n",
      model_path, empp::format_name(runner->info().format),
      runner->info().details.empty() ? "" : ", " + runner->info().details, model_elements(), r_max,
      num_interactions, model_dtype, device.str(), num_interactions * r_max);
  for (int t = 1; t <= atom->ntypes; ++t)
    msg += fmt::format("    {:>4d} -> {:<2s} (Z={})\n", t, z_to_symbol(type2z[t]), type2z[t]);
  utils::logmesg(lmp, msg);
}

/* ---------------------------------------------------------------------- */

void PairEMPP::init_style()
{
  check_units();
  if (!runner) error->all(FLERR, "pair_style empp: pair_coeff * * model.pt ... is missing");
  if (force->newton_pair == 0)
    error->all(FLERR,
               "pair_style empp requires newton pair on (forces on ghost atoms must be "
               "sent back to their owners); remove 'newton off' / use 'newton on'");
  if (comm->mode != Comm::SINGLE)
    error->all(FLERR, "pair_style empp requires comm_modify mode single");

  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
  report_graph = true;

  // folded graphs carry periodic shifts: the virial comes from the model, not from f.r
  if (folding() && atom->tag_enable == 0)
    error->all(FLERR, "pair_style empp requires atom IDs (atom_modify id yes)");
  no_virial_fdotr_compute = folding() ? 1 : 0;

  const double needed = num_interactions * r_max + neighbor->skin;
  if (ghost_cutoff_user > 0.0) {
    if (ghost_cutoff_user < needed && comm->me == 0)
      error->warning(FLERR,
                     "pair_style empp ghost_cutoff {} is smaller than num_interactions*r_max+skin "
                     "= {}: energies and forces WILL BE WRONG (testing only)",
                     ghost_cutoff_user, needed);
    comm->cutghostuser = ghost_cutoff_user;
  } else {
    comm->cutghostuser = std::max(comm->cutghostuser, needed);
  }
}

double PairEMPP::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "pair_style empp: pair coefficients are not set");
  cutghost[i][j] = cutghost[j][i] = r_max;
  return r_max;
}

/* ---------------------------------------------------------------------- */

bool PairEMPP::folding() const
{
  return fold && !domain->triclinic;
}

/* ----------------------------------------------------------------------
   Graph with every local and ghost atom as a node (fold no, triclinic boxes):
   edges centred on all atoms, zero shifts, virial by f.r.
------------------------------------------------------------------------- */

void PairEMPP::build_graph_ghosts()
{
  double **x = atom->x;
  const int nall = atom->nlocal + atom->nghost;
  const int ntotal = list->inum + list->gnum;
  const double cutsq_model = r_max * r_max;

  node_atom.resize(nall);
  for (int i = 0; i < nall; ++i) node_atom[i] = i;
  senders.clear();
  receivers.clear();
  for (int ii = 0; ii < ntotal; ++ii) {
    const int i = list->ilist[ii];
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = list->firstneigh[i];
    const int jnum = list->numneigh[i];
    for (int jj = 0; jj < jnum; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      if (dx * dx + dy * dy + dz * dz < cutsq_model) {
        senders.push_back(j);
        receivers.push_back(i);
      }
    }
  }
  shift_buf.clear();
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
      if (dx * dx + dy * dy + dz * dz < cutsq_model) {
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

/* ----------------------------------------------------------------------
   One step: build the graph, evaluate the model on it, add its forces,
   energies and virial to LAMMPS's accumulators.
------------------------------------------------------------------------- */

void PairEMPP::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom || cvflag_atom)
    error->all(FLERR,
               "pair_style empp does not compute per-atom virials (compute stress/atom, "
               "centroid/stress/atom, heat flux); only the global virial/pressure is available");

  if (atom->nlocal == 0) {    // no local energy on this rank: no forces, no virial
    if (vflag_fdotr) virial_fdotr_compute();
    return;
  }

  const bool folded = folding();
  if (folded)
    build_graph_folded();
  else
    build_graph_ghosts();
  log_graph_once(folded);

  const bool want_virial = folded && vflag_global;
  empp::ModelOutput out = evaluate_model(graph_inputs(folded, want_virial));
  const double conv = unit_factor();
  add_forces(out.forces, conv);
  if (eflag_global) eng_vdwl += conv * out.energy.to(torch::kCPU, torch::kFloat64).item<double>();
  if (eflag_atom) add_atom_energies(out.node_energy, conv);
  if (want_virial) add_model_virial(out.virial, conv);
  if (vflag_fdotr) virial_fdotr_compute();
}

void PairEMPP::log_graph_once(bool folded)
{
  if (!report_graph) return;
  report_graph = false;
  if (comm->me == 0)
    utils::logmesg(lmp,
                   "pair_style empp: rank 0 graph: {} local + {} ghost atoms -> {} nodes, {} edges "
                   "({})\n",
                   atom->nlocal, atom->nghost, node_atom.size(), senders.size(),
                   folded ? "folded" : "all ghosts are nodes");
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
    out = runner->run(input);
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

namespace LAMMPS_NS {
void *empp_pair_creator(LAMMPS *lmp)
{
  return new PairEMPP(lmp);
}
}    // namespace LAMMPS_NS
