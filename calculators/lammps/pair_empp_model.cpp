/* pair_style empp: the model file (loading, the contract's attributes), the
 * LAMMPS type -> element map of pair_coeff and its check against the per-type
 * masses. See pair_empp.h. */

#include "pair_empp.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "utils.h"

#include <algorithm>
#include <cmath>
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

// ase.data.atomic_masses (IUPAC 2016 standard atomic weights; the mass number of the
// longest-lived isotope for elements without one), g/mol
const double kStandardMasses[] = {
    1.0,        1.008,      4.002602,   6.94,        9.0121831,  10.81,        12.011,     14.007,
    15.999,     18.998403163, 20.1797,  22.98976928, 24.305,     26.9815385,   28.085,     30.973761998,
    32.06,      35.45,      39.948,     39.0983,     40.078,     44.955908,    47.867,     50.9415,
    51.9961,    54.938044,  55.845,     58.933194,   58.6934,    63.546,       65.38,      69.723,
    72.63,      74.921595,  78.971,     79.904,      83.798,     85.4678,      87.62,      88.90584,
    91.224,     92.90637,   95.95,      97.90721,    101.07,     102.9055,     106.42,     107.8682,
    112.414,    114.818,    118.71,     121.76,      127.6,      126.90447,    131.293,    132.90545196,
    137.327,    138.90547,  140.116,    140.90766,   144.242,    144.91276,    150.36,     151.964,
    157.25,     158.92535,  162.5,      164.93033,   167.259,    168.93422,    173.054,    174.9668,
    178.49,     180.94788,  183.84,     186.207,     190.23,     192.217,      195.084,    196.966569,
    200.592,    204.38,     207.2,      208.9804,    208.98243,  209.98715,    222.01758,  223.01974,
    226.02541,  227.02775,  232.0377,   231.03588,   238.02891,  237.04817,    244.06421,  243.06138,
    247.07035,  247.07031,  251.07959,  252.083,     257.09511,  258.09843,    259.101,    262.11,
    267.122,    268.126,    271.134,    270.133,     269.1338,   278.156,      281.165,    281.166,
    285.177,    286.182,    289.19,     289.194,     293.204,    293.208,      294.214};
static_assert(sizeof(kStandardMasses) / sizeof(kStandardMasses[0]) == kNumSymbols, "one mass per element");

// A per-type mass within this of the named element's standard mass is that element
// (any rounding of the standard mass to an integer passes); beyond it, a mass within
// this of another element's standard mass is that element: pair_coeff has the
// elements in the wrong order.
constexpr double kMassTolerance = 0.5;    // g/mol

/* the element whose standard mass is within kMassTolerance of m (0: none), the nearest */
int element_of_mass(double m)
{
  int best = 0;
  for (int z = 1; z < kNumSymbols; ++z)
    if (std::fabs(m - kStandardMasses[z]) <= kMassTolerance &&
        (best == 0 || std::fabs(m - kStandardMasses[z]) < std::fabs(m - kStandardMasses[best])))
      best = z;
  return best;
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

std::string PairEMPP::element_symbol(int64_t z)
{
  return z_to_symbol(z);
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
  mass_warned.assign(ntypes + 1, 0.0);
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

/* ----------------------------------------------------------------------
   init_style: the pair_coeff elements against the per-type masses (Masses of the
   data file, `mass` commands), where LAMMPS has them (atom styles with per-type
   masses; types whose mass is set). A mass that is another element's (within
   kMassTolerance) and not the named element's is an error: the elements follow
   the types in the wrong order, a silent wrong result otherwise. A mass that is no
   element's (an isotope such as D = 2.014 for H, or a typo) gets a warning.
   `check_masses no` accepts both: masses changed on purpose (an isotope that weighs
   like another element; hydrogen mass repartitioning, which makes an O bonded to one H
   weigh 13.98, like N).
------------------------------------------------------------------------- */

void PairEMPP::check_type_masses()
{
  if (!check_masses || !atom->mass || !atom->mass_setflag) return;
  const int ntypes = atom->ntypes;
  mass_warned.resize(ntypes + 1, 0.0);
  std::string suggested;    // the elements of the types by their masses
  for (int t = 1; t <= ntypes; ++t) {
    const int z = atom->mass_setflag[t] ? element_of_mass(atom->mass[t]) : 0;
    suggested += " " + (z ? z_to_symbol(z) : std::string("?"));
  }
  for (int t = 1; t <= ntypes; ++t) {
    if (!atom->mass_setflag[t]) continue;
    const double m = atom->mass[t];
    const int64_t named = type2z[t];
    if (std::fabs(m - kStandardMasses[named]) <= kMassTolerance) continue;
    const int z = element_of_mass(m);
    if (z)
      error->all(FLERR,
                 "pair_coeff: atom type {} is {} by pair_coeff, but its mass {:g} is that of {} ({:g}), not of "
                 "{} ({:g}): the element names do not follow the atom types (the masses say:{}); "
                 "'pair_style empp check_masses no' accepts masses changed on purpose (an isotope that "
                 "weighs like another element, hydrogen mass repartitioning)",
                 t, z_to_symbol(named), m, z_to_symbol(z), kStandardMasses[z], z_to_symbol(named),
                 kStandardMasses[named], suggested);
    if (comm->me == 0 && mass_warned[t] != m)
      error->warning(FLERR,
                     "pair_style empp: atom type {} ({}) has mass {:g}, not the standard atomic mass of {} "
                     "({:g}): fine for an isotope (e.g. D = 2.014 for H), otherwise check the Masses "
                     "section or the mass command",
                     t, z_to_symbol(named), m, z_to_symbol(named), kStandardMasses[named]);
    mass_warned[t] = m;
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

