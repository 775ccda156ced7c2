/* The code a TorchScript model file may run (empp_ff/export/code_scan.py explains the rule;
 * this is its C++ twin, checked against the same files by the tests). The lists come from
 * empp_ff/export/model_code_rules.txt through the generated header code_rules.h.
 */
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace empp {

// What is wrong with one record (the caller adds the file and the record's name).
struct CodeRefused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Whether a record (its name relative to the archive root) holds code or pickles the scan reads.
bool scanned_record(const std::string &name);

// Throws CodeRefused if record `name` breaks the rule: a `torch.`/`ops.` path outside the
// allowlist or a bare `torch`/`ops` in a .py record, or a denied name anywhere in its bytes.
void check_code_record(const std::string &name, const std::string &data);

// The dotted `torch`/`ops`/`__torch__.torch.classes` paths in TorchScript code, in order.
std::vector<std::string> code_operations(const std::string &code);

}    // namespace empp
