// PTX text -> decoded Module (see ptx_module.hpp for the decoded form and
// docs/PTX_SUBSET.md for the accepted subset).
//
// The loader is a hand-written lexer and a statement parser with no recursion
// and no backtracking: every loop consumes at least one token, so arbitrary
// input finishes in time linear in its length. Every count and size taken from
// the text is checked against LoadLimits before anything is allocated for it.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>

#include "gpulease/sim/ptx_module.hpp"

namespace gpulease::sim {

const Kernel* Module::find(std::string_view name) const {
  for (const Kernel& k : kernels)
    if (k.name == name) return &k;
  return nullptr;
}

const GlobalVar* Module::find_global(std::string_view name) const {
  for (const GlobalVar& g : globals)
    if (g.name == name) return &g;
  return nullptr;
}

std::byte* Module::variable_bytes(uint64_t addr, uint64_t len, bool write) const {
  const uint64_t off = addr - window_base;
  if (off < global_bytes && len <= global_bytes - off) return storage.get() + off;
  if (write) return nullptr;
  const uint64_t coff = off - kConstOffset;
  if (coff < const_bytes && len <= const_bytes - coff) return storage.get() + global_bytes + coff;
  return nullptr;
}

size_t Module::decoded_bytes() const {
  size_t n = sizeof(Module) + global_bytes + const_bytes;
  for (const GlobalVar& g : globals) n += sizeof(GlobalVar) + g.name.size();
  for (const Kernel& k : kernels) {
    n += sizeof(Kernel) + k.name.size() + k.code.size() * sizeof(Inst) +
         k.lines.size() * sizeof(uint32_t) + k.vec_slots.size() * sizeof(Slot) +
         k.init_values.size() * sizeof(k.init_values[0]) + k.calls.size() * sizeof(CallSite);
    for (const CallSite& c : k.calls) n += (c.args.size() + c.rets.size()) * sizeof(CallSite::Copy);
    for (const Param& p : k.params) n += sizeof(Param) + p.name.size();
  }
  return n;
}

uint64_t Kernel::initial_value(Slot s) const {
  auto it = std::lower_bound(init_values.begin(), init_values.end(), s,
                             [](const auto& e, Slot v) { return e.first < v; });
  return it != init_values.end() && it->first == s ? it->second : 0;
}

namespace {

// ---------------------------------------------------------------- lexer

enum class Tk : uint8_t { kEnd, kIdent, kNumber, kString, kPunct };

struct Token {
  Tk kind = Tk::kEnd;
  std::string_view text;
  uint32_t line = 0;
};

bool is_ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' || c == '%' ||
         c == '.';
}
bool is_ident_char(char c) {
  return is_ident_start(c) || (c >= '0' && c <= '9');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}
  size_t pos() const { return pos_; }
  size_t size() const { return s_.size(); }

  // Returns false (with a message) on a character no PTX token starts with.
  bool next(Token& t, std::string& err) {
    skip_space_and_comments();
    t.line = line_;
    if (pos_ >= s_.size()) {
      t.kind = Tk::kEnd;
      t.text = {};
      return true;
    }
    const size_t start = pos_;
    const char c = s_[pos_];
    if (is_digit(c)) {
      const bool radix =
          c == '0' && pos_ + 1 < s_.size() && std::strchr("xXfFdDbB", s_[pos_ + 1]) != nullptr;
      ++pos_;
      while (pos_ < s_.size()) {
        const char d = s_[pos_];
        if (is_ident_char(d) && d != '%' && d != '$') {
          ++pos_;
        } else if ((d == '+' || d == '-') && !radix &&
                   (s_[pos_ - 1] == 'e' || s_[pos_ - 1] == 'E')) {
          ++pos_;
        } else {
          break;
        }
      }
      t.kind = Tk::kNumber;
    } else if (is_ident_start(c)) {
      // Modifiers such as .shared::cta and .L2::128B keep their "::".
      while (pos_ < s_.size() &&
             (is_ident_char(s_[pos_]) ||
              (s_[pos_] == ':' && pos_ + 2 < s_.size() && s_[pos_ + 1] == ':' &&
               s_[pos_ - 1] != ':' && is_ident_char(s_[pos_ + 2]) && s_[pos_ + 2] != '%')))
        pos_ += s_[pos_] == ':' ? 2 : 1;
      t.kind = Tk::kIdent;
    } else if (c == '"') {
      ++pos_;
      while (pos_ < s_.size() && s_[pos_] != '"' && s_[pos_] != '\n') ++pos_;
      if (pos_ >= s_.size() || s_[pos_] != '"') {
        err = "line " + std::to_string(line_) + ": unterminated string";
        return false;
      }
      ++pos_;
      t.kind = Tk::kString;
    } else if (std::strchr(",;:[]{}()<>+-@!|=", c) != nullptr) {
      ++pos_;
      t.kind = Tk::kPunct;
    } else {
      err = "line " + std::to_string(line_) + ": unexpected character";
      if (c >= 0x20 && c < 0x7f) err += std::string(" '") + c + "'";
      return false;
    }
    t.text = s_.substr(start, pos_ - start);
    return true;
  }

 private:
  void skip_space_and_comments() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == '\n') {
        ++line_;
        ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
        ++pos_;
      } else if (c == '/' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '/') {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else if (c == '/' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '*') {
        pos_ += 2;
        while (pos_ < s_.size() &&
               !(s_[pos_] == '*' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '/')) {
          if (s_[pos_] == '\n') ++line_;
          ++pos_;
        }
        pos_ = std::min(pos_ + 2, s_.size());
      } else {
        break;
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  uint32_t line_ = 1;
};

// ---------------------------------------------------------------- numbers

std::optional<uint64_t> parse_uint(std::string_view t) {
  if (t.empty()) return std::nullopt;
  if (t.back() == 'U' || t.back() == 'u') t.remove_suffix(1);
  int base = 10;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    base = 16;
    t.remove_prefix(2);
  } else if (t.size() > 2 && t[0] == '0' && (t[1] == 'b' || t[1] == 'B')) {
    base = 2;
    t.remove_prefix(2);
  } else if (t.size() > 1 && t[0] == '0') {
    base = 8;
    t.remove_prefix(1);
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v, base);
  if (ec != std::errc() || p != t.data() + t.size()) return std::nullopt;
  return v;
}

// Whether a well-formed decimal literal (digits, optional '.', optional
// exponent) is >= 1; decides between overflow and underflow. The exponent
// saturates, so any length of digits is handled in linear time.
bool decimal_at_least_one(std::string_view t) {
  const size_t e = t.find_first_of("eE");
  const std::string_view mant = t.substr(0, e);
  int64_t exp = 0;
  if (e != std::string_view::npos) {
    size_t j = e + 1;
    const bool neg = j < t.size() && t[j] == '-';
    if (j < t.size() && (t[j] == '+' || t[j] == '-')) ++j;
    for (; j < t.size(); ++j) exp = std::min<int64_t>(exp * 10 + (t[j] - '0'), int64_t{1} << 40);
    if (neg) exp = -exp;
  }
  // The place value of the first non-zero digit is 10^(point - i - 1).
  const size_t point = std::min(mant.find('.'), mant.size());
  for (size_t i = 0; i < mant.size(); ++i) {
    if (mant[i] == '.' || mant[i] == '0') continue;
    const int64_t place =
        static_cast<int64_t>(point) - static_cast<int64_t>(i) - (i < point ? 1 : 0);
    return place + exp >= 0;
  }
  return false;  // all zeros
}

// A numeric literal, before the instruction's type gives it bits.
struct Literal {
  enum Kind : uint8_t { kInt, kF32Bits, kF64Bits, kDecimal } kind = kInt;
  uint64_t bits = 0;  // integer value (two's complement when negated), or float bits
  double value = 0;   // kDecimal
};

std::optional<Literal> parse_literal(std::string_view t, bool negate) {
  Literal lit;
  if (t.size() == 10 && t[0] == '0' && (t[1] == 'f' || t[1] == 'F')) {
    uint32_t b = 0;
    auto [p, ec] = std::from_chars(t.data() + 2, t.data() + t.size(), b, 16);
    if (ec != std::errc() || p != t.data() + t.size()) return std::nullopt;
    lit.kind = Literal::kF32Bits;
    lit.bits = negate ? (b ^ 0x80000000u) : b;
    return lit;
  }
  if (t.size() == 18 && t[0] == '0' && (t[1] == 'd' || t[1] == 'D')) {
    uint64_t b = 0;
    auto [p, ec] = std::from_chars(t.data() + 2, t.data() + t.size(), b, 16);
    if (ec != std::errc() || p != t.data() + t.size()) return std::nullopt;
    lit.kind = Literal::kF64Bits;
    lit.bits = negate ? (b ^ (uint64_t{1} << 63)) : b;
    return lit;
  }
  if (auto v = parse_uint(t)) {
    lit.kind = Literal::kInt;
    lit.bits = negate ? (~*v + 1) : *v;
    return lit;
  }
  // Decimal floating point (digits, one '.', optional exponent).
  bool dot = false, digits = false;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (is_digit(c)) {
      digits = true;
    } else if (c == '.' && !dot) {
      dot = true;
    } else if ((c == 'e' || c == 'E') && digits) {
      size_t j = i + 1;
      if (j < t.size() && (t[j] == '+' || t[j] == '-')) ++j;
      if (j >= t.size()) return std::nullopt;
      for (; j < t.size(); ++j)
        if (!is_digit(t[j])) return std::nullopt;
      break;
    } else {
      return std::nullopt;
    }
  }
  if (!digits) return std::nullopt;
  double d = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
  if (ec == std::errc::result_out_of_range) {
    // from_chars leaves `d` untouched; PTX (like C) rounds a literal too
    // large for a double to infinity and one too small to zero.
    d = decimal_at_least_one(t) ? std::numeric_limits<double>::infinity() : 0.0;
  } else if (ec != std::errc()) {
    return std::nullopt;
  }
  (void)p;
  lit.kind = Literal::kDecimal;
  lit.value = negate ? -d : d;
  return lit;
}

uint64_t mask_of(unsigned bits) {
  return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
}

// ---------------------------------------------------------------- types

struct TypeInfo {
  Ty ty = Ty::kU32;
  uint8_t bits = 32;
  bool is_float = false;
  bool is_signed = false;
  bool is_pred = false;
  uint8_t half = 0;  // 1 f16, 2 bf16 (x2 forms: bits == 32)
};

// The half-precision types, kept out of type_of() so that no integer or f32
// path ever sees them: instructions with one are handled (or refused) apart.
std::optional<TypeInfo> half_type_of(std::string_view m) {
  if (m == "f16") return TypeInfo{Ty::kU16, 16, false, false, false, 1};
  if (m == "bf16") return TypeInfo{Ty::kU16, 16, false, false, false, 2};
  if (m == "f16x2") return TypeInfo{Ty::kU32, 32, false, false, false, 1};
  if (m == "bf16x2") return TypeInfo{Ty::kU32, 32, false, false, false, 2};
  return std::nullopt;
}

std::optional<TypeInfo> type_of(std::string_view m) {
  static const std::pair<std::string_view, TypeInfo> kTypes[] = {
      {"u8", {Ty::kU8, 8, false, false, false}},    {"b8", {Ty::kU8, 8, false, false, false}},
      {"s8", {Ty::kS8, 8, false, true, false}},     {"u16", {Ty::kU16, 16, false, false, false}},
      {"b16", {Ty::kU16, 16, false, false, false}}, {"s16", {Ty::kS16, 16, false, true, false}},
      {"u32", {Ty::kU32, 32, false, false, false}}, {"b32", {Ty::kU32, 32, false, false, false}},
      {"s32", {Ty::kS32, 32, false, true, false}},  {"u64", {Ty::kU64, 64, false, false, false}},
      {"b64", {Ty::kU64, 64, false, false, false}}, {"s64", {Ty::kS64, 64, false, true, false}},
      {"f32", {Ty::kF32, 32, true, true, false}},   {"f64", {Ty::kF64, 64, true, true, false}},
      {"pred", {Ty::kPred, 1, false, false, true}},
  };
  for (const auto& [name, info] : kTypes)
    if (name == m) return info;
  return std::nullopt;
}

// ---------------------------------------------------------------- operands

struct Operand {
  enum Kind : uint8_t { kReg, kImm, kAddr, kVec, kSym, kSink } kind = kReg;
  Slot slot = 0;
  uint8_t bits = 0;            // register size (1 for predicates)
  bool negated = false;        // !%p
  Literal lit;                 // kImm
  std::string_view sym;        // kSym, or the symbol of a kAddr
  bool has_base = false;       // kAddr: [reg + off]
  uint64_t offset = 0;         // kAddr; address arithmetic wraps modulo 2^64
  std::vector<Operand> elems;  // kVec (kReg or kSink)
  uint8_t clock = 0;           // kReg: a clock register (ClockKind + 1), readable only by mov
};

struct RegInfo {
  Slot slot = 0;
  uint8_t bits = 0;
};

struct SharedVar {
  uint32_t size = 0;
  uint32_t align = 1;
  bool is_extern = false;
};

struct Fixup {
  enum Kind : uint8_t { kSlotValue, kInstImm } kind = kSlotValue;
  uint32_t index = 0;  // slot or instruction
  std::string sym;
  uint64_t addend = 0;
  uint32_t line = 0;
};

// Hash for heterogeneous (string_view) lookup in the register table.
struct NameHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// A declared register and the depth of the { } block that declared it.
struct ScopedReg {
  RegInfo info;
  uint32_t depth = 0;
};

// A device function (.func), found by a first pass over the module.
struct FuncInfo {
  std::vector<Param> rets, params;
  bool has_body = false;
  Lexer body_lex{std::string_view{}};  // positioned after the body's '{'
  Token body_tok;                      // the '{'
  uint32_t line = 0;
};

class Parser {
 public:
  Parser(std::string_view text, const LoadLimits& limits) : lex_(text), limits_(limits) {}

  Result<std::shared_ptr<const Module>> run() {
    auto mod = std::make_shared<Module>();
    module_ = mod.get();
    static std::atomic<uint64_t> loads{0};
    mod->window_base =
        kModuleWindow + (loads.fetch_add(1, std::memory_order_relaxed) % kModuleTags) * kWindowSize;
    if (!scan_functions()) return fail_result();
    if (!advance()) return fail_result();
    bool seen_version = false, seen_target = false;
    while (tok_.kind != Tk::kEnd) {
      const uint32_t line = tok_.line;
      if (tok_.kind != Tk::kIdent)
        return error(line, "expected a directive, got '" + std::string(tok_.text) + "'");
      const std::string_view d = tok_.text;
      if (d == ".version") {
        if (!advance()) return fail_result();
        if (tok_.kind != Tk::kNumber) return error(line, ".version needs a number");
        // Accept any 7.x..9.x; the subset is what is checked, not the number.
        const std::string_view v = tok_.text;
        if (v.empty() || v[0] < '1' || v[0] > '9')
          return error(line, "unsupported .version " + std::string(v));
        if (!advance()) return fail_result();
        seen_version = true;
      } else if (d == ".target") {
        if (!advance()) return fail_result();
        for (bool first = true; first || is_punct(','); first = false) {
          if (!first && !advance()) return fail_result();
          if (tok_.kind != Tk::kIdent) return error(tok_.line, ".target needs a target name");
          const std::string_view t = tok_.text;
          if (!(t.substr(0, 3) == "sm_" || t.substr(0, 8) == "compute_" ||
                t == "texmode_independent" || t == "texmode_unified" || t == "map_f64_to_f32"))
            return error(tok_.line, "unsupported .target " + std::string(t));
          if (!advance()) return fail_result();
        }
        seen_target = true;
      } else if (d == ".address_size") {
        if (!advance()) return fail_result();
        if (tok_.kind != Tk::kNumber || tok_.text != "64")
          return error(line, "only .address_size 64 is supported");
        if (!advance()) return fail_result();
      } else if (d == ".pragma" || d == ".file") {
        if (!skip_statement()) return fail_result();
        continue;
      } else if (d == ".visible" || d == ".weak" || d == ".extern" || d == ".entry" ||
                 d == ".func" || d == ".shared" || d == ".global" || d == ".const" ||
                 d == ".local") {
        if (!seen_version || !seen_target)
          return error(line, "'" + std::string(d) + "' before .version and .target");
        if (!module_decl()) return fail_result();
        continue;
      } else if (d == ".section") {
        return error(line, "unsupported directive .section (debug information)");
      } else {
        return error(line, "unsupported directive '" + std::string(d) + "'");
      }
      if (!expect_semicolon_optional()) return fail_result();
    }
    if (!seen_version) return error(1, "missing .version");
    if (!seen_target) return error(1, "missing .target");
    if (module_->kernels.empty()) return error(1, "the module has no .entry kernel");
    mod->global_bytes = global_init_.size();
    mod->const_bytes = const_init_.size();
    mod->storage.reset(
        new std::byte[std::max<size_t>(1, global_init_.size() + const_init_.size())]);
    if (!global_init_.empty())
      std::memcpy(mod->storage.get(), global_init_.data(), global_init_.size());
    if (!const_init_.empty())
      std::memcpy(mod->storage.get() + global_init_.size(), const_init_.data(), const_init_.size());
    return std::shared_ptr<const Module>(std::move(mod));
  }

 private:
  // ---- errors
  Error error(uint32_t line, std::string msg) {
    if (err_.empty()) err_ = "line " + std::to_string(line) + ": " + msg;
    return make_error(Status::kLoadFailed, err_);
  }
  Error fail_result() {
    return make_error(Status::kLoadFailed, err_.empty() ? "malformed PTX" : err_);
  }
  bool fail(uint32_t line, std::string msg) {
    (void)error(line, std::move(msg));
    return false;
  }

  // ---- tokens
  bool advance() {
    if (!lex_.next(tok_, lex_err_)) {
      if (err_.empty()) err_ = lex_err_;
      return false;
    }
    return true;
  }
  bool is_punct(char c) const {
    return tok_.kind == Tk::kPunct && tok_.text.size() == 1 && tok_.text[0] == c;
  }
  bool expect_punct(char c) {
    if (!is_punct(c))
      return fail(tok_.line, std::string("expected '") + c + "', got '" + token_text() + "'");
    return advance();
  }
  std::string token_text() const {
    return tok_.kind == Tk::kEnd ? "end of input" : std::string(tok_.text);
  }
  bool expect_semicolon_optional() {
    if (is_punct(';')) return advance();
    return true;
  }
  bool skip_statement() {
    while (tok_.kind != Tk::kEnd && !is_punct(';'))
      if (!advance()) return false;
    if (tok_.kind == Tk::kEnd) return fail(tok_.line, "missing ';'");
    return advance();
  }
  bool expect_number(uint64_t& v, uint64_t max, const char* what) {
    if (tok_.kind != Tk::kNumber) return fail(tok_.line, std::string("expected ") + what);
    auto n = parse_uint(tok_.text);
    if (!n || *n > max)
      return fail(tok_.line, std::string("bad ") + what + " '" + std::string(tok_.text) + "'");
    v = *n;
    return advance();
  }

