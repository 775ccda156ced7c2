/* See model_file.h. The rules are empp_ff/export/archive.py's and checksum.py's (record
 * names, sizes, the digest) and code_scan.py's (through code_scan.cpp). */

#include "model_file.h"

#include "code_scan.h"
#include "sha256.h"

#include "nlohmann/json.hpp"    // shipped with the LAMMPS headers (namespace nlohmann_lmp)

#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <vector>

namespace empp {

namespace {

constexpr size_t kChunkBytes = size_t(1) << 20;
constexpr uint64_t kMaxExpansion = 4, kExpansionAllowance = uint64_t(64) << 20;
constexpr size_t kMaxMetadataBytes = size_t(4) << 20, kMaxCodeRecordBytes = size_t(32) << 20;
constexpr const char *kProgramsHint = " (model files are programs; see 'Trusting model files' in the README)";

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

std::string mib(uint64_t bytes)
{
  std::ostringstream out;
  out.precision(1);
  out << std::fixed << double(bytes) / (1 << 20);
  return out.str();
}

std::shared_ptr<const std::string> read_file(const std::string &path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) throw ModelFileError("cannot open model file '" + path + "' (file not found or unreadable)");
  std::ostringstream data;
  data << in.rdbuf();
  return std::make_shared<const std::string>(data.str());
}

// A reader over the bytes (kept alive by `stream`, which must outlive it).
std::unique_ptr<caffe2::serialize::PyTorchStreamReader> open_archive(const std::string &path,
                                                                     std::istream *stream)
{
  try {
    return std::make_unique<caffe2::serialize::PyTorchStreamReader>(stream);
  } catch (const std::exception &e) {
    throw ModelFileError("cannot load model file '" + path +
                         "' as a TorchScript model or AOTInductor package: " + first_sentence(e.what()) +
                         " (is it an exported empp-ff model file, complete and uncorrupted?)");
  }
}

std::string unsafe_name_problem(const std::string &name)
{
  if (!name.empty() && name[0] == '/') return "an absolute path";
  if (name.size() > 1 && std::isalpha((unsigned char) name[0]) && name[1] == ':') return "an absolute path";
  if (name.find('\\') != std::string::npos || name.find('\0') != std::string::npos)
    return "a backslash or NUL character";
  std::stringstream parts(name);
  for (std::string part; std::getline(parts, part, '/');)
    if (part == "..") return "a '..' component";
  return "";
}

// The records (names relative to the root) after the name and size checks of archive.py.
std::vector<std::string> record_names(caffe2::serialize::PyTorchStreamReader &reader, const std::string &path,
                                      uint64_t file_size)
{
  std::vector<std::string> names = reader.getAllRecords();
  std::set<std::string> seen;
  uint64_t declared = 0;
  for (const auto &name : names) {
    std::string problem = unsafe_name_problem(name);
    if (!problem.empty())
      throw ModelFileError("model file '" + path + "' refused: record '" + name + "' has " + problem +
                           " (it would be extracted outside its folder); this is not a file empp-ff wrote");
    if (!seen.insert(name).second)
      throw ModelFileError("model file '" + path + "' refused: record '" + name +
                           "' occurs twice in the archive; this is not a file empp-ff wrote");
    declared += reader.getRecordSize(name);
  }
  if (declared > kMaxExpansion * file_size + kExpansionAllowance)
    throw ModelFileError("model file '" + path + "' refused: its records expand to " + mib(declared) +
                         " MiB from a " + mib(file_size) + " MiB file (a zip bomb?); this is not a file "
                         "empp-ff wrote");
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_record(caffe2::serialize::PyTorchStreamReader &reader, const std::string &name, size_t cap,
                        const std::string &path)
{
  size_t size = reader.getRecordSize(name);
  if (size > cap)
    throw ModelFileError("model file '" + path + "' refused: record " + name + " is " + mib(size) +
                         " MiB, more than the " + std::to_string(cap >> 20) +
                         " MiB such a record may have; this is not a file empp-ff wrote");
  auto [data, n] = reader.getRecord(name);
  return std::string(static_cast<const char *>(data.get()), n);
}

std::string digest_records(caffe2::serialize::PyTorchStreamReader &reader, const std::vector<std::string> &names)
{
  Sha256 sha;
  std::vector<char> buffer(kChunkBytes);
  for (const auto &name : names) {
    if (name == "extra/metadata.json" || name == ".data/serialization_id") continue;
    size_t size = reader.getRecordSize(name);
    uint8_t header[9];
    header[0] = 0;
    for (int i = 0; i < 8; ++i) header[1 + i] = uint8_t(uint64_t(size) >> (8 * i));
    sha.update(name.data(), name.size());
    sha.update(header, sizeof(header));
    if (size == 0) continue;
    auto chunks = reader.createChunkReaderIter(name, size, kChunkBytes);
    for (size_t done = 0; done < size;) {
      size_t got = chunks.next(buffer.data());
      if (got == 0) throw std::runtime_error("record " + name + " ends early");
      sha.update(buffer.data(), got);
      done += got;
    }
  }
  return "sha256:" + sha.hexdigest();
}

// The top-level "checksum" of metadata.json, parsed as JSON (any layout, any key order).
std::string recorded_checksum(const std::string &metadata, const std::string &path)
{
  if (metadata.empty()) return "";
  nlohmann_lmp::json parsed;
  try {
    parsed = nlohmann_lmp::json::parse(metadata);
  } catch (const std::exception &e) {
    throw ModelFileError("model file '" + path + "': metadata.json is not valid JSON: " + first_line(e.what()));
  }
  if (!parsed.is_object()) throw ModelFileError("model file '" + path + "': metadata.json is not a JSON object");
  auto it = parsed.find("checksum");
  if (it == parsed.end() || it->is_null()) return "";
  if (!it->is_string())
    throw ModelFileError("model file '" + path + "': metadata.json's checksum is not a string");
  return it->get<std::string>();
}

// EMPP_FF_TRUSTED_MODELS (empp_ff/export/trust.py): refuse a file whose SHA-256 the list lacks.
void check_trusted(const std::string &path, const std::string &bytes)
{
  const char *listing = std::getenv("EMPP_FF_TRUSTED_MODELS");
  if (listing == nullptr || *listing == '\0') return;
  std::ifstream in(listing, std::ios::binary);
  if (!in.good())
    throw ModelFileError(std::string("cannot read the trusted-model list EMPP_FF_TRUSTED_MODELS=") + listing);
  std::set<std::string> digests;
  size_t number = 0, total = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    total += line.size() + 1;
    if (total > (size_t(64) << 20))
      throw ModelFileError(std::string("the trusted-model list ") + listing + " is over 64 MiB");
    size_t a = line.find_first_not_of(" \t\r\f\v");
    if (a == std::string::npos || line[a] == '#') continue;
    std::string item = line.substr(a);
    bool ok = item.size() >= 64 && (item.size() == 64 || std::isspace((unsigned char) item[64]));
    for (size_t i = 0; ok && i < 64; ++i) ok = std::isxdigit((unsigned char) item[i]) != 0;
    if (!ok)
      throw ModelFileError(std::string(listing) + ":" + std::to_string(number) +
                           ": not a `sha256sum` line (64 hex digits, then the name)");
    std::string hex = item.substr(0, 64);
    std::transform(hex.begin(), hex.end(), hex.begin(), [](unsigned char c) { return std::tolower(c); });
    digests.insert(hex);
  }
  Sha256 sha;
  sha.update(bytes.data(), bytes.size());
  std::string digest = sha.hexdigest();
  if (!digests.count(digest))
    throw ModelFileError("model file '" + path + "' is not in the trusted-model list EMPP_FF_TRUSTED_MODELS=" +
                         listing + " (its sha256 is " + digest +
                         "); if you trust it, add the line `sha256sum` prints for it");
}

void scan_code(caffe2::serialize::PyTorchStreamReader &reader, const std::vector<std::string> &names,
               const std::string &path)
{
  for (const auto &name : names) {
    if (!scanned_record(name)) continue;
    std::string data = read_record(reader, name, kMaxCodeRecordBytes, path);
    try {
      check_code_record(name, data);
    } catch (const CodeRefused &e) {
      throw ModelFileError("model file '" + path + "' refused before loading: record " + name + ": " + e.what() +
                           kProgramsHint);
    }
  }
}

}    // namespace

