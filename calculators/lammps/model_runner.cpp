/* See model_runner.h. */

#include "model_runner.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>
#include <torch/version.h>

#include <stdlib.h>
#include <sys/utsname.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>

namespace empp {

namespace {

std::string first_line(const std::string &s)
{
  auto pos = s.find('\n');
  return pos == std::string::npos ? s : s.substr(0, pos);
}

std::vector<std::string> split(const std::string &s, char sep)
{
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

/* ----------------------------------------------------------------------------- TorchScript */

class TorchScriptRunner : public ModelRunner {
 public:
  TorchScriptRunner(const ModelFile &file, torch::Device device) : ModelRunner(device)
  {
    try {
      std::istringstream checked(*file.bytes);    // the bytes inspect_model_file() checked
      module_ = torch::jit::load(checked, device);
    } catch (const std::exception &e) {
      throw ModelFileError("cannot load model file '" + file.path + "' as a TorchScript model: " +
                           first_line(e.what()) +
                           " (is it an exported empp-ff model, written by a compatible torch version?)");
    }
    module_.eval();
    read_attributes(file.path);
    info_.format = ModelFormat::TorchScript;
  }

  ModelOutput run(const ModelInput &in) override
  {
    std::vector<torch::jit::IValue> inputs{in.positions.to(device_), in.atomic_numbers.to(device_),
                                           in.edge_index.to(device_), in.shifts.to(device_, info_.dtype),
                                           in.n_local, in.compute_virial};
    auto result = module_.forward(inputs).toGenericDict();
    ModelOutput out;
    out.energy = result.at("energy").toTensor();
    out.node_energy = result.at("node_energy").toTensor();
    out.forces = result.at("forces").toTensor();
    if (in.compute_virial) out.virial = result.at("virial").toTensor();
    return out;
  }

  torch::jit::Module *script_module() override { return &module_; }

 private:
  void read_attributes(const std::string &path)
  {
    for (const char *name : {"r_max", "num_interactions", "atomic_numbers", "model_dtype"})
      if (!module_.hasattr(name))
        throw ModelFileError("'" + path + "' is not an empp-ff model file (no attribute '" + name +
                             "'); export it with 'empp-ff export'");
    try {
      if (module_.hasattr("format_version") && module_.attr("format_version").toInt() != 1)
        throw ModelFileError("model file format_version " +
                             std::to_string(module_.attr("format_version").toInt()) +
                             " is not supported by this TorchScript reader (expected 1)");
      info_.r_max = module_.attr("r_max").toDouble();
      info_.num_interactions = module_.attr("num_interactions").toInt();
      for (const auto &v : module_.attr("atomic_numbers").toListRef()) info_.atomic_numbers.push_back(v.toInt());
      set_dtype(module_.attr("model_dtype").toStringRef());
    } catch (const c10::Error &e) {
      throw ModelFileError("bad metadata attributes in '" + path + "': " + first_line(e.what()));
    }
  }

  torch::jit::Module module_;
};

/* ------------------------------------------------------------------------------ AOTInductor */

std::set<std::string> host_cpu_flags()
{
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    if (key == "flags" || key == "Features") {
      auto flags = split(line.substr(colon + 1), ' ');
      return std::set<std::string>(flags.begin(), flags.end());
    }
  }
  return {};
}

std::string major_minor(const std::string &version)
{
  auto parts = split(version.substr(0, version.find('+')), '.');
  return parts.size() >= 2 ? parts[0] + "." + parts[1] : version;
}

// Why a package with these (compiled-in) metadata cannot run here on `device`; "" if it can.
std::string compatibility_problems(const std::unordered_map<std::string, std::string> &meta,
                                   const torch::Device &device)
{
  auto get = [&](const std::string &k) {
    auto it = meta.find(k);
    return it == meta.end() ? std::string() : it->second;
  };
  std::vector<std::string> problems;
  std::string built_for = get("empp.device").empty() ? get("AOTI_DEVICE_KEY") : get("empp.device");
  std::string want = device.is_cuda() ? "cuda" : "cpu";
  if (built_for != want)
    problems.push_back("it was compiled for " + built_for + ", not " + want +
                       " (a package runs only on the device it was compiled for; export on a " + want +
                       " machine with --device " + want + ")");
  struct utsname uts;
  std::string machine = uname(&uts) == 0 ? uts.machine : "";
  if (!get("empp.machine").empty() && get("empp.machine") != machine) {
    problems.push_back("it was compiled for " + get("empp.machine") + " CPUs, this machine is " + machine);
  } else {
    auto host = host_cpu_flags();
    std::string missing;
    for (const auto &flag : split(get("empp.cpu_flags"), ' '))
      if (!host.empty() && !host.count(flag)) missing += (missing.empty() ? "" : " ") + flag;
    if (!missing.empty())
      problems.push_back("it was compiled for CPU instructions this CPU lacks: " + missing +
                         " (export with --cpu-target portable, or on this machine)");
  }
  std::string here = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR);
  if (!get("empp.torch_version").empty() && major_minor(get("empp.torch_version")) != here)
    problems.push_back("it was compiled with torch " + get("empp.torch_version") + ", this plugin uses torch " +
                       here + " (compiled kernels need the torch they were built with)");
  std::string text;
  for (const auto &p : problems) text += (text.empty() ? "" : "; ") + p;
  return text;
}

class AOTIRunner : public ModelRunner {
 public:
  AOTIRunner(const ModelFile &file, torch::Device device) : ModelRunner(device)
  {
    using Loader = torch::inductor::AOTIModelPackageLoader;
    std::unordered_map<std::string, std::string> meta;
    try {
      meta = Loader::load_metadata_from_package(file.path, "model");
    } catch (const std::exception &e) {
      throw ModelFileError("cannot read the compiled model package '" + file.path + "': " + first_line(e.what()));
    }
    std::string problems = compatibility_problems(meta, device);
    if (!problems.empty())
      throw ModelFileError("cannot run the compiled model package '" + file.path + "' here: " + problems +
                           ". Re-export it here (empp-ff export RUN -o model.pt2) or use the TorchScript "
                           "file (-o model.pt), which runs on any device and CPU");
    read_metadata(file.path, meta);
    // The package's library is native code that runs when it is loaded. Load the checked
    // bytes from a private folder (TMPDIR there: the loader extracts into it), removed on
    // failure and when the runner goes.
    workdir_ = private_folder();
    std::string copy = workdir_ + "/model.pt2";
    try {
      std::ofstream(copy, std::ios::binary) << *file.bytes;
      TmpdirScope scope(workdir_);
      loader_ = std::make_unique<Loader>(copy, "model", false, 1,
                                         device.has_index() ? device.index() : (c10::DeviceIndex) -1);
    } catch (const std::exception &e) {
      std::error_code ignored;
      std::filesystem::remove_all(workdir_, ignored);
      throw ModelFileError("cannot load the compiled model package '" + file.path + "': " + first_line(e.what()));
    }
  }