  // ---- module-level declarations
  bool module_decl() {
    bool is_extern = false;
    while (tok_.kind == Tk::kIdent &&
           (tok_.text == ".visible" || tok_.text == ".weak" || tok_.text == ".extern")) {
      if (tok_.text == ".extern") is_extern = true;
      if (!advance()) return false;
    }
    if (tok_.kind != Tk::kIdent) return fail(tok_.line, "expected a declaration");
    const uint32_t line = tok_.line;
    if (tok_.text == ".entry") {
      if (is_extern) return fail(line, "unsupported .extern .entry");
      if (!advance()) return false;
      return entry();
    }
    if (tok_.text == ".func") {
      // Found by scan_functions(); compiled into the kernels that call it.
      if (!advance()) return false;
      FuncInfo ignored;
      if (!func_header(ignored)) return false;
      if (is_punct(';')) return advance();
      uint32_t depth = 0;
      do {
        if (is_punct('{')) ++depth;
        if (is_punct('}')) --depth;
        if (!advance()) return false;
        if (tok_.kind == Tk::kEnd && depth > 0) return fail(line, "missing '}' of a .func body");
      } while (depth > 0);
      return true;
    }
    if (tok_.text == ".shared") {
      if (!advance()) return false;
      std::string name;
      SharedVar v;
      if (!var_decl(name, v, is_extern, limits_.max_shared_bytes)) return false;
      if (module_shared_.count(name) != 0) return fail(line, "redeclared .shared " + name);
      module_shared_.emplace(name, v);
      module_shared_order_.push_back(name);
      return expect_punct(';');
    }
    if (tok_.text == ".global" || tok_.text == ".const") {
      const bool is_const = tok_.text == ".const";
      if (is_extern)
        return fail(line, "unsupported .extern " + std::string(tok_.text) +
                              " (a variable defined in another module)");
      if (!advance()) return false;
      return global_decl(is_const, line);
    }
    return fail(line, "unsupported directive " + std::string(tok_.text) +
                          " (module-scope variables in this state space)");
  }

  // .global / .const [.align N] .type name[dims] [= initialiser];
  bool global_decl(bool is_const, uint32_t line) {
    uint64_t align = 0;
    if (tok_.kind == Tk::kIdent && tok_.text == ".align") {
      if (!advance()) return false;
      if (!expect_number(align, 4096, "alignment")) return false;
      if (align == 0 || (align & (align - 1)) != 0)
        return fail(tok_.line, "alignment must be a power of two");
    }
    if (tok_.kind != Tk::kIdent || tok_.text.empty() || tok_.text[0] != '.')
      return fail(tok_.line, "expected a type");
    auto ti = type_of(tok_.text.substr(1));
    if (!ti || ti->is_pred)
      return fail(tok_.line, "unsupported module-scope variable type " + token_text());
    const uint32_t elem = ti->bits / 8;
    if (!advance()) return false;
    if (tok_.kind != Tk::kIdent || tok_.text[0] == '%' || tok_.text[0] == '.')
      return fail(tok_.line, "expected a variable name");
    const std::string name(tok_.text);
    if (!advance()) return false;
    uint64_t count = 1;
    bool unsized = false;
    while (is_punct('[')) {
      if (!advance()) return false;
      if (is_punct(']')) {
        if (unsized) return fail(tok_.line, "only the first dimension may be left out");
        unsized = true;
      } else {
        uint64_t n = 0;
        if (!expect_number(n, limits_.max_global_bytes, "array size")) return false;
        count *= n;
        if (count > limits_.max_global_bytes)
          return fail(line, "variable " + name + " is too large");
      }
      if (!expect_punct(']')) return false;
    }
    std::vector<uint64_t> values;
    if (is_punct('=')) {
      if (!advance()) return false;
      uint32_t depth = 0;
      do {
        if (is_punct('{')) {
          if (++depth > 8) return fail(tok_.line, "initialiser nested too deeply");
          if (!advance()) return false;
          continue;
        }
        if (is_punct('}')) {
          if (depth == 0) return fail(tok_.line, "unbalanced '}'");
          --depth;
          if (!advance()) return false;
          if (depth > 0 && is_punct(',') && !advance()) return false;
          continue;
        }
        bool neg = false;
        if (is_punct('-')) {
          neg = true;
          if (!advance()) return false;
        }
        if (tok_.kind == Tk::kIdent)
          return fail(tok_.line, "unsupported initialiser '" + token_text() + "' of " + name +
                                     " (addresses of variables)");
        if (tok_.kind != Tk::kNumber) return fail(tok_.line, "expected a value in the initialiser");
        auto lit = parse_literal(tok_.text, neg);
        if (!lit) return fail(tok_.line, "bad number " + token_text());
        Ctx vc;
        vc.opcode = name;
        vc.line = tok_.line;
        uint64_t bits = 0;
        if (!literal_bits(vc, *lit, *ti, bits)) return false;
        if (values.size() * elem >= limits_.max_global_bytes)
          return fail(tok_.line, "initialiser of " + name + " is too large");
        values.push_back(bits);
        if (!advance()) return false;
        if (depth > 0 && is_punct(',') && !advance()) return false;
      } while (depth > 0);
    }
    if (unsized) count *= values.empty() ? 0 : values.size();
    if (values.size() > count) return fail(line, "too many initialisers for " + name);
    const uint64_t bytes = count * elem;
    std::vector<std::byte>& data = is_const ? const_init_ : global_init_;
    const uint64_t a = align != 0 ? align : elem;
    const uint64_t off = (data.size() + a - 1) / a * a;
    if (off + bytes + global_init_.size() + const_init_.size() - data.size() >
        limits_.max_global_bytes)
      return fail(line, "module-scope variables exceed " +
                            std::to_string(limits_.max_global_bytes) + " bytes");
    if (global_addr_.count(name) != 0 || module_shared_.count(name) != 0)
      return fail(line, "redeclared variable " + name);
    data.resize(off + bytes);
    for (size_t i = 0; i < values.size(); ++i)
      for (uint32_t b = 0; b < elem; ++b)
        data[off + i * elem + b] = static_cast<std::byte>(values[i] >> (8 * b));
    const uint64_t addr = module_->window_base + (is_const ? kConstOffset : 0) + off;
    global_addr_.emplace(name, addr);
    module_->globals.push_back(GlobalVar{name, addr, bytes, is_const});
    return expect_punct(';');
  }

  // First pass: every module-scope .func, its parameters and where its body
  // starts. Leaves the lexer at the start again.
  bool scan_functions() {
    const Lexer start = lex_;
    if (!advance()) return false;
    uint32_t depth = 0;
    while (tok_.kind != Tk::kEnd) {
      if (is_punct('{')) {
        ++depth;
      } else if (is_punct('}')) {
        if (depth > 0) --depth;
      } else if (depth == 0 && tok_.kind == Tk::kIdent && tok_.text == ".func") {
        const uint32_t line = tok_.line;
        if (!advance()) return false;
        FuncInfo f;
        f.line = line;
        std::string name;
        if (!func_header(f, &name)) return false;
        auto [it, inserted] = funcs_.try_emplace(name, f);
        if (!inserted) {
          if (f.has_body && it->second.has_body)
            return fail(line, "function " + name + " defined twice");
          if (f.has_body) it->second = f;
        }
        if (funcs_.size() > limits_.max_kernels) return fail(line, "too many functions");
        continue;  // at ';' or '{'
      }
      if (!advance()) return false;
    }
    lex_ = start;
    tok_ = Token{};
    return true;
  }

  // [(ret params)] name [(params)] [directives]; stops at ';' or '{'.
  bool func_header(FuncInfo& f, std::string* name_out = nullptr) {
    auto list = [&](std::vector<Param>& out) {
      if (!advance()) return false;  // '('
      while (!is_punct(')')) {
        if (!out.empty() && !expect_punct(',')) return false;
        if (tok_.kind != Tk::kIdent || tok_.text != ".param")
          return fail(tok_.line,
                      "device function parameters must be .param (not " + token_text() + ")");
        if (!advance()) return false;
        if (tok_.kind == Tk::kIdent && tok_.text == ".ptr") {
          if (!advance()) return false;
          if (tok_.kind == Tk::kIdent && (tok_.text == ".global" || tok_.text == ".shared" ||
                                          tok_.text == ".local" || tok_.text == ".const"))
            if (!advance()) return false;
        }
        std::string pname;
        SharedVar v;
        if (!var_decl(pname, v, false, limits_.max_param_bytes)) return false;
        if (out.size() >= limits_.max_params) return fail(tok_.line, "too many parameters");
        out.push_back(Param{pname, 0, v.size, v.align});
      }
      return advance();
    };
    if (is_punct('(') && !list(f.rets)) return false;
    if (tok_.kind != Tk::kIdent || tok_.text[0] == '.' || tok_.text[0] == '%')
      return fail(tok_.line, "expected a function name");
    if (name_out) *name_out = std::string(tok_.text);
    if (!advance()) return false;
    if (is_punct('(') && !list(f.params)) return false;
    while (tok_.kind == Tk::kIdent && tok_.text[0] == '.') {
      if (!advance()) return false;
      while (tok_.kind == Tk::kNumber || is_punct(','))
        if (!advance()) return false;
    }
    if (is_punct('{')) {
      f.has_body = true;
      f.body_lex = lex_;
      f.body_tok = tok_;
      return true;
    }
    if (!is_punct(';')) return fail(tok_.line, "expected ';' or a body after the function header");
    return true;
  }

  // [.align N] .type name[N] | name[] | name   (after the state space)
  bool var_decl(std::string& name, SharedVar& v, bool allow_unsized, uint32_t max_bytes) {
    uint64_t align = 0;
    if (tok_.kind == Tk::kIdent && tok_.text == ".align") {
      if (!advance()) return false;
      if (!expect_number(align, 4096, "alignment")) return false;
      if (align == 0 || (align & (align - 1)) != 0)
        return fail(tok_.line, "alignment must be a power of two");
    }
    if (tok_.kind != Tk::kIdent || tok_.text.empty() || tok_.text[0] != '.')
      return fail(tok_.line, "expected a type");
    auto ti = type_of(tok_.text.substr(1));
    if (!ti || ti->is_pred) return fail(tok_.line, "unsupported variable type " + token_text());
    const uint32_t elem = ti->bits / 8;
    if (!advance()) return false;
    if (tok_.kind != Tk::kIdent || tok_.text[0] == '%' || tok_.text[0] == '.')
      return fail(tok_.line, "expected a variable name");
    name = std::string(tok_.text);
    if (!advance()) return false;
    uint64_t count = 1;
    if (is_punct('[')) {
      if (!advance()) return false;
      if (is_punct(']')) {
        if (!allow_unsized) return fail(tok_.line, "an unsized array must be .extern");
        count = 0;
        v.is_extern = true;
      } else {
        if (!expect_number(count, max_bytes, "array size")) return false;
      }
      if (!expect_punct(']')) return false;
    } else if (allow_unsized) {
      return fail(tok_.line, ".extern .shared must be an unsized array");
    }
    if (is_punct('=')) return fail(tok_.line, "initialisers are not supported");
    const uint64_t bytes = count * elem;
    if (bytes > max_bytes) return fail(tok_.line, "variable " + name + " is too large");
    v.size = static_cast<uint32_t>(bytes);
    v.align = static_cast<uint32_t>(align != 0 ? align : elem);
    return true;
  }

  // ---- kernels
  bool entry() {
    if (module_->kernels.size() >= limits_.max_kernels) return fail(tok_.line, "too many kernels");
    if (tok_.kind != Tk::kIdent || tok_.text[0] == '.' || tok_.text[0] == '%')
      return fail(tok_.line, "expected a kernel name");
    k_ = Kernel{};
    k_.name = std::string(tok_.text);
    if (module_->find(k_.name) != nullptr)
      return fail(tok_.line, "kernel " + k_.name + " defined twice");
    if (!advance()) return false;
    // Parameters.
    params_.clear();
    if (!expect_punct('(')) return false;
    while (!is_punct(')')) {
      if (!params_.empty() && !expect_punct(',')) return false;
      if (tok_.kind != Tk::kIdent || tok_.text != ".param")
        return fail(tok_.line, "expected .param");
      if (!advance()) return false;
      if (k_.params.size() >= limits_.max_params) return fail(tok_.line, "too many parameters");
      // .param [.ptr .space [.align N]] — only the alignment matters here.
      if (tok_.kind == Tk::kIdent && tok_.text == ".ptr") {
        if (!advance()) return false;
        if (tok_.kind == Tk::kIdent && (tok_.text == ".global" || tok_.text == ".shared" ||
                                        tok_.text == ".local" || tok_.text == ".const"))
          if (!advance()) return false;
      }
      std::string name;
      SharedVar v;
      if (!var_decl(name, v, false, limits_.max_param_bytes)) return false;
      if (params_.count(name) != 0) return fail(tok_.line, "parameter " + name + " declared twice");
      uint64_t off = (uint64_t{k_.param_bytes} + v.align - 1) / v.align * v.align;
      if (off + v.size > limits_.max_param_bytes)
        return fail(tok_.line,
                    "parameters exceed " + std::to_string(limits_.max_param_bytes) + " bytes");
      Param p{name, static_cast<uint32_t>(off), v.size, v.align};
      params_.emplace(name, k_.params.size());
      k_.params.push_back(p);
      k_.param_bytes = static_cast<uint32_t>(off + v.size);
    }
    if (!advance()) return false;
    // Performance directives (.maxntid 256, 1, 1 etc.): accepted, not enforced.
    while (tok_.kind == Tk::kIdent &&
           (tok_.text == ".maxntid" || tok_.text == ".reqntid" || tok_.text == ".minnctapersm" ||
            tok_.text == ".maxnctapersm" || tok_.text == ".maxnreg" || tok_.text == ".noreturn" ||
            tok_.text == ".maxclusterrank" || tok_.text == ".reqnctapercluster")) {
      if (!advance()) return false;
      while (tok_.kind == Tk::kNumber || is_punct(','))
        if (!advance()) return false;
    }
    if (is_punct(';')) return fail(tok_.line, "kernel " + k_.name + " is declared without a body");
    if (!expect_punct('{')) return false;
    return body();
  }

  Slot new_slot(uint64_t init) {
    const Slot s = k_.slots++;
    if (init != 0) k_.init_values.emplace_back(s, init);
    return s;
  }
  // Whether `more` slots fit in the kernel's and the module's limits.
  bool slots_fit(uint64_t more) const {
    const uint64_t k = uint64_t{k_.slots} + more;
    return k <= limits_.max_slots && module_slots_ + k <= limits_.max_module_slots;
  }
  // The kernel's carry flag (CC.CF of add.cc and friends), made on first use.
  Slot cc_slot() {
    if (cc_slot_ == 0) cc_slot_ = new_slot(0);
    return cc_slot_;
  }
  Slot constant(uint64_t bits) {
    auto it = consts_.find(bits);
    if (it != consts_.end()) return it->second;
    const Slot s = new_slot(bits);
    consts_.emplace(bits, s);
    return s;
  }

  bool body() {
    k_.slots = kFirstFreeSlot;
    cc_slot_ = 0;
    k_.init_values.assign(1, {kSlotTrue, 1});
    consts_.clear();
    regs_.clear();
    scope_names_.clear();
    scope_names_.emplace_back();
    labels_.clear();
    label_refs_.clear();
    fixups_.clear();
    spin_insts_.clear();
    shared_.clear();
    shared_order_.clear();
    local_.clear();
    call_params_.clear();
    calls_.clear();
    emitted_.clear();
    pending_funcs_.clear();
    current_func_.clear();
    if (!statements()) return false;
    // Ensure falling off the end terminates the thread.
    k_.code.push_back(Inst{Op::kRet});
    k_.lines.push_back(tok_.line);
    if (!emit_functions()) return false;
    return finish_kernel();
  }

  // The statements of a kernel or function body up to its closing '}'
  // (the opening '{' is consumed); resolves the body's labels.
  bool statements() {
    uint32_t depth = 1;
    while (depth > 0) {
      const uint32_t line = tok_.line;
      if (tok_.kind == Tk::kEnd)
        return fail(line, "missing '}' at the end of " +
                              (current_func_.empty() ? "kernel " + k_.name : current_func_));
      if (!slots_fit(0)) return fail(line, "too many registers and constants");
      if (is_punct('{')) {
        if (depth >= limits_.max_scope_depth)
          return fail(line, "blocks nested deeper than " + std::to_string(limits_.max_scope_depth) +
                                " levels");
        ++depth;
        scope_names_.emplace_back();
        if (!advance()) return false;
        continue;
      }
      if (is_punct('}')) {
        --depth;
        pop_scope();
        if (!advance()) return false;
        continue;
      }
      if (is_punct(';')) {
        if (!advance()) return false;
        continue;
      }
      if (tok_.kind == Tk::kIdent && tok_.text[0] == '.') {
        if (!body_directive()) return false;
        continue;
      }
      if (tok_.kind == Tk::kIdent && tok_.text[0] != '%') {
        // A label ("name:") or an instruction.
        const Token first = tok_;
        if (!advance()) return false;
        if (is_punct(':')) {
          if (labels_.count(std::string(first.text)) != 0)
            return fail(line, "label " + std::string(first.text) + " defined twice");
          labels_.emplace(std::string(first.text), static_cast<uint32_t>(k_.code.size()));
          if (!advance()) return false;
          continue;
        }
        if (!instruction(first, kSlotTrue, false)) return false;
        continue;
      }
      if (is_punct('@')) {
        if (!advance()) return false;
        bool neg = false;
        if (is_punct('!')) {
          neg = true;
          if (!advance()) return false;
        }
        if (tok_.kind != Tk::kIdent || tok_.text[0] == '.')
          return fail(tok_.line, "expected a predicate after '@'");
        const RegInfo* r = find_reg(tok_.text);
        if (r == nullptr || r->bits != 1)
          return fail(tok_.line, "guard " + token_text() + " is not a predicate register");
        const Slot g = r->slot;
        if (!advance()) return false;
        if (tok_.kind != Tk::kIdent || tok_.text[0] == '%' || tok_.text[0] == '.')
          return fail(tok_.line, "expected an instruction after the guard");
        const Token first = tok_;
        if (!advance()) return false;
        if (!instruction(first, g, neg)) return false;
        continue;
      }
      return fail(line, "unexpected '" + token_text() + "'");
    }
    // Resolve labels.
    for (const auto& [inst, name, line] : label_refs_) {
      auto it = labels_.find(name);
      if (it == labels_.end()) return fail(line, "undefined label " + name);
      k_.code[inst].imm = it->second;
      // A backward branch closing a loop with a volatile load or an atomic:
      // the warp scheduler lets other lanes run when such a loop spins.
      if (it->second <= inst) {
        auto sp = std::lower_bound(spin_insts_.begin(), spin_insts_.end(), it->second);
        if (sp != spin_insts_.end() && *sp <= inst) k_.code[inst].mod |= kBraSpin;
      }
    }
    return true;
  }

