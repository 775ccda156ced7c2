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
#include "platform.h"
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
                   [halo yes|no] [fold yes|no] [min_distance R]
                   [max_bond_stretch R] [check_masses yes|no]
                   [ghost_cutoff R]   (halo no only; testing only)

   min_distance R (Angstrom, default 0.3, 0: off): stop when two atoms come closer.
   max_bond_stretch R (Angstrom, default 0: off; `empp-ff md` uses 0.5): boxes
     without a periodic direction (molecules) only, as in the ASE calculator: stop
     when a bond of the reference structure (the first configuration the pair style
     sees; pairs closer than 1.2 x the sum of their covalent radii) is longer or
     shorter than there by more than R.
   check_masses yes|no (default yes): the pair_coeff elements against the per-type
     masses; a type whose mass is another element's is an error.
------------------------------------------------------------------------- */

void PairEMPP::settings(int narg, char **arg)
{
  bond_ref = BondReference();    // a new pair_style command takes a new bond reference
  bond_guard_warned = false;
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
    } else if (key == "halo") {
      halo_request = utils::logical(FLERR, val, false, lmp);
    } else if (key == "min_distance") {
      min_distance = utils::numeric(FLERR, val, false, lmp);
      if (min_distance < 0.0)
        error->all(FLERR, "pair_style empp: min_distance must be >= 0 Angstrom (0 disables the check)");
    } else if (key == "max_bond_stretch") {
      max_bond_stretch = utils::numeric(FLERR, val, false, lmp);
      if (!(max_bond_stretch >= 0.0))
        error->all(FLERR, "pair_style empp: max_bond_stretch must be >= 0 Angstrom (0 disables the check)");
    } else if (key == "check_masses") {
      check_masses = utils::logical(FLERR, val, false, lmp);
    } else if (key == "ghost_cutoff") {
      ghost_cutoff_user = utils::numeric(FLERR, val, false, lmp);
    } else {
      error->all(FLERR,
                 "Unknown pair_style empp keyword '{}' "
                 "(valid: device, threads, jit_optimize, halo, fold, min_distance, max_bond_stretch, "
                 "check_masses, ghost_cutoff)",
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

  check_type_masses();
  init_bond_guard();
  report_graph = true;
  timing = Timing();
  if (halo_request == 1 && !halo_supported())
    error->all(FLERR,
               "pair_style empp halo yes: model file '{}' has no layer-wise entry points it can use "
               "(halo_version {}; AOTInductor .pt2 packages and files exported by empp-ff before "
               "halo mode have none): use the TorchScript .pt file from 'empp-ff export', or 'halo no'",
               model_path, halo_version);
  halo = halo_request != 0 && halo_supported();
  if (halo)
    init_halo();
  else
    init_full_shell();
}

/* this plugin knows halo_version 1: halo_prepare / halo_layer (empp_ff/export) */

bool PairEMPP::halo_supported() const
{
  return halo_version == 1 && (int64_t) halo_comm_dims.size() == num_interactions - 1;
}

/* halo mode: neighbours of local atoms only, the ghost shell of the pair cutoff
   (r_max + skin), virial by f.r (ghosts are explicit images, no shifts) */

void PairEMPP::init_halo()
{
  if (ghost_cutoff_user > 0.0)
    error->all(FLERR,
               "pair_style empp: ghost_cutoff applies to 'halo no' only (in halo mode the ghost shell "
               "is the pair cutoff r_max + skin = {} A)",
               r_max + neighbor->skin);
  ghostneigh = 0;
  no_virial_fdotr_compute = 0;
  comm_forward = comm_reverse = 0;
  for (auto d : halo_comm_dims) comm_forward = comm_reverse = std::max(comm_forward, (int) d);
  neighbor->add_request(this, NeighConst::REQ_FULL);
  if (comm->me == 0)
    utils::logmesg(lmp,
                   "pair_style empp: halo mode: ghost shell r_max + skin = {} A; {} exchange(s) of "
                   "node features per step, {} numbers per ghost atom\n",
                   r_max + neighbor->skin, num_interactions - 1, comm_forward);
}

/* full-shell mode: ghosts need their own neighbours, up to num_interactions * r_max */

void PairEMPP::init_full_shell()
{
  if (comm->me == 0 && halo_request == -1)
    utils::logmesg(lmp,
                   "pair_style empp: model file has no layer-wise entry points{}: full ghost shell "
                   "(halo no); re-export it with 'empp-ff export' for halo mode\n",
                   halo_version > 1 ? fmt::format(" this plugin knows (halo_version {})", halo_version)
                                    : "");
  ghostneigh = 1;
  comm_forward = comm_reverse = 0;
  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);

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

/* ----------------------------------------------------------------------
   One step in the mode chosen by init_style.
------------------------------------------------------------------------- */

void PairEMPP::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom || cvflag_atom)
    error->all(FLERR,
               "pair_style empp does not compute per-atom virials (compute stress/atom, "
               "centroid/stress/atom, heat flux); only the global virial/pressure is available");
  check_bonds();    // collective (every rank, atoms or not), before the model as in the calculator
  min_r2 = -1.0;
  ++timing.calls;
  if (halo)
    compute_halo();    // every rank, atoms or not: all take part in the feature exchanges
  else
    compute_full_shell();
  if (vflag_fdotr) virial_fdotr_compute();
}

namespace LAMMPS_NS {
void *empp_pair_creator(LAMMPS *lmp)
{
  return new PairEMPP(lmp);
}
}    // namespace LAMMPS_NS
