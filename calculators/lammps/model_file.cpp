/* See model_file.h. The digest definition is empp_ff/export/checksum.py's. */

#include "model_file.h"

#include "sha256.h"

#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <regex>
#include <vector>

namespace empp {

namespace {

std::string first_line(const std::string &s)
{
  auto pos = s.find('\n');
  return pos == std::string::npos ? s : s.substr(0, pos);
}

// miniz's messages go on for several sentences of advice: keep the first.
std::string first_sentence(const std::string &s)
{
  std::string line = first_line(s);
  auto pos = line.find(". ");
  return pos == std::string::npos ? line : line.substr(0, pos);
}

std::unique_ptr<caffe2::serialize::PyTorchStreamReader> open_archive(const std::string &path)
{
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe.good())
      throw ModelFileError("cannot open model file '" + path + "' (file not found or unreadable)");
  }
  try {
    return std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const std::exception &e) {
    throw ModelFileError("cannot load model file '" + path +
                         "' as a TorchScript model or AOTInductor package: " + first_sentence(e.what()) +
                         " (is it an exported empp-ff model file, complete and uncorrupted?)");
  }
}

std::string record_text(caffe2::serialize::PyTorchStreamReader &reader, const std::string &name)
{
  auto [data, size] = reader.getRecord(name);
  return std::string(static_cast<const char *>(data.get()), size);
}

std::string digest_records(caffe2::serialize::PyTorchStreamReader &reader)
{
  std::vector<std::string> names = reader.getAllRecords();
  std::sort(names.begin(), names.end());
  Sha256 sha;
  for (const auto &name : names) {
    if (name == "extra/metadata.json" || name == ".data/serialization_id") continue;
    auto [data, size] = reader.getRecord(name);
    uint8_t header[9];
    header[0] = 0;
    for (int i = 0; i < 8; ++i) header[1 + i] = uint8_t(uint64_t(size) >> (8 * i));
    sha.update(name.data(), name.size());
    sha.update(header, sizeof(header));
    sha.update(data.get(), size);
  }
  return "sha256:" + sha.hexdigest();
}

// The top-level "checksum" key of json.dumps(indent=2) output: nested keys are indented deeper.
std::string recorded_checksum(const std::string &metadata)
{
  static const std::regex re("\n  \"checksum\": \"(sha256:[0-9a-f]{64})\"");
  std::smatch m;
  return std::regex_search(metadata, m, re) ? m[1].str() : std::string();
}

}    // namespace

const char *format_name(ModelFormat f)
{
  return f == ModelFormat::AOTInductor ? "aotinductor" : "torchscript";
}

std::string archive_checksum(const std::string &path)
{
  auto reader = open_archive(path);
  return digest_records(*reader);
}

ModelFile inspect_model_file(const std::string &path)
{
  ModelFile file;
  file.path = path;
  auto reader = open_archive(path);
  try {
    if (reader->hasRecord("archive_format") && first_line(record_text(*reader, "archive_format")) == "pt2")
      file.format = ModelFormat::AOTInductor;
    if (reader->hasRecord("extra/metadata.json")) file.metadata_json = record_text(*reader, "extra/metadata.json");
    file.checksum = recorded_checksum(file.metadata_json);
    if (!file.checksum.empty()) {
      std::string actual = digest_records(*reader);
      if (actual != file.checksum)
        throw ModelFileError("model file '" + path +
                             "' failed its integrity check: its weights and code do not match the checksum "
                             "recorded at export (recorded " + file.checksum + ", found " + actual +
                             "); the file is corrupted or was modified after export: copy or export it again");
    }
  } catch (const ModelFileError &) {
    throw;
  } catch (const std::exception &e) {
    throw ModelFileError("model file '" + path + "' failed its integrity check: " + first_sentence(e.what()) +
                         "; the file is corrupted: copy or export it again");
  }
  return file;
}

}    // namespace empp