  // Appends every device function the kernel calls (transitively) to its
  // code, each once, and resolves the call sites. Calls must not recurse:
  // each function keeps its return address in a slot of its own.
  bool emit_functions() {
    cur_callees_.clear();  // the kernel's own calls: not part of the function call graph
    while (!pending_funcs_.empty()) {
      const std::string name = pending_funcs_.back();
      pending_funcs_.pop_back();
      if (emitted_.count(name) != 0) continue;
      if (!emit_function(name)) return false;
    }
    // Recursion check: depth-first search over the call graph.
    std::map<std::string, int> state;  // 1 on the stack, 2 done
    std::vector<std::pair<std::string, size_t>> stack;
    for (const auto& [root, info] : emitted_) {
      if (state[root] != 0) continue;
      stack.emplace_back(root, 0);
      state[root] = 1;
      while (!stack.empty()) {
        auto& [fn, next] = stack.back();
        const auto& callees = emitted_.at(fn).callees;
        if (next < callees.size()) {
          const std::string& cal = callees[next++];
          if (state[cal] == 1)
            return fail(
                emitted_.at(cal).line,
                "recursive device function calls are not supported (" + fn + " calls " + cal + ")");
          if (state[cal] == 0) {
            state[cal] = 1;
            stack.emplace_back(cal, 0);
          }
        } else {
          state[fn] = 2;
          stack.pop_back();
        }
      }
    }
    for (PendingCall& pc : calls_) {
      const Emitted& e = emitted_.at(pc.callee);
      CallSite& cs = k_.calls[pc.index];
      cs.target = e.entry;
      cs.ret_slot = e.ret_slot;
      if (pc.args.size() != e.params.size())
        return fail(pc.line, "call of " + pc.callee + " passes " + std::to_string(pc.args.size()) +
                                 " arguments, it takes " + std::to_string(e.params.size()));
      if (pc.rets.size() > e.rets.size())
        return fail(pc.line, "call of " + pc.callee + " expects a return value it does not have");
      for (size_t i = 0; i < pc.args.size(); ++i)
        cs.args.push_back(
            {e.params[i].first, pc.args[i].first, std::min(e.params[i].second, pc.args[i].second)});
      for (size_t i = 0; i < pc.rets.size(); ++i)
        cs.rets.push_back(
            {pc.rets[i].first, e.rets[i].first, std::min(e.rets[i].second, pc.rets[i].second)});
    }
    return true;
  }

  bool emit_function(const std::string& name) {
    auto fit = funcs_.find(name);
    if (fit == funcs_.end()) return fail(tok_.line, "call of undeclared function " + name);
    const FuncInfo& f = fit->second;
    if (!f.has_body) return fail(f.line, "function " + name + " is declared but not defined");
    Emitted e;
    e.line = f.line;
    e.entry = static_cast<uint32_t>(k_.code.size());
    if (!slots_fit(1)) return fail(f.line, "too many registers");
    e.ret_slot = new_slot(0);
    // Save the caller's name spaces; the function has its own.
    auto saved_regs = std::move(regs_);
    auto saved_scopes = std::move(scope_names_);
    auto saved_labels = std::move(labels_);
    auto saved_refs = std::move(label_refs_);
    auto saved_spin = std::move(spin_insts_);
    auto saved_local = std::move(local_);
    auto saved_params = std::move(call_params_);
    regs_.clear();
    scope_names_.assign(1, {});
    labels_.clear();
    label_refs_.clear();
    spin_insts_.clear();
    local_.clear();
    call_params_.clear();
    current_func_ = name;
    auto formal = [&](const Param& p, std::vector<std::pair<uint32_t, uint32_t>>& out) {
      const uint64_t off = (uint64_t{k_.local_bytes} + p.align - 1) / p.align * p.align;
      if (off + p.size > limits_.max_local_bytes)
        return fail(f.line,
                    "more than " + std::to_string(limits_.max_local_bytes) + " bytes of .local");
      k_.local_bytes = static_cast<uint32_t>(off + p.size);
      call_params_[p.name] = {static_cast<uint32_t>(off), p.size};
      out.emplace_back(static_cast<uint32_t>(off), p.size);
      return true;
    };
    for (const Param& p : f.rets)
      if (!formal(p, e.rets)) return false;
    for (const Param& p : f.params)
      if (!formal(p, e.params)) return false;
    emitted_[name] = e;
    const Lexer saved_lex = lex_;
    const Token saved_tok = tok_;
    lex_ = f.body_lex;
    tok_ = f.body_tok;
    if (!expect_punct('{')) return false;
    cur_ret_slot_ = e.ret_slot;
    cur_callees_.clear();
    const size_t body_start = lex_.pos();
    if (!statements()) return false;
    // Each kernel parses the functions it calls again: bound the total so a
    // module cannot make the loader re-read a large body for every kernel.
    reparsed_bytes_ += lex_.pos() - body_start;
    if (reparsed_bytes_ > 16 * lex_.size() + (16u << 20))
      return fail(f.line,
                  "device function bodies are re-read too often (too many kernels call "
                  "large functions)");
    cur_ret_slot_ = 0;
    Inst ret;
    ret.op = Op::kRetFunc;
    ret.a = e.ret_slot;
    emit(ret, tok_.line);
    emitted_[name].callees = std::move(cur_callees_);
    cur_callees_.clear();
    lex_ = saved_lex;
    tok_ = saved_tok;
    regs_ = std::move(saved_regs);
    scope_names_ = std::move(saved_scopes);
    labels_ = std::move(saved_labels);
    label_refs_ = std::move(saved_refs);
    spin_insts_ = std::move(saved_spin);
    local_ = std::move(saved_local);
    call_params_ = std::move(saved_params);
    current_func_.clear();
    return true;
  }

  bool finish_kernel() {
    // Shared layout: module-scope static arrays, then this kernel's, then
    // the dynamic (extern) region.
    std::map<std::string, uint32_t, std::less<>> offsets;
    uint64_t off = 0;
    uint32_t dyn_align = 16;
    auto place = [&](const std::string& name, const SharedVar& v) {
      if (v.is_extern) {
        dyn_align = std::max(dyn_align, v.align);
        return;
      }
      off = (off + v.align - 1) / v.align * v.align;
      offsets[name] = static_cast<uint32_t>(off);
      off += v.size;
    };
    for (const auto& n : module_shared_order_) place(n, module_shared_.at(n));
    for (const auto& n : shared_order_) place(n, shared_.at(n));
    if (off > limits_.max_shared_bytes)
      return fail(tok_.line, "kernel " + k_.name + " declares more than " +
                                 std::to_string(limits_.max_shared_bytes) + " bytes of .shared");
    k_.static_shared_bytes = static_cast<uint32_t>(off);
    k_.dynamic_shared_offset = static_cast<uint32_t>((off + dyn_align - 1) / dyn_align * dyn_align);
    for (const auto& [name, v] : module_shared_)
      if (v.is_extern) offsets[name] = k_.dynamic_shared_offset;
    for (const auto& [name, v] : shared_)
      if (v.is_extern) offsets[name] = k_.dynamic_shared_offset;
    for (const Fixup& f : fixups_) {
      int64_t base = 0;
      if (auto it = offsets.find(f.sym); it != offsets.end()) {
        base = it->second;
      } else if (auto lt = local_.find(f.sym); lt != local_.end()) {
        base = lt->second;
      } else if (auto gt = global_addr_.find(f.sym); gt != global_addr_.end()) {
        base = static_cast<int64_t>(gt->second);
      } else {
        return fail(f.line, "undefined symbol " + f.sym);
      }
      const uint64_t value = static_cast<uint64_t>(base) + f.addend;  // wraps, no UB
      if (f.kind == Fixup::kSlotValue) {
        if (value != 0) k_.init_values.emplace_back(f.index, value);
      } else {
        k_.code[f.index].imm = static_cast<int64_t>(value);
      }
    }
    std::sort(k_.init_values.begin(), k_.init_values.end());
    module_slots_ += k_.slots;
    module_insts_ += k_.code.size();
    module_->kernels.push_back(std::move(k_));
    return true;
  }

  // One hash lookup whatever the nesting: each name maps to the stack of its
  // declarations, innermost last.
  const RegInfo* find_reg(std::string_view name) const {
    auto f = regs_.find(name);
    if (f == regs_.end() || f->second.empty()) return nullptr;
    return &f->second.back().info;
  }

  void pop_scope() {
    for (const std::string& n : scope_names_.back()) {
      auto f = regs_.find(n);
      f->second.pop_back();
      if (f->second.empty()) regs_.erase(f);
    }
    scope_names_.pop_back();
  }

  bool declare_reg(std::string name, uint8_t bits, uint32_t line) {
    const uint32_t depth = static_cast<uint32_t>(scope_names_.size());
    auto [it, inserted] = regs_.try_emplace(name);
    if (!inserted && !it->second.empty() && it->second.back().depth == depth)
      return fail(line, "register " + name + " declared twice");
    if (!slots_fit(1)) {
      if (it->second.empty()) regs_.erase(it);
      return fail(line, "too many registers");
    }
    it->second.push_back(ScopedReg{RegInfo{new_slot(0), bits}, depth});
    scope_names_.back().push_back(std::move(name));
    return true;
  }

  bool body_directive() {
    const uint32_t line = tok_.line;
    const std::string_view d = tok_.text;
    // nvcc's fp16/bf16 header asm writes ".reg.b32 f;" (one token) as well as ".reg .b32 f;".
    if (d == ".reg" || (d.size() > 5 && d.substr(0, 5) == ".reg.")) {
      std::string_view type_text;
      if (d == ".reg") {
        if (!advance()) return false;
        if (tok_.kind != Tk::kIdent || tok_.text[0] != '.') return fail(line, ".reg needs a type");
        type_text = tok_.text;
      } else {
        type_text = d.substr(4);
      }
      if (type_text.substr(0, 2) == ".v") return fail(line, "vector registers are not supported");
      auto ti = type_of(type_text.substr(1));
      if (!ti) ti = half_type_of(type_text.substr(1));  // .f16 / .bf16 / .f16x2 / .bf16x2: bits
      if (!ti) return fail(line, "unsupported register type " + std::string(type_text));
      if (!advance()) return false;
      for (bool first = true; !is_punct(';'); first = false) {
        if (!first && !expect_punct(',')) return false;
        // nvcc's inline-asm headers (fp16, bf16) name registers without '%'.
        if (tok_.kind != Tk::kIdent || tok_.text[0] == '.')
          return fail(tok_.line, "expected a register name");
        std::string name(tok_.text);
        if (!advance()) return false;
        if (is_punct('<')) {
          if (!advance()) return false;
          uint64_t n = 0;
          if (!expect_number(n, limits_.max_slots, "register count")) return false;
          if (!expect_punct('>')) return false;
          if (!slots_fit(n)) return fail(line, "too many registers");
          for (uint64_t i = 0; i < n; ++i)
            if (!declare_reg(name + std::to_string(i), ti->bits, line)) return false;
        } else {
          if (!declare_reg(std::move(name), ti->bits, line)) return false;
        }
      }
      return advance();
    }
    if (d == ".shared" || d == ".local") {
      if (!advance()) return false;
      std::string name;
      SharedVar v;
      if (d == ".shared") {
        if (!var_decl(name, v, false, limits_.max_shared_bytes)) return false;
        if (shared_.count(name) != 0 || module_shared_.count(name) != 0)
          return fail(line, "redeclared .shared " + name);
        shared_.emplace(name, v);
        shared_order_.push_back(name);
      } else {
        if (!var_decl(name, v, false, limits_.max_local_bytes)) return false;
        if (local_.count(name) != 0) return fail(line, "redeclared .local " + name);
        uint64_t off = (uint64_t{k_.local_bytes} + v.align - 1) / v.align * v.align;
        if (off + v.size > limits_.max_local_bytes)
          return fail(line,
                      "more than " + std::to_string(limits_.max_local_bytes) + " bytes of .local");
        local_.emplace(name, static_cast<uint32_t>(off));
        k_.local_bytes = static_cast<uint32_t>(off + v.size);
      }
      return expect_punct(';');
    }
    if (d == ".extern") {
      if (!advance()) return false;
      if (tok_.kind != Tk::kIdent || tok_.text != ".shared")
        return fail(line, "only .extern .shared is supported in a kernel");
      if (!advance()) return false;
      std::string name;
      SharedVar v;
      if (!var_decl(name, v, true, limits_.max_shared_bytes)) return false;
      if (shared_.count(name) != 0 || module_shared_.count(name) != 0)
        return fail(line, "redeclared .shared " + name);
      shared_.emplace(name, v);
      shared_order_.push_back(name);
      return expect_punct(';');
    }
    if (d == ".param") {
      // A call site's argument or return value: bytes of local memory.
      if (!advance()) return false;
      std::string name;
      SharedVar v;
      if (!var_decl(name, v, false, limits_.max_param_bytes)) return false;
      const uint64_t off = (uint64_t{k_.local_bytes} + v.align - 1) / v.align * v.align;
      if (off + v.size > limits_.max_local_bytes)
        return fail(line,
                    "more than " + std::to_string(limits_.max_local_bytes) + " bytes of .local");
      k_.local_bytes = static_cast<uint32_t>(off + v.size);
      call_params_[name] = {static_cast<uint32_t>(off), v.size};
      return expect_punct(';');
    }
    if (d == ".pragma" || d == ".loc" || d == ".file") return skip_statement();
    return fail(line, "unsupported directive '" + std::string(d) + "'");
  }

  // ---- operands
  bool operand(Operand& o) {
    o = Operand{};
    if (is_punct('!')) {
      if (!advance()) return false;
      if (tok_.kind != Tk::kIdent || (tok_.text[0] != '%' && find_reg(tok_.text) == nullptr))
        return fail(tok_.line, "'!' must precede a predicate");
      if (!operand(o)) return false;
      if (o.kind != Operand::kReg || o.bits != 1)
        return fail(tok_.line, "'!' must precede a predicate");
      o.negated = true;
      return true;
    }
    if (is_punct('-')) {
      if (!advance()) return false;
      if (tok_.kind != Tk::kNumber) return fail(tok_.line, "expected a number after '-'");
      auto lit = parse_literal(tok_.text, true);
      if (!lit) return fail(tok_.line, "bad number " + token_text());
      o.kind = Operand::kImm;
      o.lit = *lit;
      return advance();
    }
    if (tok_.kind == Tk::kNumber) {
      auto lit = parse_literal(tok_.text, false);
      if (!lit) return fail(tok_.line, "bad number " + token_text());
      o.kind = Operand::kImm;
      o.lit = *lit;
      return advance();
    }
    if (tok_.kind == Tk::kIdent && tok_.text == "_") {
      o.kind = Operand::kSink;
      o.slot = kSlotSink;
      return advance();
    }
    if (tok_.kind == Tk::kIdent && (tok_.text[0] == '%' || find_reg(tok_.text) != nullptr)) {
      if (!reg_operand(o)) return false;
      return advance();
    }
    if (tok_.kind == Tk::kIdent && tok_.text[0] != '.') {
      o.kind = Operand::kSym;
      o.sym = tok_.text;
      return advance();
    }
    if (is_punct('[')) {
      if (!advance()) return false;
      o.kind = Operand::kAddr;
      if (tok_.kind == Tk::kIdent && (tok_.text[0] == '%' || find_reg(tok_.text) != nullptr)) {
        Operand r;
        if (!reg_operand(r)) return false;
        if (r.bits != 32 && r.bits != 64)
          return fail(tok_.line, "address register " + token_text() + " must be 32 or 64 bits");
        o.has_base = true;
        o.slot = r.slot;
        o.bits = r.bits;
        if (!advance()) return false;
      } else if (tok_.kind == Tk::kIdent && tok_.text[0] != '.') {
        o.sym = tok_.text;
        if (!advance()) return false;
      } else if (tok_.kind == Tk::kNumber) {
        auto v = parse_uint(tok_.text);
        if (!v) return fail(tok_.line, "bad address " + token_text());
        o.offset = *v;
        if (!advance()) return false;
      } else {
        return fail(tok_.line, "bad address operand");
      }
      if (is_punct('+') || is_punct('-')) {
        const bool minus = is_punct('-');
        if (!advance()) return false;
        bool neg2 = false;
        if (is_punct('-')) {
          neg2 = true;
          if (!advance()) return false;
        }
        if (tok_.kind != Tk::kNumber) return fail(tok_.line, "expected an offset");
        auto v = parse_uint(tok_.text);
        if (!v || *v > (uint64_t{1} << 62)) return fail(tok_.line, "bad offset " + token_text());
        // Unsigned: [0x7fffffffffffffff+0x4000000000000000] wraps, as
        // address arithmetic does on the device, instead of overflowing.
        o.offset += minus != neg2 ? ~*v + 1 : *v;
        if (!advance()) return false;
      }
      return expect_punct(']');
    }
    if (is_punct('{')) {
      if (!advance()) return false;
      o.kind = Operand::kVec;
      while (!is_punct('}')) {
        if (!o.elems.empty() && !expect_punct(',')) return false;
        if (o.elems.size() >= 8) return fail(tok_.line, "vector of more than 8 elements");
        Operand e;
        if (tok_.kind == Tk::kIdent && tok_.text == "_") {
          e.kind = Operand::kSink;
          e.slot = kSlotSink;
          if (!advance()) return false;
        } else if (tok_.kind == Tk::kNumber) {
          auto lit = parse_literal(tok_.text, false);
          if (!lit) return fail(tok_.line, "bad number " + token_text());
          e.kind = Operand::kImm;
          e.lit = *lit;
          if (!advance()) return false;
        } else {
          if (tok_.kind != Tk::kIdent || (tok_.text[0] != '%' && find_reg(tok_.text) == nullptr))
            return fail(tok_.line, "vector elements must be registers");
          if (!reg_operand(e)) return false;
          if (!advance()) return false;
        }
        o.elems.push_back(e);
      }
      if (o.elems.empty()) return fail(tok_.line, "empty vector");
      return advance();
    }
    return fail(tok_.line, "bad operand '" + token_text() + "'");
  }

  // Current token is %name: a declared register or a special register.
  bool reg_operand(Operand& o) {
    o.kind = Operand::kReg;
    const std::string_view n = tok_.text;
    if (const RegInfo* r = find_reg(n)) {
      o.slot = r->slot;
      o.bits = r->bits;
      return true;
    }
    static const std::pair<std::string_view, Slot> kSpecial[] = {
        {"%tid.x", kSlotTid},       {"%tid.y", kSlotTid + 1},       {"%tid.z", kSlotTid + 2},
        {"%ntid.x", kSlotNtid},     {"%ntid.y", kSlotNtid + 1},     {"%ntid.z", kSlotNtid + 2},
        {"%ctaid.x", kSlotCtaid},   {"%ctaid.y", kSlotCtaid + 1},   {"%ctaid.z", kSlotCtaid + 2},
        {"%nctaid.x", kSlotNctaid}, {"%nctaid.y", kSlotNctaid + 1}, {"%nctaid.z", kSlotNctaid + 2},
        {"%laneid", kSlotLaneid},
    };
    for (const auto& [name, slot] : kSpecial) {
      if (name == n) {
        o.slot = slot;
        o.bits = 32;
        o.negated = false;
        special_ = true;
        return true;
      }
    }
    // Clock, timer and lane-mask registers: read by mov as Op::kClock / kLaneMask
    // (nothing else takes them).
    static const std::pair<std::string_view, uint8_t> kClocks[] = {
        {"%clock", 0},          {"%clock_hi", 1},       {"%clock64", 2},      {"%globaltimer", 3},
        {"%globaltimer_lo", 4}, {"%globaltimer_hi", 5}, {"%lanemask_eq", 6},  {"%lanemask_le", 7},
        {"%lanemask_lt", 8},    {"%lanemask_ge", 9},    {"%lanemask_gt", 10},
    };
    for (const auto& [name, kind] : kClocks) {
      if (name == n) {
        o.slot = kSlotZero;
        o.bits = (kind == 2 || kind == 3) ? 64 : 32;
        o.negated = false;
        o.clock = static_cast<uint8_t>(kind + 1);
        return true;
      }
    }
    return fail(tok_.line, "undeclared register " + std::string(n));
  }