const char *format_name(ModelFormat f)
{
  return f == ModelFormat::AOTInductor ? "aotinductor" : "torchscript";
}

std::string archive_checksum(const std::string &path)
{
  auto bytes = read_file(path);
  std::istringstream stream(*bytes);
  auto reader = open_archive(path, &stream);
  return digest_records(*reader, record_names(*reader, path, bytes->size()));
}

ModelFile inspect_model_file(const std::string &path)
{
  ModelFile file;
  file.path = path;
  file.bytes = read_file(path);
  check_trusted(path, *file.bytes);
  std::istringstream stream(*file.bytes);
  auto reader = open_archive(path, &stream);
  try {
    std::vector<std::string> names = record_names(*reader, path, file.bytes->size());
    if (reader->hasRecord("archive_format") &&
        first_line(read_record(*reader, "archive_format", 64, path)) == "pt2")
      file.format = ModelFormat::AOTInductor;
    if (reader->hasRecord("extra/metadata.json"))
      file.metadata_json = read_record(*reader, "extra/metadata.json", kMaxMetadataBytes, path);
    file.checksum = recorded_checksum(file.metadata_json, path);
    if (!file.checksum.empty()) {    // first: a corrupted file is named as such
      std::string actual = digest_records(*reader, names);
      if (actual != file.checksum)
        throw ModelFileError("model file '" + path +
                             "' failed its integrity check: its weights and code do not match the checksum "
                             "recorded at export (recorded " + file.checksum + ", found " + actual +
                             "); the file is corrupted or was modified after export: copy or export it again");
    }
    if (file.format == ModelFormat::TorchScript) scan_code(*reader, names, path);
  } catch (const ModelFileError &) {
    throw;
  } catch (const std::exception &e) {
    throw ModelFileError("model file '" + path + "' failed its integrity check: " + first_sentence(e.what()) +
                         "; the file is corrupted: copy or export it again");
  }
  return file;
}

}    // namespace empp
