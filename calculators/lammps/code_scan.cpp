/* See code_scan.h: a byte-for-byte port of empp_ff/export/code_scan.py's tokens(),
 * operations() and check_record(). */

#include "code_scan.h"

#include "code_rules.h"

#include <algorithm>
#include <cstdio>

namespace empp {

namespace {

enum class Kind { Ident, Dot, Other };

struct Token {
  Kind kind;
  std::string text;
};

bool is_ident(unsigned char c, bool first)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || (!first && c >= '0' && c <= '9');
}

size_t skip_string(const std::string &code, size_t i)
{
  bool triple = code.compare(i, 3, "\"\"\"") == 0 || code.compare(i, 3, "'''") == 0;
  std::string quote = code.substr(i, triple ? 3 : 1);
  i += quote.size();
  while (i < code.size()) {
    if (code[i] == '\\')
      i += 2;
    else if (code.compare(i, quote.size(), quote) == 0)
      return i + quote.size();
    else if (code[i] == '\n' && !triple)
      break;
    else
      ++i;
  }
  throw CodeRefused("an unterminated string");
}

std::vector<Token> tokens(const std::string &code)
{
  std::vector<Token> out;
  size_t i = 0, n = code.size();
  while (i < n) {
    unsigned char c = code[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v' || c == '\\') {
      ++i;
    } else if (c == '#') {
      size_t j = code.find('\n', i);
      i = j == std::string::npos ? n : j;
    } else if (c == '\'' || c == '"') {
      i = skip_string(code, i);
    } else if (is_ident(c, false)) {
      size_t j = i + 1;
      while (j < n && is_ident(code[j], false)) ++j;
      out.push_back({is_ident(c, true) ? Kind::Ident : Kind::Other, code.substr(i, j - i)});
      i = j;
    } else if (c > 32 && c < 127) {
      out.push_back({c == '.' ? Kind::Dot : Kind::Other, std::string(1, char(c))});
      ++i;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02x", unsigned(c));
      throw CodeRefused(std::string("byte ") + hex + " outside a string (TorchScript code is ASCII)");
    }
  }
  return out;
}

std::string chain(const std::vector<Token> &toks, size_t k)
{
  std::string name = toks[k].text;
  while (k + 2 < toks.size() && toks[k + 1].kind == Kind::Dot && toks[k + 2].kind == Kind::Ident) {
    name += "." + toks[k + 2].text;
    k += 2;
  }
  return name;
}

bool starts_with(const std::string &s, const std::string &prefix)
{
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string denied_word(const std::string &data)
{
  for (const auto &word : code_rules::denied) {    // sorted, as in Python
    for (size_t at = data.find(word); at != std::string::npos; at = data.find(word, at + 1)) {
      unsigned char before = at ? data[at - 1] : ' ';
      unsigned char after = at + word.size() < data.size() ? data[at + word.size()] : ' ';
      if (!is_ident(before, false) && !is_ident(after, false)) return word;
    }
  }
  return "";
}

bool ends_with(const std::string &s, const std::string &suffix)
{
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}    // namespace

std::vector<std::string> code_operations(const std::string &code)
{
  std::vector<Token> toks = tokens(code);
  std::vector<std::string> found;
  for (size_t k = 0; k < toks.size(); ++k) {
    if (toks[k].kind != Kind::Ident || (k > 0 && toks[k - 1].kind == Kind::Dot)) continue;
    const std::string &text = toks[k].text;
    if (text == "torch" || text == "ops") {
      found.push_back(chain(toks, k));
    } else if (text == "__torch__") {
      std::string name = chain(toks, k);
      if (starts_with(name, "__torch__.torch.classes") || starts_with(name, "__torch__.torch.ops"))
        found.push_back(name);
    }
  }
  return found;
}

bool scanned_record(const std::string &name)
{
  return ends_with(name, ".py") || ends_with(name, ".pkl") || ends_with(name, ".debug_pkl") ||
      starts_with(name, "code/");
}

void check_code_record(const std::string &name, const std::string &data)
{
  if (ends_with(name, ".py")) {
    const auto &allowed = code_rules::operations;
    for (const auto &op : code_operations(data)) {
      if (op == "torch" || op == "ops")
        throw CodeRefused("it uses `" + op + "` other than to call a named operation (an alias, getattr or "
                          "parentheses), which no empp-ff export does");
      if (!std::binary_search(allowed.begin(), allowed.end(), op))
        throw CodeRefused("it calls " + op + ", an operation no empp-ff export emits");
    }
  }
  std::string word = denied_word(data);
  if (!word.empty())
    throw CodeRefused("it names `" + word + "`, an operation that reaches files, the network or native "
                      "code, which no empp-ff export uses");
}

}    // namespace empp