  // ---- instruction emission helpers
  struct Ctx {
    std::string_view opcode;
    uint32_t line;
    std::vector<Operand> ops;
    bool has_pair = false;  // "d|p": the second destination of setp, shfl, match
    Operand pair;
  };

  static Ctx sub_ctx(const Ctx& c, const Operand& o) {
    Ctx s;
    s.opcode = c.opcode;
    s.line = c.line;
    s.ops.push_back(o);
    return s;
  }

  bool bad(const Ctx& c, const std::string& why) {
    return fail(c.line, "unsupported instruction '" + std::string(c.opcode) + "': " + why);
  }

  // A source operand of `bits` bits of type `t`: a register of that size or
  // an immediate converted to it. Predicates need a predicate register.
  bool src(Ctx& c, size_t i, const TypeInfo& t, Slot& out, bool allow_wider = false) {
    if (i >= c.ops.size()) return bad(c, "missing operand");
    Operand& o = c.ops[i];
    if (o.kind == Operand::kReg) {
      if (o.clock != 0)
        return bad(c, "clock, timer and lanemask registers can only be read by mov");
      if (o.negated) return bad(c, "'!' is only allowed on setp's last operand");
      if (t.is_pred != (o.bits == 1))
        return bad(c, "operand " + std::to_string(i + 1) + " has the wrong register type");
      if (o.bits != t.bits && !(allow_wider && o.bits > t.bits)) {
        return bad(c, "operand " + std::to_string(i + 1) + " is a " + std::to_string(o.bits) +
                          "-bit register, the type needs " + std::to_string(t.bits));
      }
      out = o.slot;
      return true;
    }
    if (o.kind == Operand::kImm) {
      if (t.is_pred) {
        // mov.pred %p, 0 / 1; nvcc also emits -1 for true (any nonzero integer is true)
        if (o.lit.kind != Literal::kInt)
          return bad(c, "a predicate immediate must be an integer (0 false, nonzero true)");
        out = o.lit.bits != 0 ? kSlotTrue : kSlotZero;
        return true;
      }
      uint64_t bits = 0;
      if (!literal_bits(c, o.lit, t, bits)) return false;
      out = constant(bits);
      return true;
    }
    return bad(c, "operand " + std::to_string(i + 1) + " must be a register or an immediate");
  }

  bool literal_bits(Ctx& c, const Literal& l, const TypeInfo& t, uint64_t& bits) {
    if (t.is_float) {
      double v = 0;
      switch (l.kind) {
        case Literal::kF32Bits: {
          float f;
          uint32_t b = static_cast<uint32_t>(l.bits);
          std::memcpy(&f, &b, 4);
          if (t.bits == 32) {
            bits = b;
            return true;
          }
          v = f;
          break;
        }
        case Literal::kF64Bits: {
          if (t.bits == 64) {
            bits = l.bits;
            return true;
          }
          std::memcpy(&v, &l.bits, 8);
          break;
        }
        case Literal::kDecimal:
          v = l.value;
          break;
        case Literal::kInt:
          v = static_cast<double>(static_cast<int64_t>(l.bits));
          break;
      }
      if (t.bits == 32) {
        const float f = static_cast<float>(v);
        uint32_t b;
        std::memcpy(&b, &f, 4);
        bits = b;
      } else {
        std::memcpy(&bits, &v, 8);
      }
      return true;
    }
    if (l.kind != Literal::kInt) return bad(c, "floating-point immediate for an integer type");
    bits = l.bits & mask_of(t.bits);
    return true;
  }

  bool dst(Ctx& c, size_t i, const TypeInfo& t, Slot& out, bool allow_wider = false) {
    if (i >= c.ops.size()) return bad(c, "missing operand");
    const Operand& o = c.ops[i];
    if (o.kind == Operand::kSink) {
      out = kSlotSink;
      return true;
    }
    if (o.kind != Operand::kReg || o.negated) return bad(c, "the destination must be a register");
    if (o.slot < kFirstFreeSlot) return bad(c, "special registers are read-only");
    if (t.is_pred != (o.bits == 1) || (o.bits != t.bits && !(allow_wider && o.bits > t.bits)))
      return bad(c, "the destination is a " + std::to_string(o.bits) +
                        "-bit register, the type needs " + std::to_string(t.is_pred ? 1 : t.bits));
    out = o.slot;
    return true;
  }

  bool count(Ctx& c, size_t n) {
    if (c.ops.size() != n)
      return bad(c,
                 "expects " + std::to_string(n) + " operands, has " + std::to_string(c.ops.size()));
    return true;
  }

  void emit(const Inst& in, uint32_t line) {
    k_.code.push_back(in);
    k_.lines.push_back(line);
  }

  // The address of a memory operand: base slot and offset; symbols are
  // parameters (resolved now) or shared/local arrays (fixed up at the end).
  bool address(Ctx& c, size_t i, Space space, Inst& in) {
    if (i >= c.ops.size() || c.ops[i].kind != Operand::kAddr)
      return bad(c, "operand " + std::to_string(i + 1) + " must be an address [..]");
    const Operand& o = c.ops[i];
    in.a = o.has_base ? o.slot : kSlotZero;
    in.imm = static_cast<int64_t>(o.offset);
    if (!o.sym.empty()) {
      const std::string sym(o.sym);
      if (auto cp = call_params_.find(sym); cp != call_params_.end() && space == Space::kLocal) {
        in.imm = static_cast<int64_t>(o.offset + cp->second.first);
        return true;
      }
      if (auto lt = local_.find(sym); lt != local_.end() && space == Space::kLocal) {
        in.imm = static_cast<int64_t>(o.offset + lt->second);
        return true;
      }
      if (auto p = params_.find(sym); p != params_.end()) {
        if (space != Space::kParam)
          return bad(c, "parameter " + sym + " used outside the .param space");
        in.imm = static_cast<int64_t>(o.offset + k_.params[p->second].offset);
      } else if (space == Space::kShared || space == Space::kLocal ||
                 ((space == Space::kGlobal || space == Space::kGeneric) &&
                  global_addr_.count(sym) != 0)) {
        fixups_.push_back(
            Fixup{Fixup::kInstImm, static_cast<uint32_t>(k_.code.size()), sym, o.offset, c.line});
      } else {
        return bad(c, "symbol " + sym + " is not addressable in this state space");
      }
    } else if (space == Space::kParam) {
      return bad(c, "parameters must be addressed by name");
    }
    return true;
  }

  bool instruction(const Token& first, Slot guard, bool guard_neg);
  bool call(Ctx& c, Slot guard, bool guard_neg);
  bool half_instruction(Ctx& c, Inst in, std::string_view base, const std::vector<TypeInfo>& types,
                        std::vector<std::string_view>& other);
  bool half_compare(Ctx& c, std::vector<std::string_view>& other, std::optional<Cmp>& cmp,
                    BoolOp& bop);
  bool set_instruction(Ctx& c, Inst in, const std::vector<TypeInfo>& types,
                       std::vector<std::string_view>& other);
  bool wmma_instruction(Ctx& c, Inst in, const std::vector<TypeInfo>& types,
                        std::vector<std::string_view>& other);
  bool emit_instruction(Ctx& c, Inst base);

  Lexer lex_;
  std::string lex_err_;
  const LoadLimits& limits_;
  Token tok_;
  std::string err_;
  Module* module_ = nullptr;
  Kernel k_;
  bool special_ = false;
  Slot cc_slot_ = 0;
  std::unordered_map<std::string, size_t> params_;
  std::unordered_map<uint64_t, Slot> consts_;
  std::unordered_map<std::string, std::vector<ScopedReg>, NameHash, std::equal_to<>> regs_;
  std::vector<std::vector<std::string>> scope_names_;  // names declared per open block
  uint64_t module_slots_ = 0;                          // slots of the finished kernels
  uint64_t module_insts_ = 0;                          // instructions of the finished kernels
  std::unordered_map<std::string, uint32_t> labels_;
  std::vector<std::tuple<uint32_t, std::string, uint32_t>> label_refs_;
  std::vector<Fixup> fixups_;
  std::vector<uint32_t> spin_insts_;  // volatile loads and atomics of the kernel (sorted)
  std::map<std::string, FuncInfo, std::less<>> funcs_;
  // A function emitted into the current kernel.
  struct Emitted {
    uint32_t entry = 0;
    Slot ret_slot = 0;
    uint32_t line = 0;
    std::vector<std::pair<uint32_t, uint32_t>> rets, params;  // local offset, size
    std::vector<std::string> callees;
  };
  std::map<std::string, Emitted> emitted_;
  std::vector<std::string> pending_funcs_;
  std::vector<std::string> cur_callees_;
  std::string current_func_;   // empty in a kernel body
  size_t reparsed_bytes_ = 0;  // function bodies parsed again for the kernels calling them
  Slot cur_ret_slot_ = 0;
  // Call-site .param variables and the formal parameters of the function
  // being parsed: bytes of the thread's local memory (offset, size).
  std::map<std::string, std::pair<uint32_t, uint32_t>, std::less<>> call_params_;
  struct PendingCall {
    uint32_t index = 0;  // into Kernel::calls
    std::string callee;
    std::vector<std::pair<uint32_t, uint32_t>> args, rets;  // call-site params
    uint32_t line = 0;
  };
  std::vector<PendingCall> calls_;
  std::map<std::string, uint64_t, std::less<>> global_addr_;  // module-scope .global/.const
  std::vector<std::byte> global_init_, const_init_;
  std::map<std::string, SharedVar, std::less<>> module_shared_;
  std::vector<std::string> module_shared_order_;
  std::map<std::string, SharedVar, std::less<>> shared_;
  std::vector<std::string> shared_order_;
  std::map<std::string, uint32_t, std::less<>> local_;
};

bool Parser::instruction(const Token& first, Slot guard, bool guard_neg) {
  Ctx c;
  c.opcode = first.text;
  c.line = first.line;
  if (k_.code.size() >= limits_.max_instructions)
    return fail(c.line, "too many instructions in kernel " + k_.name);
  if (module_insts_ + k_.code.size() >= limits_.max_module_instructions)
    return fail(c.line, "too many instructions in the module (limit " +
                            std::to_string(limits_.max_module_instructions) + ")");
  if (c.opcode == "call" || c.opcode == "call.uni") return call(c, guard, guard_neg);
  while (!is_punct(';')) {
    if (tok_.kind == Tk::kEnd)
      return fail(c.line, "missing ';' after '" + std::string(c.opcode) + "'");
    if (!c.ops.empty() && !expect_punct(',')) return false;
    if (c.ops.size() >= 8) return bad(c, "too many operands");
    Operand o;
    if (!operand(o)) return false;
    if (is_punct('|')) {
      if (!c.ops.empty() || c.has_pair) return bad(c, "'|' joins only the two destinations");
      if (!advance()) return false;
      if (!operand(c.pair)) return false;
      c.has_pair = true;
    }
    c.ops.push_back(std::move(o));
  }
  if (!advance()) return false;
  Inst in;
  in.guard = guard;
  in.neg = guard_neg ? 1 : 0;
  return emit_instruction(c, in);
}

// f16 / bf16 / f16x2 / bf16x2: cvt to and from f32/f64, add, sub, mul, fma,
// neg, abs, min, max, setp. Everything else with a half type is refused.
bool Parser::half_instruction(Ctx& c, Inst in, std::string_view base,
                              const std::vector<TypeInfo>& types,
                              std::vector<std::string_view>& other) {
  auto bad_ = [&](const std::string& why) { return bad(c, why); };
  auto take = [&](std::string_view m) {
    auto it = std::find(other.begin(), other.end(), m);
    if (it == other.end()) return false;
    other.erase(it);
    return true;
  };
  uint32_t rnd = 0;  // 0 rn, 1 rz, 2 rm, 3 rp
  int nrnd = 0;
  if (take("rn")) ++nrnd;
  if (take("rz")) rnd = 1, ++nrnd;
  if (take("rm")) rnd = 2, ++nrnd;
  if (take("rp")) rnd = 3, ++nrnd;
  if (nrnd > 1) return bad_("two rounding modifiers");
  const uint32_t line = c.line;
  if (base == "cvt") {
    if (types.size() != 2) return bad_("expects a destination and a source type");
    const TypeInfo dt = types[0], st = types[1];
    if (st.half && st.half == dt.half && st.bits == 16 && dt.bits == 16) {
      // cvt.{rni,rzi,rmi,rpi}.f16.f16 (hrint, htrunc, hfloor, hceil): an integral value
      Rnd r = Rnd::kNone;
      if (take("rni"))
        r = Rnd::kRni;
      else if (take("rzi"))
        r = Rnd::kRzi;
      else if (take("rmi"))
        r = Rnd::kRmi;
      else if (take("rpi"))
        r = Rnd::kRpi;
      if (r == Rnd::kNone || nrnd != 0)
        return bad_("a conversion to the same half type needs .rni, .rzi, .rmi or .rpi");
      if (!other.empty()) return bad_("unsupported modifier ." + std::string(other.front()));
      const TypeInfo b16{Ty::kU16, 16, false, false, false, 0};
      if (!count(c, 2) || !dst(c, 0, b16, in.d, true) || !src(c, 1, b16, in.a, true)) return false;
      in.op = Op::kHalf;
      in.imm = 17 | (st.half - 1) << 8 | static_cast<int64_t>(r) << 24;
      emit(in, line);
      return true;
    }
    const bool to_int = st.half && !dt.half && !dt.is_float;
    if (!to_int && !other.empty())
      return bad_("unsupported modifier ." + std::string(other.front()));
    if (st.bits == 32 && st.half) return bad_("conversions from f16x2/bf16x2 are not supported");
    const TypeInfo f32{Ty::kF32, 32, true, true, false, 0};
    if (dt.bits == 32 && dt.half) {
      // cvt.rnd.f16x2.f32 d, a, b: d = {a converted (upper half), b converted (lower half)}
      if (st.ty != Ty::kF32 || st.half)
        return bad_("conversions to f16x2/bf16x2 need an .f32 source");
      if (nrnd == 0) return bad_("a conversion to f16x2/bf16x2 needs .rn, .rz, .rm or .rp");
      if (!count(c, 3)) return false;
      const TypeInfo b32{Ty::kU32, 32, false, false, false, 0};
      if (!dst(c, 0, b32, in.d) || !src(c, 1, f32, in.a) || !src(c, 2, f32, in.b)) return false;
      in.op = Op::kHalf;
      in.imm = 15 | (dt.half - 1) << 8 | rnd << 12;
      emit(in, line);
      return true;
    }
    if (!count(c, 2)) return false;
    const TypeInfo f64{Ty::kF64, 64, true, true, false, 0};
    const TypeInfo b16{Ty::kU16, 16, false, false, false, 0};
    in.op = Op::kHalf;
    if (dt.half && !st.half && !st.is_float) {
      // integer -> f16/bf16
      if (st.is_pred) return bad_("predicate conversions are not supported");
      if (nrnd == 0) return bad_("a conversion to f16/bf16 needs .rn, .rz, .rm or .rp");
      if (!dst(c, 0, b16, in.d, true) || !src(c, 1, st, in.a, true)) return false;
      in.imm = 13 | (dt.half - 1) << 8 | rnd << 12 | static_cast<int64_t>(st.ty) << 16;
      emit(in, line);
      return true;
    }
    if (st.half && !dt.half && !dt.is_float) {
      // f16/bf16 -> integer: .rni .rzi .rmi .rpi, saturating, NaN -> 0
      if (dt.is_pred) return bad_("predicate conversions are not supported");
      Rnd r = Rnd::kNone;
      if (take("rni"))
        r = Rnd::kRni;
      else if (take("rzi"))
        r = Rnd::kRzi;
      else if (take("rmi"))
        r = Rnd::kRmi;
      else if (take("rpi"))
        r = Rnd::kRpi;
      if (r == Rnd::kNone || nrnd != 0)
        return bad_("f16/bf16 -> integer needs .rni, .rzi, .rmi or .rpi");
      if (!other.empty()) return bad_("unsupported modifier ." + std::string(other.front()));
      if (!dst(c, 0, dt, in.d, true) || !src(c, 1, b16, in.a, true)) return false;
      in.imm = 14 | (st.half - 1) << 8 | static_cast<int64_t>(dt.ty) << 16 |
               static_cast<int64_t>(r) << 24;
      emit(in, line);
      return true;
    }
    if (dt.half && !st.half) {
      if (nrnd == 0) return bad_("a conversion to f16/bf16 needs .rn, .rz, .rm or .rp");
      if (!dst(c, 0, b16, in.d, true) || !src(c, 1, st.bits == 32 ? f32 : f64, in.a)) return false;
      in.imm = (st.bits == 32 ? 9 : 10) | (dt.half - 1) << 8 | rnd << 12;
    } else if (st.half && !dt.half) {
      if (!dt.is_float) return bad_("f16/bf16 to integer conversions are not supported");
      if (nrnd != 0) return bad_("f16/bf16 to f32/f64 is exact and takes no rounding modifier");
      if (!dst(c, 0, dt.bits == 32 ? f32 : f64, in.d) || !src(c, 1, b16, in.a, true)) return false;
      in.imm = (dt.bits == 32 ? 11 : 12) | (st.half - 1) << 8;
    } else {
      return bad_("conversions between half formats are not supported");
    }
    emit(in, line);
    return true;
  }
  static const std::pair<std::string_view, uint32_t> kOps[] = {
      {"add", 0}, {"sub", 1}, {"mul", 2}, {"fma", 3},   {"neg", 4},
      {"abs", 5}, {"min", 6}, {"max", 7}, {"tanh", 18}, {"ex2", 19}};
  int sub = -1;
  for (const auto& [name, k] : kOps)
    if (base == name) sub = static_cast<int>(k);
  if (base == "setp") sub = 8;
  if (sub < 0)
    return bad_(
        "f16/bf16 types are supported by cvt, add, sub, mul, fma, neg, abs, min, max, setp, set, "
        "tanh.approx, ex2.approx and atom/red.add.noftz");
  if (types.size() != 1) return bad_("expects exactly one type");
  const TypeInfo t = types[0];
  const TypeInfo reg{t.bits == 16 ? Ty::kU16 : Ty::kU32, t.bits, false, false, false, 0};
  in.op = Op::kHalf;
  int64_t flags = 0;
  if (take("ftz")) flags |= kHalfFtz;
  if (sub == 8) {
    std::optional<Cmp> cmp;
    BoolOp bop = BoolOp::kNone;
    if (!half_compare(c, other, cmp, bop)) return false;
    if (!other.empty()) return bad_("unsupported modifier ." + std::string(other.front()));
    if (nrnd != 0) return bad_("takes no rounding modifier");
    if (!count(c, bop == BoolOp::kNone ? 3 : 4)) return false;
    const TypeInfo p{Ty::kPred, 1, false, false, true, 0};
    if (!src(c, 1, reg, in.a, true) || !src(c, 2, reg, in.b, true)) return false;
    if (bop != BoolOp::kNone) {
      if (c.ops[3].negated) flags |= kHalfCNeg;
      c.ops[3].negated = false;
      if (!src(c, 3, p, in.c)) return false;
    }
    flags |= static_cast<int64_t>(bop) << kHalfBoolShift;
    // p (or, for x2, p = the lower halves' result and q = the upper halves');
    // a scalar p|q gives q the complement of the comparison, combined alike.
    Inst q = in;
    if (!dst(c, 0, p, in.d)) return false;
    const bool pair = c.has_pair;
    if (t.bits == 32 && !pair) return bad_("setp on f16x2/bf16x2 needs two destinations (p|q)");
    if (pair) {
      Ctx pc = sub_ctx(c, c.pair);
      if (!dst(pc, 0, p, q.d)) return false;
      if (bop != BoolOp::kNone && (in.c == in.d || in.c == q.d))
        return bad_("the predicate operand may not be one of the destinations");
    }
    in.imm = 8 | (t.half - 1) << 8 | static_cast<int64_t>(*cmp) << 16 | flags;
    emit(in, line);
    if (pair) {
      if (t.bits == 32) {
        q.imm = in.imm | kHalfUpper;
      } else {
        // The complement of an ordered comparison is the unordered opposite.
        static const Cmp kInverse[] = {Cmp::kNeu, Cmp::kEqu, Cmp::kGeu, Cmp::kGtu, Cmp::kLeu,
                                       Cmp::kLtu, Cmp::kNe,  Cmp::kEq,  Cmp::kGe,  Cmp::kGt,
                                       Cmp::kLe,  Cmp::kLt,  Cmp::kNan, Cmp::kNum};
        q.imm = 8 | (t.half - 1) << 8 |
                static_cast<int64_t>(kInverse[static_cast<int>(*cmp)]) << 16 | flags;
      }
      emit(q, line);
    }
    return true;
  }
  if (sub == 18 || sub == 19) {
    if (!take("approx")) return bad_("needs .approx");
    if (nrnd != 0) return bad_("takes no rounding modifier");
  }
  if (sub <= 3 && take("sat")) flags |= kHalfSat;
  if (sub == 3 && take("relu")) {
    if (flags & kHalfSat) return bad_(".sat and .relu together");
    flags |= kHalfRelu;
  }
  if ((sub == 6 || sub == 7) && take("NaN")) flags |= kHalfNaNs;
  if ((sub >= 4 && sub <= 7) && nrnd != 0) return bad_("takes no rounding modifier");
  if (!other.empty()) return bad_("unsupported modifier ." + std::string(other.front()));
  const int nsrc = sub == 3 ? 3 : (sub == 4 || sub == 5 || sub >= 18) ? 1 : 2;
  if (!count(c, static_cast<size_t>(nsrc) + 1)) return false;
  if (!dst(c, 0, reg, in.d, true) || !src(c, 1, reg, in.a, true)) return false;
  if (nsrc >= 2 && !src(c, 2, reg, in.b, true)) return false;
  if (nsrc >= 3 && !src(c, 3, reg, in.c, true)) return false;
  in.imm = sub | (t.half - 1) << 8 | (t.bits == 32 ? 1 : 0) << 10 | rnd << 12 | flags;
  emit(in, line);
  return true;
}