  ~AOTIRunner() override
  {
    loader_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(workdir_, ignored);
  }

  // The compiled graph checks no dtypes or strides: give it exactly what it was traced with.
  ModelOutput run(const ModelInput &in) override
  {
    auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device_);
    std::vector<at::Tensor> inputs{in.positions.to(device_, info_.dtype).contiguous(),
                                   in.atomic_numbers.to(i64).contiguous(), in.edge_index.to(i64).contiguous(),
                                   in.shifts.to(device_, info_.dtype).contiguous(),
                                   torch::tensor(in.n_local, i64)};
    auto result = loader_->run(inputs);
    if (result.size() != 4)
      throw std::runtime_error("the compiled model returned " + std::to_string(result.size()) +
                               " outputs, expected 4 (energy, node_energy, forces, virial)");
    ModelOutput out{result[0], result[1], result[2], in.compute_virial ? result[3] : torch::Tensor()};
    return out;
  }

 private:
  void read_metadata(const std::string &path, const std::unordered_map<std::string, std::string> &meta)
  {
    auto get = [&](const std::string &k) {
      auto it = meta.find(k);
      if (it == meta.end())
        throw ModelFileError("'" + path + "' is not an empp-ff model package (no metadata key '" + k + "')");
      return it->second;
    };
    if (get("empp.format_version") != "2")
      throw ModelFileError("model package format_version " + get("empp.format_version") +
                           " is not supported (expected 2): rebuild the plugin of a newer empp-ff");
    try {
      info_.r_max = std::stod(get("empp.r_max"));
      info_.num_interactions = std::stoll(get("empp.num_interactions"));
      for (const auto &z : split(get("empp.atomic_numbers"), ',')) info_.atomic_numbers.push_back(std::stoll(z));
    } catch (const std::logic_error &e) {
      throw ModelFileError("bad metadata in '" + path + "': " + e.what());
    }
    set_dtype(get("empp.dtype"));
    info_.format = ModelFormat::AOTInductor;
    info_.details = "compiled for " + get("empp.device") + " (" + get("empp.machine") + "), torch " +
                    get("empp.torch_version");
  }

  // TMPDIR set to a folder for the lifetime of the scope.
  struct TmpdirScope {
    explicit TmpdirScope(const std::string &folder)
    {
      const char *old = getenv("TMPDIR");
      had_ = old != nullptr;
      if (had_) previous_ = old;
      setenv("TMPDIR", folder.c_str(), 1);
    }
    ~TmpdirScope()
    {
      if (had_)
        setenv("TMPDIR", previous_.c_str(), 1);
      else
        unsetenv("TMPDIR");
    }
    bool had_;
    std::string previous_;
  };

  static std::string private_folder()
  {
    std::string pattern = (std::filesystem::temp_directory_path() / "empp-ff-pt2-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw ModelFileError("cannot create a folder for the compiled model package");
    return pattern;
  }

  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  std::string workdir_;
};

}    // namespace

void ModelRunner::set_dtype(const std::string &name)
{
  info_.dtype_name = name;
  if (name == "float64")
    info_.dtype = torch::kFloat64;
  else if (name == "float32")
    info_.dtype = torch::kFloat32;
  else
    throw ModelFileError("unsupported model dtype '" + name + "'");
}

std::unique_ptr<ModelRunner> make_model_runner(const std::string &path, torch::Device device)
{
  ModelFile file = inspect_model_file(path);
  if (file.format == ModelFormat::AOTInductor) return std::make_unique<AOTIRunner>(file, device);
  return std::make_unique<TorchScriptRunner>(file, device);
}

}    // namespace empp
