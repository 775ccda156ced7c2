/* pair_style empp: the model file (loading, the contract's attributes) and the
 * LAMMPS type -> element map of pair_coeff. See pair_empp.h. */

#include "pair_empp.h"

#include "atom.h"
#include "error.h"
#include "utils.h"

#include <algorithm>
#include <fstream>

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

}    // namespace

void PairEMPP::load_model(const std::string &path)
{
  model_path = path;
  try {
    runner = empp::make_model_runner(model_path, device);    // verifies the file first
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
  read_halo_attributes();
}

/* layer-wise entry points (optional: absent from files exported before them, and from
   AOTInductor packages, which carry the whole-model forward only) */

void PairEMPP::read_halo_attributes()
{
  halo_version = 0;
  halo_comm_dims.clear();
  torch::jit::Module *module = runner->script_module();
  if (!module) return;
  try {
    halo_version = module->hasattr("halo_version") ? module->attr("halo_version").toInt() : 0;
    if (halo_version == 1) halo_comm_dims = module->attr("halo_comm_dims").toIntVector();
  } catch (const c10::Error &e) {
    error->all(FLERR, "pair_style empp: bad halo attributes in '{}': {}", model_path, first_line(e.what()));
  }
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