// The comparison and boolean modifiers of setp / set.
bool Parser::half_compare(Ctx& c, std::vector<std::string_view>& other, std::optional<Cmp>& cmp,
                          BoolOp& bop) {
  static const std::pair<std::string_view, Cmp> kCmps[] = {
      {"eq", Cmp::kEq},   {"ne", Cmp::kNe},   {"lt", Cmp::kLt},   {"le", Cmp::kLe},
      {"gt", Cmp::kGt},   {"ge", Cmp::kGe},   {"equ", Cmp::kEqu}, {"neu", Cmp::kNeu},
      {"ltu", Cmp::kLtu}, {"leu", Cmp::kLeu}, {"gtu", Cmp::kGtu}, {"geu", Cmp::kGeu},
      {"num", Cmp::kNum}, {"nan", Cmp::kNan}};
  auto take = [&](std::string_view m) {
    auto it = std::find(other.begin(), other.end(), m);
    if (it == other.end()) return false;
    other.erase(it);
    return true;
  };
  for (const auto& [name, k] : kCmps)
    if (take(name)) {
      if (cmp) return bad(c, "two comparisons");
      cmp = k;
    }
  if (!cmp) return bad(c, "missing comparison");
  bop = BoolOp::kNone;
  if (take("and"))
    bop = BoolOp::kAnd;
  else if (take("or"))
    bop = BoolOp::kOr;
  else if (take("xor"))
    bop = BoolOp::kXor;
  return true;
}

// set.CmpOp{.BoolOp}{.ftz}.dtype.stype d, a, b{, {!}c}: d = all ones (integer
// dtype) or 1.0 (float dtype) where the comparison holds, else 0; per half for
// .f16x2 / .bf16x2 sources.
bool Parser::set_instruction(Ctx& c, Inst in, const std::vector<TypeInfo>& types,
                             std::vector<std::string_view>& other) {
  const uint32_t line = c.line;
  if (types.size() != 2) return bad(c, "expects a destination and a source type");
  const TypeInfo dt = types[0], st = types[1];
  if (dt.is_pred || st.is_pred) return bad(c, "set needs a non-predicate type");
  bool unsigned_cmp = false;
  std::optional<Cmp> cmp;
  static const std::pair<std::string_view, Cmp> kUnsigned[] = {
      {"lo", Cmp::kLt}, {"ls", Cmp::kLe}, {"hi", Cmp::kGt}, {"hs", Cmp::kGe}};
  for (const auto& [name, k] : kUnsigned)
    if (auto it = std::find(other.begin(), other.end(), name); it != other.end()) {
      if (cmp) return bad(c, "two comparisons");
      other.erase(it);
      cmp = k;
      unsigned_cmp = true;
    }
  BoolOp bop = BoolOp::kNone;
  if (unsigned_cmp) {
    if (st.is_float || st.half) return bad(c, "lo/ls/hi/hs need an integer type");
    for (auto [name, k] : {std::pair{"and", BoolOp::kAnd}, std::pair{"or", BoolOp::kOr},
                           std::pair{"xor", BoolOp::kXor}})
      if (auto it = std::find(other.begin(), other.end(), name); it != other.end()) {
        other.erase(it);
        bop = k;
        break;
      }
  } else if (!half_compare(c, other, cmp, bop)) {
    return false;
  }
  bool ftz = false;
  if (auto it = std::find(other.begin(), other.end(), "ftz"); it != other.end()) {
    other.erase(it);
    ftz = true;
  }
  if (!other.empty()) return bad(c, "unsupported modifier ." + std::string(other.front()));
  if (!st.is_float && !st.half && *cmp > Cmp::kGe)
    return bad(c, "unordered comparisons need a float type");
  if (!count(c, bop == BoolOp::kNone ? 3 : 4)) return false;
  const TypeInfo p{Ty::kPred, 1, false, false, true, 0};
  bool cneg = false;
  if (bop != BoolOp::kNone) {
    cneg = c.ops[3].negated;
    c.ops[3].negated = false;
    if (!src(c, 3, p, in.c)) return false;
  }
  if (st.half) {
    HalfSet kind;
    if (dt.half == st.half && dt.bits == st.bits)
      kind = HalfSet::kOne;
    else if (dt.is_float || dt.half || dt.bits < 16 || dt.bits > 32 ||
             (st.bits == 32 && dt.bits != 32))
      return bad(c, "set on a half type needs the same half type or a 16/32-bit integer dtype");
    else
      kind = st.bits == 32   ? HalfSet::kMask16x2
             : dt.bits == 16 ? HalfSet::kMask16
                             : HalfSet::kMask32;
    const TypeInfo sreg{st.bits == 16 ? Ty::kU16 : Ty::kU32, st.bits, false, false, false, 0};
    const TypeInfo dreg{dt.bits == 16 ? Ty::kU16 : Ty::kU32, dt.bits, false, false, false, 0};
    if (!dst(c, 0, dreg, in.d, true) || !src(c, 1, sreg, in.a, true) ||
        !src(c, 2, sreg, in.b, true))
      return false;
    in.op = Op::kHalf;
    in.imm = 16 | (st.half - 1) << 8 | (st.bits == 32 ? 1 : 0) << 10 |
             static_cast<int64_t>(*cmp) << 16 | static_cast<int64_t>(bop) << kHalfBoolShift |
             (cneg ? kHalfCNeg : 0) | (ftz ? kHalfFtz : 0) |
             static_cast<int64_t>(kind) << kHalfSetShift;
    emit(in, line);
    return true;
  }
  // Other types: setp into a fresh predicate, then selp.
  if (st.bits < 16) return bad(c, "set needs a 16-, 32- or 64-bit source type");
  uint64_t one;
  if (dt.half || (dt.is_float && dt.bits != 32) || (!dt.is_float && dt.bits != 32))
    return bad(c, "set needs a .u32, .s32 or .f32 destination type");
  one = dt.is_float ? 0x3f800000u : 0xffffffffu;
  Inst cmpi = in;
  if (!src(c, 1, st, cmpi.a) || !src(c, 2, st, cmpi.b)) return false;
  cmpi.op = st.is_float ? (st.bits == 32 ? Op::kSetpF32 : Op::kSetpF64)
                        : ((st.is_signed && !unsigned_cmp) ? Op::kSetpS : Op::kSetpU);
  cmpi.mod = st.is_float ? 0 : st.bits;
  cmpi.imm = static_cast<int64_t>(static_cast<uint32_t>(*cmp) | static_cast<uint32_t>(bop) << 8 |
                                  (cneg ? 1u << 10 : 0u));
  cmpi.d = new_slot(0);
  Inst sel = in;
  sel.op = Op::kSelp;
  if (!dst(c, 0, dt, sel.d)) return false;
  sel.a = constant(one);
  sel.b = kSlotZero;
  sel.c = cmpi.d;
  emit(cmpi, line);
  emit(sel, line);
  return true;
}

// wmma (nvcuda::wmma): shapes m16n16k16, m32n8k16, m8n32k16; f16 inputs with
// f16 or f32 accumulators, bf16 inputs with f32 accumulators:
// wmma.load.{a,b,c}, wmma.store.d, wmma.mma (see Op::kWmmaLoad).
bool Parser::wmma_instruction(Ctx& c, Inst in, const std::vector<TypeInfo>& types,
                              std::vector<std::string_view>& other) {
  const uint32_t line = c.line;
  auto take = [&](std::string_view m) {
    auto it = std::find(other.begin(), other.end(), m);
    if (it == other.end()) return false;
    other.erase(it);
    return true;
  };
  const bool load = take("load"), store = take("store"), mma = take("mma");
  if (load + store + mma != 1) return bad(c, "needs .load, .store or .mma");
  if (!take("sync") || !take("aligned")) return bad(c, "needs .sync.aligned");
  static const std::string_view kShapes[] = {"m16n16k16", "m32n8k16", "m8n32k16"};
  static const uint32_t kDims[][3] = {{16, 16, 16}, {32, 8, 16}, {8, 32, 16}};  // M, N, K
  int shape = -1;
  for (int i = 0; i < 3; ++i)
    if (take(kShapes[i])) shape = i;
  if (shape < 0) return bad(c, "only the shapes m16n16k16, m32n8k16 and m8n32k16 are supported");
  const uint32_t M = kDims[shape][0], N = kDims[shape][1], K = kDims[shape][2];
  // Fragment registers: a/b .b32 (two halves each): 8 for f16, elements / 64
  // for bf16; c/d: 8 .f32 or 4 .b32 (f16x2).
  const TypeInfo b32{Ty::kU32, 32, false, false, false, 0};
  const TypeInfo f32{Ty::kF32, 32, true, true, false, 0};
  auto is_f16 = [](const TypeInfo& t) { return t.half == 1 && t.bits == 16; };
  auto is_bf16 = [](const TypeInfo& t) { return t.half == 2 && t.bits == 16; };
  auto is_f32 = [](const TypeInfo& t) { return t.ty == Ty::kF32 && !t.half; };
  auto ab_regs = [&](int matrix, bool bf16) {
    return bf16 ? (matrix == 0 ? M * K : K * N) / 64 : 8u;
  };
  auto fragment = [&](const Operand& v, size_t n, bool f32_regs, bool write) {
    if (v.kind != Operand::kVec || v.elems.size() != n)
      return bad(c, "expects a fragment of " + std::to_string(n) + " registers");
    for (const Operand& e : v.elems) {
      Ctx ec = sub_ctx(c, e);
      Slot r = 0;
      if (write ? !dst(ec, 0, f32_regs ? f32 : b32, r) : !src(ec, 0, f32_regs ? f32 : b32, r))
        return false;
      k_.vec_slots.push_back(r);
    }
    return true;
  };
  in.d = constant(0xffffffffu);  // the membermask: the whole warp
  in.neg = static_cast<uint8_t>(in.neg | shape << 1);
  in.c = static_cast<Slot>(k_.vec_slots.size());
  if (mma) {
    // .alayout.blayout, in this order
    std::vector<bool> cols;
    for (auto it = other.begin(); it != other.end();) {
      if (*it == "row" || *it == "col") {
        cols.push_back(*it == "col");
        it = other.erase(it);
      } else {
        ++it;
      }
    }
    if (cols.size() != 2) return bad(c, "needs the a and b layouts (.row / .col)");
    const bool acol = cols[0], bcol = cols[1];
    if (take("satfinite")) return bad(c, ".satfinite is not supported");
    if (!other.empty()) return bad(c, "unsupported modifier ." + std::string(other.front()));
    bool bf16 = false, df32 = false, cf32 = false;
    if (types.size() == 2 && (is_f16(types[0]) || is_f32(types[0])) &&
        (is_f16(types[1]) || is_f32(types[1]))) {
      df32 = is_f32(types[0]);
      cf32 = is_f32(types[1]);
    } else if (types.size() == 4 && is_f32(types[0]) && is_bf16(types[1]) && is_bf16(types[2]) &&
               is_f32(types[3])) {
      bf16 = df32 = cf32 = true;
    } else {
      return bad(c,
                 "needs .dtype.ctype of .f16 / .f32 (f16 inputs) or .f32.bf16.bf16.f32 (tf32, "
                 "integer and f64 wmma are not supported)");
    }
    if (!count(c, 4)) return false;
    // Slots: a, b, c, then d (which may name c's registers).
    const size_t start = k_.vec_slots.size();
    if (!fragment(c.ops[1], ab_regs(0, bf16), false, false) ||
        !fragment(c.ops[2], ab_regs(1, bf16), false, false) ||
        !fragment(c.ops[3], cf32 ? 8 : 4, cf32, false) ||
        !fragment(c.ops[0], df32 ? 8 : 4, df32, true))
      return false;
    in.c = static_cast<Slot>(start);
    in.op = Op::kWmmaMma;
    in.mod = static_cast<uint8_t>((acol ? 1 : 0) | (bcol ? 2 : 0) | (df32 ? 4 : 0) |
                                  (cf32 ? 8 : 0) | (bf16 ? 16 : 0));
    emit(in, line);
    return true;
  }
  int matrix = -1;  // 0 a, 1 b, 2 c / d
  if (load) {
    if (take("a"))
      matrix = 0;
    else if (take("b"))
      matrix = 1;
    else if (take("c"))
      matrix = 2;
  } else if (take("d")) {
    matrix = 2;
  }
  if (matrix < 0) return bad(c, load ? "needs .a, .b or .c" : "needs .d");
  const bool row = take("row"), col = take("col");
  if (row + col != 1) return bad(c, "needs .row or .col");
  Space sp = Space::kGeneric;
  if (take("global"))
    sp = Space::kGlobal;
  else if (take("shared") || take("shared::cta"))
    sp = Space::kShared;
  if (!other.empty()) return bad(c, "unsupported modifier ." + std::string(other.front()));
  if (types.size() != 1 || !(matrix == 2 ? (is_f16(types[0]) || is_f32(types[0]))
                                         : (is_f16(types[0]) || is_bf16(types[0]))))
    return bad(c,
               "needs .f16 or .bf16 (a, b), .f16 or .f32 (c, d): tf32, integer and f64 "
               "fragments are not supported");
  const bool f32_frag = is_f32(types[0]), bf16 = is_bf16(types[0]);
  if (c.ops.size() != 2 && c.ops.size() != 3)
    return bad(c, "expects a fragment, an address and an optional stride");
  const size_t vi = load ? 0 : 1, ai = load ? 1 : 0;
  if (!address(c, ai, sp, in)) return false;
  if (c.ops.size() == 3) {
    const TypeInfo u32{Ty::kU32, 32, false, false, false, 0};
    if (!src(c, 2, u32, in.b)) return false;
  } else {
    // No stride: the matrix is dense (its rows, or columns, one after another).
    const uint32_t rows = matrix == 0 ? M : matrix == 1 ? K : M;
    const uint32_t cols = matrix == 0 ? K : N;
    in.b = constant(col ? rows : cols);
  }
  const size_t nregs = matrix == 2 ? (f32_frag ? 8 : 4) : ab_regs(matrix, bf16);
  if (!fragment(c.ops[vi], nregs, f32_frag, load)) return false;
  in.op = load ? Op::kWmmaLoad : Op::kWmmaStore;
  in.mod = static_cast<uint8_t>(matrix | (col ? 4 : 0) | (f32_frag ? 8 : 0) |
                                static_cast<uint32_t>(sp) << 4 | (bf16 ? 0x80 : 0));
  emit(in, line);
  return true;
}

