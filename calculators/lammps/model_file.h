/* Reading an empp-ff model file before loading it (both formats; no LAMMPS, no JSON library).
 *
 * A model file is a zip archive: TorchScript (model.pt) or an AOTInductor PT2 package
 * (model.pt2), told apart by their records. Its extra/metadata.json records a checksum
 * of every other record ("checksum": "sha256:<hex>"); inspect_model_file() recomputes it
 * exactly as empp_ff/export/checksum.py does and refuses a mismatch, so a corrupted file
 * is an error and never a silently wrong energy.
 */
#pragma once

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
};

// Opens the archive, finds the metadata, detects the format and verifies the checksum.
// Throws ModelFileError with a message naming the file and the problem.
ModelFile inspect_model_file(const std::string &path);

// "sha256:<hex>" over the archive's records except extra/metadata.json and .data/serialization_id.
std::string archive_checksum(const std::string &path);

const char *format_name(ModelFormat f);

}    // namespace empp
