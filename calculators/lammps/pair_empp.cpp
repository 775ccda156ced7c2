/* pair_style empp: see pair_empp.h and README.md. */

#include "pair_empp.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

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
  centroidstressflag = 3;    // CENTROID_NOTAVAIL
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
    } else if (key == "ghost_cutoff") {
      ghost_cutoff_user = utils::numeric(FLERR, val, false, lmp);
    } else {
      error->all(FLERR,
                 "Unknown pair_style empp keyword '{}' "
                 "(valid: device, threads, jit_optimize, ghost_cutoff)",
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

  // ---- load the model
  model_path = arg[2];
  {
    std::ifstream probe(model_path, std::ios::binary);
    if (!probe.good())
      error->all(FLERR, "pair_style empp: cannot open model file '{}' (file not found or unreadable)",
                 model_path);
  }
  std::string metadata;
  try {
    torch::jit::ExtraFilesMap extra{{"metadata.json", ""}};
    model = torch::jit::load(model_path, device, extra);
    metadata = extra["metadata.json"];
  } catch (const std::exception &e) {
    error->all(FLERR,
               "pair_style empp: cannot load model file '{}' as a TorchScript model: {} "
               "(is it an exported empp-ff model, written by a compatible torch version?)",
               model_path, first_line(e.what()));
  }
  model.eval();
  model_loaded = true;

  for (const char *name : {"r_max", "num_interactions", "atomic_numbers", "model_dtype"})
    if (!model.hasattr(name))
      error->all(FLERR,
                 "pair_style empp: '{}' is not an empp-ff model file (no attribute '{}'); "
                 "export it with 'empp-ff export'",
                 model_path, name);
  try {
    if (model.hasattr("format_version")) {
      int64_t fv = model.attr("format_version").toInt();
      if (fv != 1)
        error->all(FLERR, "pair_style empp: model file format_version {} is not supported (expected 1)",
                   fv);
    }
    r_max = model.attr("r_max").toDouble();
    num_interactions = model.attr("num_interactions").toInt();
    model_z.clear();
    for (const auto &v : model.attr("atomic_numbers").toListRef()) model_z.push_back(v.toInt());
    model_dtype = model.attr("model_dtype").toStringRef();
  } catch (const c10::Error &e) {
    error->all(FLERR, "pair_style empp: bad metadata attributes in '{}': {}", model_path,
               first_line(e.what()));
  }
  if (model_dtype == "float64")
    dtype = torch::kFloat64;
  else if (model_dtype == "float32")
    dtype = torch::kFloat32;
  else
    error->all(FLERR, "pair_style empp: unsupported model_dtype '{}' in '{}'", model_dtype, model_path);
  if (!(r_max > 0.0) || num_interactions < 1)
    error->all(FLERR, "pair_style empp: bad model metadata r_max={} num_interactions={}", r_max,
               num_interactions);

  std::string known;
  for (auto z : model_z) known += (known.empty() ? "" : " ") + z_to_symbol(z);

  // ---- map types to elements
  type2z.assign(ntypes + 1, 0);
  for (int t = 1; t <= ntypes; ++t) {
    std::string sym = arg[2 + t];
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
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;

  if (comm->me == 0) {
    std::string msg = fmt::format(
        "pair_style empp: model {}\n  elements: {}  r_max = {} A  num_interactions = {}  "
        "dtype = {}  device = {}\n  ghost shell needed = num_interactions * r_max = {} A (+ skin)\n"
        "  type -> element:\n",
        model_path, known, r_max, num_interactions, model_dtype, device.str(),
        num_interactions * r_max);
    for (int t = 1; t <= ntypes; ++t)
      msg += fmt::format("    {:>4d} -> {:<2s} (Z={})\n", t, z_to_symbol(type2z[t]), type2z[t]);
    utils::logmesg(lmp, msg);
  }
}

/* ---------------------------------------------------------------------- */

void PairEMPP::init_style()
{
  check_units();
  if (!model_loaded) error->all(FLERR, "pair_style empp: pair_coeff * * model.pt ... is missing");
  if (force->newton_pair == 0)
    error->all(FLERR,
               "pair_style empp requires newton pair on (forces on ghost atoms must be "
               "sent back to their owners); remove 'newton off' / use 'newton on'");
  if (comm->mode != Comm::SINGLE)
    error->all(FLERR, "pair_style empp requires comm_modify mode single");

  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);

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

void PairEMPP::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom || cvflag_atom)
    error->all(FLERR,
               "pair_style empp does not compute per-atom virials (compute stress/atom, "
               "centroid/stress/atom, heat flux); only the global virial/pressure is available");

  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;

  if (nlocal == 0 || nall == 0) {
    if (vflag_fdotr) virial_fdotr_compute();
    return;
  }

  // ---- edges within r_max, centred on local and ghost atoms (receiver = centre i)
  const int ntotal = list->inum + list->gnum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const double cutsq_model = r_max * r_max;

  senders.clear();
  receivers.clear();
  for (int ii = 0; ii < ntotal; ++ii) {
    const int i = ilist[ii];
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = firstneigh[i];
    const int jnum = numneigh[i];
    for (int jj = 0; jj < jnum; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      if (dx * dx + dy * dy + dz * dz < cutsq_model) {
        senders.push_back(j);
        receivers.push_back(i);
      }
    }
  }
  const int64_t nedges = (int64_t) senders.size();

  znodes.resize(nall);
  for (int i = 0; i < nall; ++i) znodes[i] = type2z[type[i]];

  auto cpu_i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor pos = torch::from_blob(&x[0][0], {nall, 3}, torch::kFloat64);
  torch::Tensor z = torch::from_blob(znodes.data(), {nall}, cpu_i64);
  torch::Tensor edge_index = torch::empty({2, nedges}, cpu_i64);
  if (nedges > 0) {
    std::memcpy(edge_index.data_ptr<int64_t>(), senders.data(), nedges * sizeof(int64_t));
    std::memcpy(edge_index.data_ptr<int64_t>() + nedges, receivers.data(), nedges * sizeof(int64_t));
  }
  if (device.is_cuda()) {
    pos = pos.to(device);
    z = z.to(device);
    edge_index = edge_index.to(device);
  } else {
    pos = pos.clone();    // the model may mark it requires_grad; never alias atom->x
  }
  torch::Tensor shifts = torch::zeros({nedges, 3}, torch::TensorOptions().dtype(dtype).device(device));

  std::vector<torch::jit::IValue> inputs{pos, z, edge_index, shifts, (int64_t) nlocal, false};
  torch::Tensor energy, forces, node_energy;
  try {
    auto out = model.forward(inputs).toGenericDict();
    energy = out.at("energy").toTensor();
    forces = out.at("forces").toTensor();
    if (eflag_atom) node_energy = out.at("node_energy").toTensor();
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style empp: model evaluation failed: {}", e.what());
  }

  const double conv = unit_factor();
  forces = forces.to(torch::kCPU, torch::kFloat64).contiguous();
  if (forces.size(0) != nall || forces.size(1) != 3)
    error->one(FLERR, "pair_style empp: model returned forces of shape [{}, {}], expected [{}, 3]",
               forces.size(0), forces.size(1), nall);
  const double *fm = forces.data_ptr<double>();
  for (int i = 0; i < nall; ++i) {
    f[i][0] += conv * fm[3 * i + 0];
    f[i][1] += conv * fm[3 * i + 1];
    f[i][2] += conv * fm[3 * i + 2];
  }

  if (eflag_global) eng_vdwl += conv * energy.to(torch::kCPU, torch::kFloat64).item<double>();
  if (eflag_atom) {
    node_energy = node_energy.to(torch::kCPU, torch::kFloat64).contiguous();
    const double *em = node_energy.data_ptr<double>();
    for (int i = 0; i < nlocal; ++i) eatom[i] += conv * em[i];
  }

  if (vflag_fdotr) virial_fdotr_compute();
}

namespace LAMMPS_NS {
void *empp_pair_creator(LAMMPS *lmp)
{
  return new PairEMPP(lmp);
}
}    // namespace LAMMPS_NS