// call[.uni] [(ret),] name[, (args)];  with .param variables as ret and args.
bool Parser::call(Ctx& c, Slot guard, bool guard_neg) {
  PendingCall pc;
  pc.line = c.line;
  auto names = [&](std::vector<std::pair<uint32_t, uint32_t>>& out) {
    if (!advance()) return false;  // '('
    while (!is_punct(')')) {
      if (!out.empty() && !expect_punct(',')) return false;
      if (tok_.kind != Tk::kIdent) return bad(c, "arguments must be .param variables");
      auto it = call_params_.find(tok_.text);
      if (it == call_params_.end())
        return bad(c, "argument " + token_text() + " is not a .param variable");
      if (out.size() >= limits_.max_params) return bad(c, "too many arguments");
      out.push_back(it->second);
      if (!advance()) return false;
    }
    return advance();
  };
  if (is_punct('(')) {
    if (!names(pc.rets)) return false;
    if (!expect_punct(',')) return false;
  }
  if (tok_.kind != Tk::kIdent || tok_.text[0] == '%')
    return bad(c, "indirect calls (through a register) are not supported");
  pc.callee = std::string(tok_.text);
  if (funcs_.count(pc.callee) == 0) return bad(c, "call of undeclared function " + pc.callee);
  if (!advance()) return false;
  if (is_punct(',')) {
    if (!advance()) return false;
    if (!is_punct('(')) return bad(c, "calls with a prototype (indirect calls) are not supported");
    if (!names(pc.args)) return false;
  }
  if (!is_punct(';')) return bad(c, "expected ';' after the call");
  if (!advance()) return false;
  if (pc.callee == "vprintf" && !funcs_.at(pc.callee).has_body) {
    // printf: the sim discards the output (it never reaches the node's logs
    // or anyone else) and returns 0 (no arguments printed).
    if (pc.rets.size() == 1 && pc.rets[0].second >= 4) {
      Inst st;
      st.guard = guard;
      st.neg = guard_neg ? 1 : 0;
      st.op = Op::kStLocal;
      st.mod = 2 | 2 << 4;
      st.a = kSlotZero;
      st.b = kSlotZero;
      st.imm = pc.rets[0].first;
      emit(st, c.line);
    }
    return true;
  }
  if (pc.callee == "__assertfail" && !funcs_.at(pc.callee).has_body) {
    // assert() failing: the launch faults, as on the GPU (the message is not
    // printed, like printf's output).
    Inst t;
    t.guard = guard;
    t.neg = guard_neg ? 1 : 0;
    t.op = Op::kTrap;
    t.mod = 2;
    emit(t, c.line);
    return true;
  }
  pc.index = static_cast<uint32_t>(k_.calls.size());
  k_.calls.emplace_back();
  pending_funcs_.push_back(pc.callee);
  cur_callees_.push_back(pc.callee);
  Inst in;
  in.guard = guard;
  in.neg = guard_neg ? 1 : 0;
  in.op = Op::kCall;
  in.imm = pc.index;
  emit(in, c.line);
  in.op = Op::kCallRet;
  emit(in, c.line);
  calls_.push_back(std::move(pc));
  return true;
}

