/* Running an empp-ff model file: one interface, one implementation per format.
 *
 * The pair style builds the graph (positions, atomic numbers, edges, shifts) and asks a
 * ModelRunner for energy, per-atom energies, forces and, when asked, the virial; it never
 * sees which format the file has. make_model_runner() verifies the file (model_file.h)
 * and picks the implementation:
 *
 *   TorchScriptRunner  model.pt   torch::jit::load, attributes r_max, atomic_numbers, ...
 *   AOTIRunner         model.pt2  torch::inductor::AOTIModelPackageLoader; first checks
 *                                 that the package was compiled for this device, CPU and
 *                                 torch (from its metadata, before loading any code)
 *
 * Model-file contract: empp_ff/export/wrappers.py and empp_ff/export/aoti.py.
 */
#pragma once

#include "model_file.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace empp {

struct ModelInfo {
  ModelFormat format = ModelFormat::TorchScript;
  double r_max = 0.0;
  int64_t num_interactions = 0;
  std::vector<int64_t> atomic_numbers;    // the species the model knows
  std::string dtype_name = "float64";
  torch::Dtype dtype = torch::kFloat64;
  std::string details;                    // one line for the log (e.g. what a package was compiled for)
};

// One structure (LAMMPS: local atoms first, then ghosts). positions/shifts: any float dtype,
// CPU or the model's device; atomic_numbers/edge_index int64. n_local atoms count in energy.
struct ModelInput {
  torch::Tensor positions, atomic_numbers, edge_index, shifts;
  int64_t n_local = 0;
  bool compute_virial = false;
};

// Tensors on the model's device in the model dtype; virial is [3, 3] when asked, else undefined.
struct ModelOutput {
  torch::Tensor energy, node_energy, forces, virial;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  const ModelInfo &info() const { return info_; }
  const torch::Device &device() const { return device_; }
  virtual ModelOutput run(const ModelInput &input) = 0;
  // The TorchScript module, for the layer-wise entry points of halo mode; nullptr for
  // formats that carry only the whole-model forward (AOTInductor packages).
  virtual torch::jit::Module *script_module() { return nullptr; }

 protected:
  explicit ModelRunner(torch::Device device) : device_(device) {}
  void set_dtype(const std::string &name);    // throws ModelFileError for an unknown dtype
  ModelInfo info_;
  torch::Device device_;
};

// Throws ModelFileError (bad, corrupted or incompatible file) with a message naming the file.
std::unique_ptr<ModelRunner> make_model_runner(const std::string &path, torch::Device device);

}    // namespace empp
