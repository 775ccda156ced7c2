/* Reading an empp-ff model file before loading it (both formats; no LAMMPS code: the JSON
 * parser is the nlohmann json shipped with the LAMMPS headers).
 *
 * A model file is a zip archive: TorchScript (model.pt) or an AOTInductor PT2 package
 * (model.pt2), told apart by their records. Model files are programs, so inspect_model_file()
 * reads the archive as data first, with the rules of empp_ff/export/archive.py and
 * code_scan.py: record names that would leave an extraction folder, duplicate names and
 * zip bombs are refused, metadata.json (at most 4 MiB) is parsed as JSON, and a TorchScript
 * file whose code calls an operation no empp-ff export emits is refused before
 * torch::jit::load compiles it (code_scan.h). Its extra/metadata.json records a checksum of
 * every other record ("checksum": "sha256:<hex>"), recomputed here in 1 MiB chunks exactly
 * as empp_ff/export/checksum.py does; a mismatch is refused, so a corrupted file is an error
 * and never a silently wrong energy. The runner loads `bytes`, the very bytes checked here.
 */
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

namespace empp {

struct ModelFileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class ModelFormat { TorchScript, AOTInductor };

struct ModelFile {
  std::string path;
  ModelFormat format = ModelFormat::TorchScript;
  std::string metadata_json;    // extra/metadata.json (empty for files from other programs)
  std::string checksum;         // "sha256:<hex>" recorded in it, "" if none (older files)
  std::shared_ptr<const std::string> bytes;    // the file's contents, as checked
};

// Reads the file, checks the archive and its code, finds the metadata, detects the format
// and verifies the checksum.
// Throws ModelFileError with a message naming the file and the problem.
ModelFile inspect_model_file(const std::string &path);

// "sha256:<hex>" over the archive's records except extra/metadata.json and .data/serialization_id.
std::string archive_checksum(const std::string &path);

const char *format_name(ModelFormat f);

}    // namespace empp