bool Parser::emit_instruction(Ctx& c, Inst in) {
  // Split the opcode into its base and modifiers.
  std::vector<std::string_view> mods;
  std::string_view base = c.opcode;
  if (auto dot = base.find('.'); dot != std::string_view::npos) {
    std::string_view rest = base.substr(dot + 1);
    base = base.substr(0, dot);
    while (!rest.empty()) {
      auto d = rest.find('.');
      mods.push_back(rest.substr(0, d));
      if (d == std::string_view::npos) break;
      rest = rest.substr(d + 1);
    }
  }
  // Classify modifiers.
  std::vector<TypeInfo> types;
  std::vector<std::string_view> other;
  bool any_half = false;
  for (auto m : mods) {
    if (m.empty()) return bad(c, "empty modifier");
    if (auto t = type_of(m)) {
      types.push_back(*t);
    } else if (auto h = half_type_of(m)) {
      types.push_back(*h);
      any_half = true;
    } else {
      other.push_back(m);
    }
  }
  auto has = [&](std::string_view m) {
    return std::find(other.begin(), other.end(), m) != other.end();
  };
  auto take = [&](std::string_view m) {
    auto it = std::find(other.begin(), other.end(), m);
    if (it == other.end()) return false;
    other.erase(it);
    return true;
  };
  auto no_more = [&]() {
    if (!other.empty()) return bad(c, "unsupported modifier ." + std::string(other.front()));
    return true;
  };
  auto one_type = [&](TypeInfo& t) {
    if (types.size() != 1) return bad(c, "expects exactly one type");
    t = types[0];
    return true;
  };
  const uint32_t line = c.line;
  if (c.has_pair && base != "setp" && base != "shfl" && base != "match")
    return bad(c, "only setp, shfl and match have two destinations ('d|p')");
  auto int_op = [&](Op op, const TypeInfo& t, int nsrc) {
    if (t.is_float) return bad(c, "integer operation on a float type");
    if (!count(c, static_cast<size_t>(nsrc) + 1)) return false;
    in.op = op;
    in.mod = t.bits;
    in.imm = static_cast<int64_t>(mask_of(t.bits));
    if (!dst(c, 0, t, in.d)) return false;
    if (nsrc >= 1 && !src(c, 1, t, in.a)) return false;
    if (nsrc >= 2 && !src(c, 2, t, in.b)) return false;
    if (nsrc >= 3 && !src(c, 3, t, in.c)) return false;
    emit(in, line);
    return true;
  };
  auto float_op = [&](Op op32, Op op64, const TypeInfo& t, int nsrc, bool need_rnd) {
    const bool rn = take("rn");
    uint8_t dir = 0;  // directed rounding: 1 rz, 2 rm, 3 rp
    if (take("rz")) dir = 1;
    if (take("rm")) dir = dir ? 9 : 2;
    if (take("rp")) dir = dir ? 9 : 3;
    if (dir == 9 || (dir && rn)) return bad(c, "two rounding modifiers");
    if (need_rnd && !rn && !dir)
      return bad(c, "a rounding modifier (.rn, .rz, .rm, .rp) is required");
    if (take("ftz")) in.mod |= kFlagFtz;
    if (take("sat")) in.mod |= kFlagSat;
    if (!no_more()) return false;
    if (t.bits == 64 && in.mod != 0) return bad(c, ".ftz/.sat apply to f32 only");
    if (!count(c, static_cast<size_t>(nsrc) + 1)) return false;
    in.op = t.bits == 32 ? op32 : op64;
    if (dir) {
      static const std::pair<Op, uint8_t> kDirOps[] = {
          {Op::kAddF32, 0}, {Op::kSubF32, 1},  {Op::kMulF32, 2}, {Op::kFmaF32, 3},
          {Op::kDivF32, 4}, {Op::kSqrtF32, 5}, {Op::kRcpF32, 6}};
      int sub = -1;
      for (const auto& [o, k] : kDirOps)
        if (o == op32) sub = k;
      if (sub < 0) return bad(c, "this operation takes no rounding modifier");
      in.op = Op::kFDir;
      in.imm = sub | (t.bits == 64 ? 256 : 0);
      in.mod = static_cast<uint8_t>(in.mod | dir << 4);
    }
    if (!dst(c, 0, t, in.d)) return false;
    if (nsrc >= 1 && !src(c, 1, t, in.a)) return false;
    if (nsrc >= 2 && !src(c, 2, t, in.b)) return false;
    if (nsrc >= 3 && !src(c, 3, t, in.c)) return false;
    emit(in, line);
    return true;
  };

  if (base == "set") return set_instruction(c, in, types, other);
  if (base == "wmma") return wmma_instruction(c, in, types, other);
  uint8_t half_atom = 0;  // atom/red .add.noftz on a half type: 1 f16, 2 bf16 (| 4: x2)
  if (any_half && (base == "atom" || base == "red") && types.size() == 1) {
    half_atom = static_cast<uint8_t>(types[0].half | (types[0].bits == 32 ? 4 : 0));
    types[0] =
        TypeInfo{types[0].bits == 16 ? Ty::kU16 : Ty::kU32, types[0].bits, false, false, false, 0};
  } else if (any_half) {
    // Moves, loads, stores and selects only move bits: as .b16 / .b32.
    if (base == "mov" || base == "ld" || base == "st" || base == "selp") {
      for (TypeInfo& x : types)
        if (x.half)
          x = TypeInfo{x.bits == 16 ? Ty::kU16 : Ty::kU32, x.bits, false, false, false, 0};
    } else {
      return half_instruction(c, in, base, types, other);
    }
  }
  TypeInfo t;
  if (base == "addc" || base == "subc" || ((base == "add" || base == "sub") && has("cc"))) {
    const bool cc_out = take("cc");
    if (!one_type(t) || !no_more()) return false;
    if (t.is_float || t.is_pred || t.bits < 32) return bad(c, "needs a 32- or 64-bit integer type");
    if (!count(c, 3)) return false;
    if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, t, in.b)) return false;
    in.op = Op::kAddC;
    in.mod = t.bits;
    in.neg = static_cast<uint8_t>(in.neg | (base.size() == 4 ? 2 : 0) | (cc_out ? 4 : 0) |
                                  (base[0] == 's' ? 8 : 0));
    in.imm = cc_slot();
    emit(in, line);
    return true;
  }
  if (base == "madc" || (base == "mad" && has("cc"))) {
    const bool cc_out = take("cc");
    const bool lo = take("lo"), hi = take("hi");
    if (lo == hi) return bad(c, "needs .lo or .hi");
    if (!one_type(t) || !no_more()) return false;
    if (t.is_float || t.is_pred || t.bits < 32) return bad(c, "needs a 32- or 64-bit integer type");
    if (!count(c, 4)) return false;
    if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, t, in.b) || !src(c, 3, t, in.c))
      return false;
    in.op = Op::kMadC;
    in.mod = static_cast<uint8_t>(t.bits | (hi ? 0x80 : 0) | (t.is_signed ? 0x40 : 0));
    in.neg = static_cast<uint8_t>(in.neg | (base == "madc" ? 2 : 0) | (cc_out ? 4 : 0));
    in.imm = cc_slot();
    emit(in, line);
    return true;
  }
  if (base == "mov") {
    if (!one_type(t) || !no_more() || !count(c, 2)) return false;
    Operand& d = c.ops[0];
    Operand& s = c.ops[1];
    if (d.kind == Operand::kVec || s.kind == Operand::kVec) {
      if ((t.bits != 64 && t.bits != 32) || t.is_float)
        return bad(c, "only mov.b64 / mov.b32 pack or unpack two halves");
      const Operand& v = d.kind == Operand::kVec ? d : s;
      if (v.elems.size() != 2) return bad(c, "expects two halves");
      TypeInfo h{t.bits == 64 ? Ty::kU32 : Ty::kU16, static_cast<uint8_t>(t.bits / 2), false, false,
                 false};
      in.mod = static_cast<uint8_t>(t.bits / 2);
      if (d.kind == Operand::kVec) {
        in.op = Op::kUnpack64;
        if (!src(c, 1, t, in.a)) return false;
        c.ops = {d.elems[0], d.elems[1]};
        if (!dst(c, 0, h, in.d) || !dst(c, 1, h, in.c)) return false;
      } else {
        in.op = Op::kPack64;
        if (!dst(c, 0, t, in.d)) return false;
        std::vector<Operand> halves = s.elems;
        for (const Operand& x : halves)
          if (x.kind != Operand::kReg && x.kind != Operand::kImm)
            return bad(c, "halves must be registers or immediates");
        c.ops = {halves[0], halves[1]};
        if (!src(c, 0, h, in.a) || !src(c, 1, h, in.b)) return false;
      }
      emit(in, line);
      return true;
    }
    if (s.kind == Operand::kReg && s.clock != 0) {
      // mov.u32 %r, %clock / mov.u64 %rd, %clock64 / %globaltimer ...
      if (t.is_float || t.is_pred || t.bits != s.bits)
        return bad(
            c, "reading a clock register needs a " + std::to_string(s.bits) + "-bit integer type");
      if (!dst(c, 0, t, in.d)) return false;
      in.op = s.clock >= 7 ? Op::kLaneMask : Op::kClock;
      in.mod = static_cast<uint8_t>(s.clock >= 7 ? s.clock - 7 : s.clock - 1);
      emit(in, line);
      return true;
    }
    in.op = Op::kMov;
    if (!dst(c, 0, t, in.d)) return false;
    if (s.kind == Operand::kSym) {
      if (t.is_float || t.is_pred || t.bits < 32)
        return bad(c, "a symbol's address needs a 32- or 64-bit integer type");
      const std::string sym(s.sym);
      if (params_.count(sym) != 0)
        return bad(c, "taking the address of parameter " + sym + " is not supported");
      if (global_addr_.count(sym) != 0 && t.bits != 64)
        return bad(c, "the address of a module-scope variable needs a 64-bit type");
      const Slot slot = new_slot(0);
      if (auto lt = local_.find(sym); lt != local_.end()) {
        if (lt->second != 0) k_.init_values.emplace_back(slot, lt->second);
      } else {
        fixups_.push_back(Fixup{Fixup::kSlotValue, slot, sym, 0, line});
      }
      in.a = slot;
      emit(in, line);
      return true;
    }
    if (!src(c, 1, t, in.a)) return false;
    emit(in, line);
    return true;
  }
  if (base == "add" || base == "sub") {
    if (!one_type(t)) return false;
    if (t.is_pred) return bad(c, "predicate type");
    if (t.is_float)
      return float_op(base == "add" ? Op::kAddF32 : Op::kSubF32,
                      base == "add" ? Op::kAddF64 : Op::kSubF64, t, 2, false);
    if (t.bits < 16) return bad(c, "8-bit arithmetic types are not valid");
    if (!no_more()) return false;
    return int_op(base == "add" ? Op::kAdd : Op::kSub, t, 2);
  }
  if (base == "mul" || base == "mad") {
    if (!one_type(t)) return false;
    if (t.is_pred) return bad(c, "predicate type");
    const bool mad = base == "mad";
    if (t.is_float)
      return float_op(mad ? Op::kFmaF32 : Op::kMulF32, mad ? Op::kFmaF64 : Op::kMulF64, t,
                      mad ? 3 : 2, mad && t.bits == 64);
    if (t.bits < 16) return bad(c, "8-bit arithmetic types are not valid");
    const bool lo = take("lo"), hi = take("hi"), wide = take("wide");
    if (!no_more()) return false;
    if (lo + hi + wide != 1) return bad(c, "needs exactly one of .lo, .hi, .wide");
    if (wide) {
      if (t.bits == 64) return bad(c, ".wide needs a 16- or 32-bit type");
      TypeInfo w = t;
      w.bits = static_cast<uint8_t>(t.bits * 2);
      if (!count(c, mad ? 4 : 3)) return false;
      in.op = mad ? (t.is_signed ? Op::kMadWideS : Op::kMadWideU)
                  : (t.is_signed ? Op::kMulWideS : Op::kMulWideU);
      in.mod = t.bits;
      in.imm = static_cast<int64_t>(mask_of(w.bits));
      if (!dst(c, 0, w, in.d) || !src(c, 1, t, in.a) || !src(c, 2, t, in.b)) return false;
      if (mad && !src(c, 3, w, in.c)) return false;
      emit(in, line);
      return true;
    }
    if (lo) return int_op(mad ? Op::kMadLo : Op::kMulLo, t, mad ? 3 : 2);
    return int_op(
        mad ? (t.is_signed ? Op::kMadHiS : Op::kMadHiU) : (t.is_signed ? Op::kMulHiS : Op::kMulHiU),
        t, mad ? 3 : 2);
  }
  if (base == "fma") {
    if (!one_type(t) || !t.is_float) return bad(c, "fma needs .f32 or .f64");
    return float_op(Op::kFmaF32, Op::kFmaF64, t, 3, true);
  }
  if (base == "div") {
    if (!one_type(t)) return false;
    if (t.is_float) {
      // div.approx.f32 and div.full.f32 are within 2 ulp; the sim computes
      // the correctly rounded quotient, which is within that bound.
      const bool approx = take("approx"), full = take("full");
      if (t.bits == 64 && (approx || full)) return bad(c, "div.f64 needs .rn");
      return float_op(Op::kDivF32, Op::kDivF64, t, 2, !(approx || full));
    }
    if (t.is_pred || t.bits < 16) return bad(c, "bad type");
    if (!no_more()) return false;
    return int_op(t.is_signed ? Op::kDivS : Op::kDivU, t, 2);
  }
  if (base == "rem") {
    if (!one_type(t) || t.is_float || t.is_pred || t.bits < 16)
      return bad(c, "rem needs an integer type");
    if (!no_more()) return false;
    return int_op(t.is_signed ? Op::kRemS : Op::kRemU, t, 2);
  }
  if (base == "min" || base == "max") {
    if (!one_type(t)) return false;
    if (t.is_float) {
      if (has("NaN") || has("xorsign")) return bad(c, ".NaN / .xorsign are not supported");
      return float_op(base == "min" ? Op::kMinF32 : Op::kMaxF32,
                      base == "min" ? Op::kMinF64 : Op::kMaxF64, t, 2, false);
    }
    if (t.is_pred || t.bits < 16) return bad(c, "bad type");
    if (!no_more()) return false;
    if (base == "min") return int_op(t.is_signed ? Op::kMinS : Op::kMinU, t, 2);
    return int_op(t.is_signed ? Op::kMaxS : Op::kMaxU, t, 2);
  }
  if (base == "neg" || base == "abs") {
    if (!one_type(t)) return false;
    if (t.is_float)
      return float_op(base == "neg" ? Op::kNegF32 : Op::kAbsF32,
                      base == "neg" ? Op::kNegF64 : Op::kAbsF64, t, 1, false);
    if (t.is_pred || t.bits < 16 || (!t.is_signed && base == "abs"))
      return bad(c, "needs a signed integer type");
    if (!no_more()) return false;
    return int_op(base == "neg" ? Op::kNeg : Op::kAbs, t, 1);
  }
  if (base == "and" || base == "or" || base == "xor" || base == "not" || base == "cnot") {
    if (!one_type(t) || !no_more()) return false;
    if (t.is_float || (!t.is_pred && t.bits < 16))
      return bad(c, "needs a .pred or .b16/.b32/.b64 type");
    if (base == "not") return int_op(Op::kNot, t, 1);
    if (base == "cnot") return int_op(Op::kCnot, t, 1);
    return int_op(base == "and" ? Op::kAnd : base == "or" ? Op::kOr : Op::kXor, t, 2);
  }
  if (base == "shl" || base == "shr") {
    if (!one_type(t) || !no_more()) return false;
    if (t.is_float || t.is_pred || t.bits < 16) return bad(c, "needs a 16/32/64-bit integer type");
    if (!count(c, 3)) return false;
    in.op = base == "shl" ? Op::kShl : (t.is_signed ? Op::kShrS : Op::kShrU);
    in.mod = t.bits;
    in.imm = static_cast<int64_t>(mask_of(t.bits));
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, u32, in.b)) return false;
    emit(in, line);
    return true;
  }
  if (base == "copysign") {
    if (!one_type(t) || !no_more() || !t.is_float) return bad(c, "needs .f32 or .f64");
    if (!count(c, 3)) return false;
    in.op = Op::kCopysign;
    in.mod = t.bits;
    if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, t, in.b)) return false;
    emit(in, line);
    return true;
  }
  if (base == "bfind") {
    const bool shiftamt = take("shiftamt");
    if (!one_type(t) || !no_more()) return false;
    if (t.is_float || t.is_pred || t.bits < 32) return bad(c, "needs .u32, .s32, .u64 or .s64");
    if (!count(c, 2)) return false;
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    if (!dst(c, 0, u32, in.d) || !src(c, 1, t, in.a)) return false;
    in.op = Op::kBfind;
    in.mod = static_cast<uint8_t>(t.bits | (t.is_signed ? 0x80 : 0));
    in.c = shiftamt ? 1 : 0;
    emit(in, line);
    return true;
  }
  if (base == "fns") {
    // fns.b32 d, mask, base, offset: find the offset-th set bit of mask from base.
    if (!one_type(t) || !no_more()) return false;
    if (t.is_float || t.is_pred || t.bits != 32) return bad(c, "needs .b32");
    if (!count(c, 4)) return false;
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    const TypeInfo s32{Ty::kS32, 32, false, true, false};
    if (!dst(c, 0, u32, in.d) || !src(c, 1, t, in.a) || !src(c, 2, u32, in.b) ||
        !src(c, 3, s32, in.c))
      return false;
    in.op = Op::kFns;
    emit(in, line);
    return true;
  }
  if (base == "bfe" || base == "bfi") {
    if (!one_type(t) || !no_more()) return false;
    if (t.is_float || t.is_pred || t.bits < 32) return bad(c, "needs a 32- or 64-bit integer type");
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    in.mod = static_cast<uint8_t>(t.bits | (t.is_signed && base == "bfe" ? 0x80 : 0));
    if (base == "bfe") {
      if (!count(c, 4)) return false;
      if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, u32, in.b) ||
          !src(c, 3, u32, in.c))
        return false;
      in.op = Op::kBfe;
    } else {
      if (!count(c, 5)) return false;
      Slot len = 0;
      if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, t, in.b) ||
          !src(c, 3, u32, in.c) || !src(c, 4, u32, len))
        return false;
      in.op = Op::kBfi;
      in.imm = len;
    }
    emit(in, line);
    return true;
  }
  if (base == "shf") {
    const bool l = take("l"), r = take("r");
    const bool wrap = take("wrap"), clamp = take("clamp");
    if (l == r || wrap == clamp) return bad(c, "needs .l or .r and .wrap or .clamp");
    if (!one_type(t) || !no_more()) return false;
    if (t.bits != 32 || t.is_float || t.is_pred) return bad(c, "needs .b32");
    if (!count(c, 4)) return false;
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    if (!dst(c, 0, u32, in.d) || !src(c, 1, u32, in.a) || !src(c, 2, u32, in.b) ||
        !src(c, 3, u32, in.c))
      return false;
    in.op = Op::kShf;
    in.mod = static_cast<uint8_t>((r ? 2 : 0) | (clamp ? 1 : 0));
    emit(in, line);
    return true;
  }
  if (base == "lop3") {
    if (!one_type(t) || !no_more()) return false;
    if (t.bits != 32 || t.is_float || t.is_pred) return bad(c, "needs .b32");
    if (c.has_pair) return bad(c, "the predicate form of lop3 is not supported");
    if (!count(c, 5)) return false;
    if (c.ops[4].kind != Operand::kImm || c.ops[4].lit.kind != Literal::kInt ||
        c.ops[4].lit.bits > 255)
      return bad(c, "the lookup table must be an immediate 0..255");
    if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, t, in.b) || !src(c, 3, t, in.c))
      return false;
    in.op = Op::kLop3;
    in.imm = static_cast<int64_t>(c.ops[4].lit.bits);
    emit(in, line);
    return true;
  }
  if (base == "prmt") {
    if (!one_type(t)) return false;
    if (!other.empty()) return bad(c, "only the default prmt mode is supported");
    if (t.bits != 32 || t.is_float || t.is_pred) return bad(c, "needs .b32");
    if (!count(c, 4)) return false;
    if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, t, in.b) || !src(c, 3, t, in.c))
      return false;
    in.op = Op::kPrmt;
    emit(in, line);
    return true;
  }
  if (base == "sad") {
    if (!one_type(t) || !no_more()) return false;
    if (t.is_float || t.is_pred || t.bits < 16) return bad(c, "needs an integer type");
    if (!count(c, 4)) return false;
    if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, t, in.b) || !src(c, 3, t, in.c))
      return false;
    in.op = Op::kSad;
    in.mod = static_cast<uint8_t>(t.bits | (t.is_signed ? 0x80 : 0));
    in.imm = static_cast<int64_t>(mask_of(t.bits));
    emit(in, line);
    return true;
  }
  if (base == "dp4a" || base == "dp2a") {
    const bool hi = take("hi"), lo = take("lo");
    if (base == "dp2a" && hi == lo) return bad(c, "needs .lo or .hi");
    if (!no_more()) return false;
    if (types.size() != 2) return bad(c, "needs two types (.u32/.s32 each)");
    for (const TypeInfo& x : types)
      if (x.bits != 32 || x.is_float || x.is_pred) return bad(c, "needs .u32 or .s32 types");
    if (!count(c, 4)) return false;
    const bool sa = types[0].is_signed, sb = types[1].is_signed;
    const TypeInfo dt{(sa || sb) ? Ty::kS32 : Ty::kU32, 32, false, sa || sb, false};
    if (!dst(c, 0, dt, in.d) || !src(c, 1, types[0], in.a) || !src(c, 2, types[1], in.b) ||
        !src(c, 3, dt, in.c))
      return false;
    in.op = base == "dp4a" ? Op::kDp4a : Op::kDp2a;
    in.mod = static_cast<uint8_t>((sa ? 1 : 0) | (sb ? 2 : 0) | (hi ? 4 : 0));
    emit(in, line);
    return true;
  }
  if (base == "popc" || base == "clz" || base == "brev") {
    if (!one_type(t) || !no_more()) return false;
    if (t.is_float || t.is_pred || t.bits < 32) return bad(c, "needs .b32 or .b64");
    if (!count(c, 2)) return false;
    in.op = base == "popc" ? Op::kPopc : base == "clz" ? Op::kClz : Op::kBrev;
    in.mod = t.bits;
    in.imm = static_cast<int64_t>(mask_of(t.bits));
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    if (!dst(c, 0, base == "brev" ? t : u32, in.d) || !src(c, 1, t, in.a)) return false;
    emit(in, line);
    return true;
  }
  if (base == "selp") {
    if (!one_type(t) || !no_more() || !count(c, 4)) return false;
    if (t.is_pred) return bad(c, "bad type");
    in.op = Op::kSelp;
    const TypeInfo p{Ty::kPred, 1, false, false, true};
    if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, t, in.b) || !src(c, 3, p, in.c))
      return false;
    emit(in, line);
    return true;
  }
  if (base == "setp") {
    if (!one_type(t)) return false;
    if (t.is_pred || t.bits < 16) return bad(c, "bad type");
    static const std::pair<std::string_view, Cmp> kCmps[] = {
        {"eq", Cmp::kEq},   {"ne", Cmp::kNe},   {"lt", Cmp::kLt},   {"le", Cmp::kLe},
        {"gt", Cmp::kGt},   {"ge", Cmp::kGe},   {"lo", Cmp::kLt},   {"ls", Cmp::kLe},
        {"hi", Cmp::kGt},   {"hs", Cmp::kGe},   {"equ", Cmp::kEqu}, {"neu", Cmp::kNeu},
        {"ltu", Cmp::kLtu}, {"leu", Cmp::kLeu}, {"gtu", Cmp::kGtu}, {"geu", Cmp::kGeu},
        {"num", Cmp::kNum}, {"nan", Cmp::kNan},
    };
    std::optional<Cmp> cmp;
    bool unsigned_cmp = false;
    for (const auto& [name, k] : kCmps) {
      if (take(name)) {
        if (cmp) return bad(c, "two comparisons");
        cmp = k;
        unsigned_cmp = name == "lo" || name == "ls" || name == "hi" || name == "hs";
      }
    }
    if (!cmp) return bad(c, "missing comparison");
    if (!t.is_float && *cmp > Cmp::kGe) return bad(c, "unordered comparisons need a float type");
    if (t.is_float && unsigned_cmp) return bad(c, "lo/ls/hi/hs need an integer type");
    BoolOp bop = BoolOp::kNone;
    if (take("and"))
      bop = BoolOp::kAnd;
    else if (take("or"))
      bop = BoolOp::kOr;
    else if (take("xor"))
      bop = BoolOp::kXor;
    if (t.is_float && take("ftz")) in.mod |= 0;  // ftz compares: subnormals equal zero (see docs)
    if (!no_more()) return false;
    if (!count(c, bop == BoolOp::kNone ? 3 : 4)) return false;
    const TypeInfo p{Ty::kPred, 1, false, false, true};
    if (!dst(c, 0, p, in.d) || !src(c, 1, t, in.a) || !src(c, 2, t, in.b)) return false;
    bool cneg = false;
    if (bop != BoolOp::kNone) {
      cneg = c.ops[3].negated;
      c.ops[3].negated = false;
      if (!src(c, 3, p, in.c)) return false;
    }
    in.op = t.is_float ? (t.bits == 32 ? Op::kSetpF32 : Op::kSetpF64)
                       : ((t.is_signed && !unsigned_cmp) ? Op::kSetpS : Op::kSetpU);
    if (!t.is_float) in.mod = t.bits;
    in.imm = static_cast<int64_t>(static_cast<uint32_t>(*cmp) | static_cast<uint32_t>(bop) << 8 |
                                  (cneg ? 1u << 10 : 0u));
    if (c.has_pair) {
      // setp p|q: q gets the complement of the comparison, combined alike.
      Inst q = in;
      Ctx pc = sub_ctx(c, c.pair);
      if (!dst(pc, 0, p, q.d)) return false;
      if (bop != BoolOp::kNone && (in.c == in.d || in.c == q.d))
        return bad(c, "the predicate operand may not be one of the destinations");
      static const Cmp kInverse[] = {Cmp::kNe,  Cmp::kEq,  Cmp::kGe,  Cmp::kGt,  Cmp::kLe,
                                     Cmp::kLt,  Cmp::kNeu, Cmp::kEqu, Cmp::kGeu, Cmp::kGtu,
                                     Cmp::kLeu, Cmp::kLtu, Cmp::kNan, Cmp::kNum};
      Cmp inv = kInverse[static_cast<int>(*cmp)];
      if (t.is_float) {
        // The complement of an ordered comparison is the unordered opposite.
        static const Cmp kFloatInverse[] = {Cmp::kNeu, Cmp::kEqu, Cmp::kGeu, Cmp::kGtu, Cmp::kLeu,
                                            Cmp::kLtu, Cmp::kNe,  Cmp::kEq,  Cmp::kGe,  Cmp::kGt,
                                            Cmp::kLe,  Cmp::kLt,  Cmp::kNan, Cmp::kNum};
        inv = kFloatInverse[static_cast<int>(*cmp)];
      }
      q.imm = (in.imm & ~int64_t{0xff}) | static_cast<int64_t>(inv);
      emit(q, line);
    }
    emit(in, line);
    return true;
  }
  if (base == "cvt") {
    if (types.size() != 2) return bad(c, "expects a destination and a source type");
    const TypeInfo dt = types[0], st = types[1];
    if (dt.is_pred || st.is_pred) return bad(c, "predicate conversions are not supported");
    static const std::pair<std::string_view, Rnd> kRnd[] = {
        {"rn", Rnd::kRn},   {"rz", Rnd::kRz},   {"rm", Rnd::kRm},   {"rp", Rnd::kRp},
        {"rni", Rnd::kRni}, {"rzi", Rnd::kRzi}, {"rmi", Rnd::kRmi}, {"rpi", Rnd::kRpi},
    };
    Rnd rnd = Rnd::kNone;
    for (const auto& [name, r] : kRnd)
      if (take(name)) {
        if (rnd != Rnd::kNone) return bad(c, "two rounding modifiers");
        rnd = r;
      }
    uint8_t flags = 0;
    if (take("ftz")) flags |= kFlagFtz;
    if (take("sat")) flags |= kFlagSat;
    if (!no_more()) return false;
    if (!count(c, 2)) return false;
    const bool int_round = rnd >= Rnd::kRni;
    if (dt.is_float && st.is_float) {
      if (dt.bits == st.bits && rnd != Rnd::kNone && !int_round)
        return bad(c, "same-size float conversion takes an integer rounding (.rni etc.)");
      if (dt.bits < st.bits && int_round) return bad(c, "f64 -> f32 takes .rn, .rz, .rm or .rp");
      if (dt.bits < st.bits && rnd == Rnd::kNone)
        return bad(c, "f64 -> f32 needs a rounding modifier");
      if (dt.bits > st.bits && rnd != Rnd::kNone)
        return bad(c, "f32 -> f64 is exact and takes no rounding modifier");
    } else if (dt.is_float) {
      if (rnd == Rnd::kNone || int_round) return bad(c, "int -> float needs .rn, .rz, .rm or .rp");
    } else if (st.is_float) {
      if (!int_round) return bad(c, "float -> int needs .rni, .rzi, .rmi or .rpi");
    } else {
      if (rnd != Rnd::kNone) return bad(c, "int -> int conversion takes no rounding modifier");
      if (flags & kFlagFtz) return bad(c, ".ftz on an integer conversion");
      if (!(flags & kFlagSat)) {
        in.op = Op::kCvtInt;
        in.mod = st.bits;
        in.c = st.is_signed ? 1 : 0;
        in.imm = static_cast<int64_t>(mask_of(dt.bits));
        if (!dst(c, 0, dt, in.d, true) || !src(c, 1, st, in.a, true)) return false;
        emit(in, line);
        return true;
      }
    }
    in.op = Op::kCvt;
    in.mod = static_cast<uint8_t>(static_cast<uint8_t>(rnd) | flags << 4);
    in.b = static_cast<Slot>(st.ty);
    in.c = static_cast<Slot>(dt.ty);
    if (!dst(c, 0, dt, in.d, !dt.is_float) || !src(c, 1, st, in.a, !st.is_float)) return false;
    emit(in, line);
    return true;
  }
  if (base == "cvta") {
    const bool to = take("to");
    Space sp;
    if (take("global"))
      sp = Space::kGlobal;
    else if (take("shared"))
      sp = Space::kShared;
    else if (take("local"))
      sp = Space::kLocal;
    else if (take("const"))
      sp = Space::kGlobal;  // .const addresses are generic addresses in the sim
    else
      return bad(c, "needs .global, .const, .shared or .local");
    if (!one_type(t) || !no_more()) return false;
    if (t.bits != 64 || t.is_float || t.is_signed) return bad(c, "needs .u64");
    if (!count(c, 2)) return false;
    if (!dst(c, 0, t, in.d)) return false;
    if (c.ops[1].kind == Operand::kSym)
      return bad(c, "symbol operands are not supported; mov the address first");
    if (!src(c, 1, t, in.a)) return false;
    if (sp == Space::kGlobal) {
      in.op = Op::kMov;  // sim global addresses are generic addresses
    } else {
      in.op = to ? Op::kSub : Op::kAdd;
      in.mod = 64;
      in.imm = -1;
      in.b = constant(sp == Space::kShared ? kSharedWindow : kLocalWindow);
    }
    emit(in, line);
    return true;
  }
  if (base == "ld" || base == "st" || base == "atom" || base == "red") {
    const bool is_ld = base == "ld", is_st = base == "st";
    Space sp = Space::kGeneric;
    if (take("global"))
      sp = Space::kGlobal;
    else if (take("shared"))
      sp = Space::kShared;
    else if (take("local"))
      sp = Space::kLocal;
    else if (take("param"))
      sp = Space::kParam;
    if (has("tex")) return bad(c, "the .tex space is not supported");
    if (take("const")) {
      // .const variables live in the module's window and read as global.
      if (!is_ld) return bad(c, "the .const space is read-only");
      sp = Space::kGlobal;
    }
    if (take("shared::cta")) sp = Space::kShared;
    // Cache, ordering and scope qualifiers do not change results here: the
    // sim runs one block per worker and global accesses are atomic.
    // A loop around a volatile/acquire load or an atomic may be a spin
    // loop (kBraSpin).
    const bool spin_load = has("volatile") || has("acquire") || has("relaxed");
    for (auto q : {"volatile", "relaxed", "acquire", "release", "acq_rel", "weak", "nc", "ca", "cg",
                   "cs", "lu", "cv", "wb", "wt", "cta", "gpu", "sys"})
      (void)take(q);
    if (spin_load || !(is_ld || is_st))
      spin_insts_.push_back(static_cast<uint32_t>(k_.code.size()));
    if (sp == Space::kParam && (is_ld || is_st)) {
      // A call site's .param variables and a function's parameters are
      // local memory.
      const size_t ai = is_ld ? 1 : 0;
      if (ai < c.ops.size() && c.ops[ai].kind == Operand::kAddr && !c.ops[ai].sym.empty() &&
          call_params_.count(c.ops[ai].sym) != 0)
        sp = Space::kLocal;
    }
    if (sp == Space::kParam && !is_ld) return bad(c, "st.param needs a call's .param variable");
    if (!one_type(t)) return false;
    if (t.is_pred) return bad(c, "predicate type");
    if (is_ld || is_st) {
      uint32_t nvec = 1;
      if (take("v2"))
        nvec = 2;
      else if (take("v4"))
        nvec = 4;
      if (!no_more()) return false;
      if (!count(c, 2)) return false;
      if (!address(c, is_ld ? 1 : 0, sp, in)) return false;
      const uint32_t log2 = t.bits == 8 ? 0 : t.bits == 16 ? 1 : t.bits == 32 ? 2 : 3;
      if (nvec * (t.bits / 8) > 16) return bad(c, "vector access of more than 16 bytes");
      in.mod = static_cast<uint8_t>(log2 | ((t.is_signed && !t.is_float) ? kLdSigned : 0));
      const size_t vi = is_ld ? 0 : 1;
      if (nvec == 1) {
        if (c.ops[vi].kind == Operand::kVec) return bad(c, "vector operand without .v2/.v4");
        Slot r;
        if (is_ld) {
          if (!dst(c, vi, t, r, !t.is_float)) return false;
          in.d = r;
        } else {
          if (!src(c, vi, t, r, !t.is_float)) return false;
          in.b = r;
        }
        const uint8_t regbits = c.ops[vi].kind == Operand::kReg ? c.ops[vi].bits : t.bits;
        const uint32_t rl = regbits <= 8 ? 0 : regbits == 16 ? 1 : regbits == 32 ? 2 : 3;
        in.mod |= static_cast<uint8_t>(rl << 4);
        static const Op kLd[] = {Op::kLdGlobal, Op::kLdShared, Op::kLdLocal, Op::kLdParam,
                                 Op::kLdGeneric};
        static const Op kSt[] = {Op::kStGlobal, Op::kStShared, Op::kStLocal, Op::kNop,
                                 Op::kStGeneric};
        in.op = is_ld ? kLd[static_cast<int>(sp)] : kSt[static_cast<int>(sp)];
        emit(in, line);
        return true;
      }
      const Operand& v = c.ops[vi];
      if (v.kind != Operand::kVec || v.elems.size() != nvec)
        return bad(c, "expects a vector of " + std::to_string(nvec) + " registers");
      in.op = is_ld ? Op::kLdVec : Op::kStVec;
      in.b = static_cast<Slot>(sp);
      in.c = static_cast<Slot>(k_.vec_slots.size());
      in.mod = static_cast<uint8_t>(in.mod | (nvec == 2 ? 1 : 2) << 6);
      uint32_t rl = 0;
      for (size_t e = 0; e < v.elems.size(); ++e) {
        Ctx ec = sub_ctx(c, v.elems[e]);
        Slot r;
        if (is_ld) {
          if (!dst(ec, 0, t, r, !t.is_float)) return false;
        } else {
          if (v.elems[e].kind == Operand::kSink) return bad(c, "'_' in a store");
          if (!src(ec, 0, t, r, !t.is_float)) return false;
        }
        const uint8_t rb = v.elems[e].kind == Operand::kReg ? v.elems[e].bits : t.bits;
        const uint32_t l = rb <= 8 ? 0 : rb == 16 ? 1 : rb == 32 ? 2 : 3;
        if (e > 0 && l != rl) return bad(c, "vector registers of different sizes");
        rl = l;
        k_.vec_slots.push_back(r);
      }
      in.mod = static_cast<uint8_t>(in.mod | rl << 4);
      emit(in, line);
      return true;
    }
    // atom / red
    if (sp == Space::kLocal || sp == Space::kParam)
      return bad(c, "atomics need the global, shared or generic space");
    static const std::pair<std::string_view, AtomOp> kAops[] = {
        {"add", AtomOp::kAdd},   {"min", AtomOp::kMin}, {"max", AtomOp::kMax},
        {"exch", AtomOp::kExch}, {"cas", AtomOp::kCas}, {"and", AtomOp::kAnd},
        {"or", AtomOp::kOr},     {"xor", AtomOp::kXor}, {"inc", AtomOp::kInc},
        {"dec", AtomOp::kDec},
    };
    std::optional<AtomOp> aop;
    for (const auto& [name, k] : kAops)
      if (take(name)) {
        if (aop) return bad(c, "two atomic operations");
        aop = k;
      }
    if (!aop) return bad(c, "missing atomic operation");
    if (half_atom) {
      // atom/red.add.noftz.{f16,bf16,f16x2,bf16x2}: round to nearest even
      if (*aop != AtomOp::kAdd || !take("noftz"))
        return bad(c, "f16/bf16 atomics support .add.noftz only");
      aop = AtomOp::kAddHalf;
    }
    if (!no_more()) return false;
    if (t.bits < 32 && !half_atom && !(t.bits == 16 && *aop == AtomOp::kCas && !t.is_float))
      return bad(c, "atomics need a 32- or 64-bit type (16 bits: cas.b16 and f16/bf16 add)");
    if (t.is_float && *aop != AtomOp::kAdd && *aop != AtomOp::kExch)
      return bad(c, "float atomics support add and exch only");
    if ((*aop == AtomOp::kInc || *aop == AtomOp::kDec) && (t.bits != 32 || t.is_signed))
      return bad(c, "inc/dec need .u32");
    if (base == "red" && *aop == AtomOp::kCas) return bad(c, "red.cas does not exist");
    const size_t first = base == "atom" ? 1 : 0;
    const size_t n = first + 2 + (*aop == AtomOp::kCas ? 1 : 0);
    if (!count(c, n)) return false;
    if (base == "atom") {
      if (!dst(c, 0, t, in.d)) return false;
    }
    if (!address(c, first, sp, in)) return false;
    if (!src(c, first + 1, t, in.b)) return false;
    if (*aop == AtomOp::kCas && !src(c, first + 2, t, in.c)) return false;
    in.op = Op::kAtom;
    Ty aty = t.ty;
    if (half_atom)  // the format travels as the Ty: see AtomOp::kAddHalf
      aty = (half_atom & 4) ? ((half_atom & 3) == 2 ? Ty::kS32 : Ty::kU32)
                            : ((half_atom & 3) == 2 ? Ty::kS16 : Ty::kU16);
    in.mod = static_cast<uint8_t>(static_cast<uint8_t>(*aop) | static_cast<uint8_t>(aty) << 4);
    in.neg = static_cast<uint8_t>(in.neg | static_cast<uint8_t>(sp) << 1);
    emit(in, line);
    return true;
  }
  if (base == "cp" && take("async")) {
    // cp.async.{ca,cg}.shared{::cta}.global{.L2::cache_hint}{.L2::{64,128,256}B}
    //   [dst], [src], cp-size{, src-size | ignore-src}{, cache-policy}
    // cp.async.commit_group, cp.async.wait_group N, cp.async.wait_all
    if (take("commit_group") || take("wait_all")) {
      if (!no_more() || !types.empty() || !c.ops.empty()) return bad(c, "takes no operands");
      in.op = Op::kNop;
      emit(in, line);
      return true;
    }
    if (take("wait_group")) {
      if (!no_more() || !types.empty() || !count(c, 1) || c.ops[0].kind != Operand::kImm ||
          c.ops[0].lit.kind != Literal::kInt)
        return bad(c, "expects cp.async.wait_group N (an integer constant)");
      in.op = Op::kNop;
      emit(in, line);
      return true;
    }
    const bool ca = take("ca"), cg = take("cg");
    if (ca == cg) return bad(c, "needs .ca or .cg (cp.async.bulk, .mbarrier are not supported)");
    if (!take("shared") && !take("shared::cta"))
      return bad(c, "the destination must be the .shared space");
    if (!take("global")) return bad(c, "the source must be the .global space");
    const bool hint = take("L2::cache_hint");
    for (auto q : {"L2::64B", "L2::128B", "L2::256B"}) (void)take(q);
    if (!no_more() || !types.empty()) return false;
    const size_t base_ops = 3 + (hint ? 1 : 0);
    if (c.ops.size() != base_ops && c.ops.size() != base_ops + 1)
      return bad(c, "expects [dst], [src], cp-size{, src-size | ignore-src}{, cache-policy}");
    const Operand& sz = c.ops[2];
    if (sz.kind != Operand::kImm || sz.lit.kind != Literal::kInt ||
        (sz.lit.bits != 4 && sz.lit.bits != 8 && sz.lit.bits != 16))
      return bad(c, "cp-size must be 4, 8 or 16");
    const auto cp = static_cast<uint32_t>(sz.lit.bits);
    if (cg && cp != 16) return bad(c, "cp.async.cg needs cp-size 16");
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    const TypeInfo u64{Ty::kU64, 64, false, false, false};
    const TypeInfo p{Ty::kPred, 1, false, false, true};
    if (hint) {
      Slot policy = 0;
      if (!src(c, c.ops.size() - 1, u64, policy)) return false;
    }
    // The source address first (into a fresh slot), then the copy.
    Inst lea = in;
    lea.op = Op::kLea;
    if (!address(c, 1, Space::kGlobal, lea)) return false;
    lea.d = new_slot(0);
    emit(lea, line);
    in.op = Op::kCpAsync;
    in.b = lea.d;
    in.mod = static_cast<uint8_t>(cp);
    if (!address(c, 0, Space::kShared, in)) return false;
    if (c.ops.size() == base_ops + 1) {
      const Operand& x = c.ops[3];
      if (x.kind == Operand::kReg && x.bits == 1) {
        if (x.negated) return bad(c, "a negated ignore-src predicate is not supported");
        if (!src(c, 3, p, in.c)) return false;
        in.mod |= 0x80;
      } else if (!src(c, 3, u32, in.c, true)) {
        return false;
      }
    } else {
      in.c = constant(cp);
    }
    emit(in, line);
    return true;
  }
  if (base == "shfl") {
    if (!take("sync"))
      return bad(c, "only shfl.sync is supported (shfl without .sync is not valid for sm_70+)");
    static const std::pair<std::string_view, uint8_t> kModes[] = {
        {"up", 0}, {"down", 1}, {"bfly", 2}, {"idx", 3}};
    int mode = -1;
    for (const auto& [name, m] : kModes)
      if (take(name)) {
        if (mode >= 0) return bad(c, "two modes");
        mode = m;
      }
    if (mode < 0) return bad(c, "needs .up, .down, .bfly or .idx");
    if (!one_type(t) || !no_more()) return false;
    if (t.bits != 32 || t.is_pred) return bad(c, "needs .b32");
    if (!count(c, 5)) return false;
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    const TypeInfo p{Ty::kPred, 1, false, false, true};
    Slot mm = 0, pd = kSlotSink;
    if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, u32, in.b) ||
        !src(c, 3, u32, in.c) || !src(c, 4, u32, mm))
      return false;
    if (c.has_pair) {
      Ctx pc = sub_ctx(c, c.pair);
      if (!dst(pc, 0, p, pd)) return false;
    }
    in.op = Op::kShfl;
    in.mod = static_cast<uint8_t>(mode);
    in.imm = static_cast<int64_t>(uint64_t{mm} | uint64_t{pd} << 32);
    emit(in, line);
    return true;
  }
  if (base == "vote") {
    if (!take("sync"))
      return bad(c, "only vote.sync is supported (vote without .sync is not valid for sm_70+)");
    int mode = -1;
    if (take("all")) mode = 0;
    if (take("any")) mode = mode < 0 ? 1 : 9;
    if (take("uni")) mode = mode < 0 ? 2 : 9;
    if (take("ballot")) mode = mode < 0 ? 3 : 9;
    if (mode < 0 || mode > 3) return bad(c, "needs one of .all, .any, .uni, .ballot");
    if (!one_type(t) || !no_more()) return false;
    if (mode == 3 ? (t.bits != 32 || t.is_pred) : !t.is_pred)
      return bad(c, mode == 3 ? "ballot needs .b32" : "needs .pred");
    if (!count(c, 3)) return false;
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    const TypeInfo p{Ty::kPred, 1, false, false, true};
    const bool neg = c.ops[1].negated;
    c.ops[1].negated = false;
    if (!dst(c, 0, t, in.d) || !src(c, 1, p, in.a) || !src(c, 2, u32, in.b)) return false;
    in.op = Op::kVote;
    in.mod = static_cast<uint8_t>(mode | (neg ? 4 : 0));
    emit(in, line);
    return true;
  }
  if (base == "match") {
    const bool any = take("any"), all = take("all");
    if (!take("sync")) return bad(c, "needs .sync");
    if (any == all) return bad(c, "needs .any or .all");
    if (!one_type(t) || !no_more()) return false;
    if ((t.bits != 32 && t.bits != 64) || t.is_pred || t.is_float)
      return bad(c, "needs .b32 or .b64");
    if (!count(c, 3)) return false;
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    const TypeInfo p{Ty::kPred, 1, false, false, true};
    if (!dst(c, 0, u32, in.d) || !src(c, 1, t, in.a) || !src(c, 2, u32, in.b)) return false;
    in.c = kSlotSink;
    if (c.has_pair) {
      if (any) return bad(c, "match.any has no predicate destination");
      Ctx pc = sub_ctx(c, c.pair);
      if (!dst(pc, 0, p, in.c)) return false;
    }
    in.op = Op::kMatch;
    in.mod = all ? 1 : 0;
    emit(in, line);
    return true;
  }
  if (base == "redux") {
    if (!take("sync")) return bad(c, "needs .sync");
    static const std::pair<std::string_view, uint8_t> kOps[] = {{"add", 0}, {"min", 1}, {"max", 2},
                                                                {"and", 3}, {"or", 4},  {"xor", 5}};
    int op = -1;
    for (const auto& [name, o] : kOps)
      if (take(name)) {
        if (op >= 0) return bad(c, "two operations");
        op = o;
      }
    if (op < 0) return bad(c, "needs .add, .min, .max, .and, .or or .xor");
    if (!one_type(t) || !no_more()) return false;
    if (t.bits != 32 || t.is_float || t.is_pred)
      return bad(c, "needs .u32, .s32 or .b32 (float redux is not supported)");
    if (!count(c, 3)) return false;
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    if (!dst(c, 0, t, in.d) || !src(c, 1, t, in.a) || !src(c, 2, u32, in.b)) return false;
    in.op = Op::kRedux;
    in.mod = static_cast<uint8_t>(op | (t.is_signed ? 8 : 0));
    emit(in, line);
    return true;
  }
  if (base == "activemask") {
    if (!one_type(t) || !no_more() || !count(c, 1)) return false;
    if (t.bits != 32 || t.is_pred) return bad(c, "needs .b32");
    if (!dst(c, 0, t, in.d)) return false;
    in.op = Op::kActiveMask;
    emit(in, line);
    return true;
  }
  if (base == "bar" && has("warp")) {
    (void)take("warp");
    if (!take("sync") || !no_more() || !types.empty())
      return bad(c, "expects bar.warp.sync membermask");
    if (!count(c, 1)) return false;
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    if (!src(c, 0, u32, in.a)) return false;
    in.op = Op::kWarpSync;
    emit(in, line);
    return true;
  }
  if (base == "bar" || base == "barrier") {
    // bar.sync / bar.sync.aligned / barrier.sync[.aligned] id [, count]
    // bar.red.{popc.u32, and.pred, or.pred} d, 0, p (__syncthreads_count/_and/_or)
    if (has("red")) {
      (void)take("red");
      (void)take("aligned");
      const bool popc = take("popc"), band = take("and"), bor = take("or");
      if (popc + band + bor != 1 || !no_more() || types.size() != 1)
        return bad(c, "bar.red needs .popc.u32, .and.pred or .or.pred");
      const TypeInfo t = types[0];
      if (popc ? (t.ty != Ty::kU32) : !t.is_pred)
        return bad(c, "bar.red needs .popc.u32, .and.pred or .or.pred");
      if (c.ops.size() == 4) return bad(c, "barriers with a thread count are not supported");
      if (!count(c, 3)) return false;
      if (c.ops[1].kind != Operand::kImm || c.ops[1].lit.kind != Literal::kInt ||
          c.ops[1].lit.bits != 0)
        return bad(c, "only barrier 0 is supported");
      const bool negated = c.ops[2].kind == Operand::kReg && c.ops[2].negated;
      c.ops[2].negated = false;
      const TypeInfo pred{Ty::kPred, 1, false, false, true};
      Inst red = in;
      if (!src(c, 2, pred, in.a) || !dst(c, 0, t, red.d)) return false;
      if (negated) {
        // bar.red ... !p: reduce the complement (computed first, under the same guard)
        Inst inv = in;
        inv.op = Op::kNot;
        inv.mod = 1;
        inv.imm = 1;
        inv.d = new_slot(0);
        emit(inv, line);
        in.a = inv.d;
      }
      in.op = Op::kBar;
      in.mod = static_cast<uint8_t>(popc ? 1 : band ? 2 : 3);
      k_.has_barrier = true;
      emit(in, line);
      red.op = Op::kBarRed;
      red.mod = in.mod;
      emit(red, line);
      return true;
    }
    const bool sync = take("sync");
    (void)take("aligned");
    if (!sync || !no_more() || !types.empty())
      return bad(c, "only bar.sync / barrier.sync / bar.red are supported");
    if (c.ops.empty() || c.ops.size() > 2)
      return bad(c, "expects a barrier id and an optional thread count");
    for (const Operand& o : c.ops)
      if (o.kind != Operand::kImm && o.kind != Operand::kReg) return bad(c, "bad barrier operand");
    if (c.ops[0].kind != Operand::kImm || c.ops[0].lit.kind != Literal::kInt ||
        c.ops[0].lit.bits != 0)
      return bad(c, "only barrier 0 is supported");
    if (c.ops.size() == 2) return bad(c, "barriers with a thread count are not supported");
    in.op = Op::kBar;
    k_.has_barrier = true;
    emit(in, line);
    return true;
  }
  if (base == "trap" || base == "brkpt") {
    if (!no_more() || !types.empty() || !c.ops.empty()) return bad(c, "takes no operands");
    in.op = Op::kTrap;
    in.mod = base == "brkpt" ? 1 : 0;
    emit(in, line);
    return true;
  }
  if (base == "prefetch" || base == "prefetchu") {
    // A cache hint: no effect on results, and no fault even for a bad address.
    (void)take("global");
    (void)take("local");
    (void)take("L1");
    (void)take("L2");
    if (!no_more() || !types.empty() || !count(c, 1) || c.ops[0].kind != Operand::kAddr)
      return bad(c, "expects prefetch[.global|.local].{L1,L2} [a]");
    in.op = Op::kNop;
    emit(in, line);
    return true;
  }
  if (base == "nanosleep") {
    // nanosleep.u32 t: the ISA allows any sleep in [0, 2t]; the sim sleeps 0.
    if (!no_more() || types.size() != 1 || types[0].ty != Ty::kU32 || !count(c, 1))
      return bad(c, "expects nanosleep.u32 t");
    const TypeInfo u32{Ty::kU32, 32, false, false, false};
    Slot t = 0;
    if (!src(c, 0, u32, t)) return false;
    in.op = Op::kNop;
    emit(in, line);
    return true;
  }
  if (base == "membar" || base == "fence") {
    // The sim's global accesses are sequentially consistent per address and
    // a block's threads run on one worker: fences need no action.
    in.op = Op::kNop;
    if (!c.ops.empty()) return bad(c, "takes no operands");
    emit(in, line);
    return true;
  }
  if (base == "bra") {
    (void)take("uni");
    if (!no_more() || !types.empty() || !count(c, 1)) return bad(c, "expects bra[.uni] label");
    if (c.ops[0].kind != Operand::kSym) return bad(c, "the target must be a label");
    in.op = Op::kBra;
    label_refs_.emplace_back(static_cast<uint32_t>(k_.code.size()), std::string(c.ops[0].sym),
                             line);
    emit(in, line);
    return true;
  }
  if (base == "ret" || base == "exit") {
    (void)take("uni");
    if (!no_more() || !types.empty() || !c.ops.empty()) return bad(c, "takes no operands");
    in.op = Op::kRet;
    if (base == "ret" && !current_func_.empty()) {
      in.op = Op::kRetFunc;
      in.a = cur_ret_slot_;
    }
    emit(in, line);
    return true;
  }
  if (base == "rcp" || base == "sqrt" || base == "rsqrt" || base == "ex2" || base == "lg2" ||
      base == "sin" || base == "cos" || base == "tanh") {
    if (!one_type(t) || !t.is_float) return bad(c, "needs a float type");
    const bool approx = take("approx");
    const bool exact_op = base == "rcp" || base == "sqrt";
    if (exact_op && !approx && !has("rn") && !has("rz") && !has("rm") && !has("rp"))
      return bad(c, "needs .rn, .rz, .rm, .rp or .approx");
    if (!exact_op && !approx) return bad(c, "needs .approx");
    if (t.bits == 64 && !exact_op && !(base == "rsqrt")) return bad(c, "f64 is not supported");
    Op op32 = Op::kNop, op64 = Op::kNop;
    if (base == "rcp") {
      op32 = Op::kRcpF32;
      op64 = Op::kRcpF64;
    } else if (base == "sqrt") {
      op32 = Op::kSqrtF32;
      op64 = Op::kSqrtF64;
    } else if (base == "rsqrt") {
      op32 = Op::kRsqrtF32;
      op64 = Op::kRsqrtF64;
    } else if (base == "ex2")
      op32 = Op::kEx2F32;
    else if (base == "lg2")
      op32 = Op::kLg2F32;
    else if (base == "sin")
      op32 = Op::kSinF32;
    else if (base == "cos")
      op32 = Op::kCosF32;
    else
      op32 = Op::kTanhF32;
    // rcp.approx.ftz.f64 / rsqrt.approx.ftz.f64: subnormal inputs count as zero (in.c = 1).
    if (t.bits == 64 && approx && (base == "rcp" || base == "rsqrt") && take("ftz")) in.c = 1;
    return float_op(op32, op64, t, 1, false);
  }
  return fail(c.line, "unsupported instruction '" + std::string(c.opcode) + "'");
}

}  // namespace

Result<std::shared_ptr<const Module>> load_ptx(std::string_view text, const LoadLimits& limits) {
  if (text.size() > limits.max_text_bytes)
    return make_error(Status::kLoadFailed, "PTX text larger than the loader's limit");
  // Images may carry a trailing NUL (cuModuleLoadData takes a C string).
  while (!text.empty() && text.back() == '\0') text.remove_suffix(1);
  if (text.find('\0') != std::string_view::npos)
    return make_error(Status::kLoadFailed, "PTX text contains a NUL byte");
  Parser p(text, limits);
  return p.run();
}

}  // namespace gpulease::sim
