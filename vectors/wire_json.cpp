#include "wire_json.hpp"

#include <array>
#include <cstdio>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace gpulease::vectors {

using namespace gpulease::wire;

// ---- Helpers ------------------------------------------------------------------

std::string to_hex(ByteSpan b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (std::byte x : b) {
    auto v = std::to_integer<unsigned>(x);
    s.push_back(kDigits[v >> 4]);
    s.push_back(kDigits[v & 15]);
  }
  return s;
}

std::optional<Bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(std::byte(hi * 16 + lo));
  }
  return out;
}

std::string opcode_label(uint16_t op) {
  if (is_known_opcode(op)) return std::string(opcode_name(static_cast<Opcode>(op)));
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", op);
  return buf;
}

std::optional<uint16_t> opcode_from_label(std::string_view label) {
  if (auto op = opcode_from_name(label)) return static_cast<uint16_t>(*op);
  if (label.size() == 6 && label.substr(0, 2) == "0x") {
    auto b = from_hex(label.substr(2));
    if (b)
      return static_cast<uint16_t>(std::to_integer<unsigned>((*b)[0]) << 8 |
                                   std::to_integer<unsigned>((*b)[1]));
  }
  return std::nullopt;
}

namespace {

Bytes hex_field(const Json& j, const char* key) {
  auto b = from_hex(j.at(key).get<std::string>());
  if (!b) throw std::invalid_argument(std::string("field ") + key + " is not hex");
  return *b;
}

template <size_t N>
std::array<uint8_t, N> fixed_hex_field(const Json& j, const char* key) {
  Bytes b = hex_field(j, key);
  if (b.size() != N)
    throw std::invalid_argument(std::string("field ") + key + " has the wrong size");
  std::array<uint8_t, N> out{};
  for (size_t i = 0; i < N; ++i) out[i] = std::to_integer<uint8_t>(b[i]);
  return out;
}

template <size_t N>
std::string fixed_hex(const std::array<uint8_t, N>& a) {
  Bytes b;
  for (uint8_t v : a) b.push_back(std::byte(v));
  return to_hex(b);
}

// Enum <-> name tables. Index = wire value.
constexpr const char* kExclusivityNames[] = {"SHARED", "SESSION_EXCLUSIVE", "DEVICE_EXCLUSIVE"};
constexpr const char* kLeaseStateNames[] = {"ACTIVE", "FAULTED", "EXPIRED", "RELEASED"};
constexpr const char* kFormatNames[] = {"PTX", "CUBIN", "FATBIN"};
constexpr const char* kArgFormNames[] = {"RAW", "TYPED"};
constexpr const char* kTypedKindNames[] = {"SCALAR", "BUFFER"};
constexpr const char* kSubmitKindNames[] = {"SCALAR", "IN", "OUT", "INOUT"};
constexpr const char* kGlobalSpaceNames[] = {"GLOBAL", "CONST", "UNKNOWN"};

template <typename E, size_t N>
std::string enum_name(E e, const char* const (&names)[N]) {
  auto v = static_cast<size_t>(e);
  if (v >= N) throw std::invalid_argument("enum value out of range");
  return names[v];
}
template <typename E, size_t N>
E enum_from(const Json& j, const char* key, const char* const (&names)[N]) {
  std::string s = j.at(key).get<std::string>();
  for (size_t i = 0; i < N; ++i) {
    if (s == names[i]) return static_cast<E>(i);
  }
  throw std::invalid_argument(std::string("unknown ") + key + " name " + s);
}

Json dim3_json(const Dim3& d) {
  return Json::array({d[0], d[1], d[2]});
}
Dim3 dim3_from(const Json& j, const char* key) {
  const Json& a = j.at(key);
  if (!a.is_array() || a.size() != 3)
    throw std::invalid_argument(std::string(key) + " is not [x,y,z]");
  return {a[0].get<uint32_t>(), a[1].get<uint32_t>(), a[2].get<uint32_t>()};
}

template <typename T>
T num(const Json& j, const char* key) {
  return j.at(key).get<T>();
}

// ---- Per-message fields --------------------------------------------------------

Json to_j(const HelloRequest& m) {
  return {{"min_version", m.min_version},
          {"max_version", m.max_version},
          {"client_name", m.client_name}};
}
void from_j(const Json& j, HelloRequest& m) {
  m.min_version = num<uint16_t>(j, "min_version");
  m.max_version = num<uint16_t>(j, "max_version");
  m.client_name = j.at("client_name").get<std::string>();
}

Json to_j(const HelloReply& m) {
  const AnnouncedLimits& l = m.limits;
  Json devices = Json::array();
  for (const auto& d : m.devices) {
    devices.push_back({{"index", d.index},
                       {"name", d.name},
                       {"uuid", fixed_hex(d.uuid)},
                       {"cc_major", d.cc_major},
                       {"cc_minor", d.cc_minor},
                       {"sm_count", d.sm_count},
                       {"total_bytes", d.total_bytes},
                       {"free_bytes", d.free_bytes}});
  }
  return {{"version", m.version},
          {"node_id", m.node_id},
          {"backend", m.backend},
          {"limits",
           {{"max_token_bytes", l.max_token_bytes},
            {"max_payload_bytes", l.max_payload_bytes},
            {"max_inflight", l.max_inflight},
            {"max_kernel_args", l.max_kernel_args},
            {"max_arg_bytes", l.max_arg_bytes},
            {"max_name_bytes", l.max_name_bytes},
            {"max_lease_ttl_s", l.max_lease_ttl_s}}},
          {"devices", devices}};
}
void from_j(const Json& j, HelloReply& m) {
  m.version = num<uint16_t>(j, "version");
  m.node_id = j.at("node_id").get<std::string>();
  m.backend = j.at("backend").get<std::string>();
  const Json& l = j.at("limits");
  m.limits.max_token_bytes = num<uint32_t>(l, "max_token_bytes");
  m.limits.max_payload_bytes = num<uint32_t>(l, "max_payload_bytes");
  m.limits.max_inflight = num<uint32_t>(l, "max_inflight");
  m.limits.max_kernel_args = num<uint32_t>(l, "max_kernel_args");
  m.limits.max_arg_bytes = num<uint32_t>(l, "max_arg_bytes");
  m.limits.max_name_bytes = num<uint32_t>(l, "max_name_bytes");
  m.limits.max_lease_ttl_s = num<uint32_t>(l, "max_lease_ttl_s");
  for (const Json& d : j.at("devices")) {
    DeviceDescriptor dev;
    dev.index = num<uint16_t>(d, "index");
    dev.name = d.at("name").get<std::string>();
    dev.uuid = fixed_hex_field<16>(d, "uuid");
    dev.cc_major = num<uint8_t>(d, "cc_major");
    dev.cc_minor = num<uint8_t>(d, "cc_minor");
    dev.sm_count = num<uint32_t>(d, "sm_count");
    dev.total_bytes = num<uint64_t>(d, "total_bytes");
    dev.free_bytes = num<uint64_t>(d, "free_bytes");
    m.devices.push_back(std::move(dev));
  }
}

Json to_j(const PingRequest& m) {
  return {{"data", to_hex(m.data)}};
}
void from_j(const Json& j, PingRequest& m) {
  m.data = hex_field(j, "data");
}
Json to_j(const PingReply& m) {
  return {{"data", to_hex(m.data)}};
}
void from_j(const Json& j, PingReply& m) {
  m.data = hex_field(j, "data");
}

Json to_j(const LeaseAcquireRequest& m) {
  return {{"min_vram", m.min_vram},
          {"ttl_s", m.ttl_s},
          {"exclusivity", enum_name(m.exclusivity, kExclusivityNames)},
          {"release_on_disconnect", (m.flags & kAcquireReleaseOnDisconnect) != 0},
          {"device", m.device},
          {"idempotency_key", fixed_hex(m.idempotency_key)}};
}
void from_j(const Json& j, LeaseAcquireRequest& m) {
  m.min_vram = num<uint64_t>(j, "min_vram");
  m.ttl_s = num<uint32_t>(j, "ttl_s");
  m.exclusivity = enum_from<Exclusivity>(j, "exclusivity", kExclusivityNames);
  m.flags = j.at("release_on_disconnect").get<bool>() ? kAcquireReleaseOnDisconnect : 0;
  m.device = num<uint16_t>(j, "device");
  m.idempotency_key = fixed_hex_field<16>(j, "idempotency_key");
}

Json to_j(const LeaseAcquireReply& m) {
  return {{"lease_id", m.lease_id},
          {"device", m.device},
          {"granted_bytes", m.granted_bytes},
          {"expires_at_ms", m.expires_at_ms}};
}
void from_j(const Json& j, LeaseAcquireReply& m) {
  m.lease_id = num<uint64_t>(j, "lease_id");
  m.device = num<uint16_t>(j, "device");
  m.granted_bytes = num<uint64_t>(j, "granted_bytes");
  m.expires_at_ms = num<uint64_t>(j, "expires_at_ms");
}

Json to_j(const LeaseRenewRequest& m) {
  return {{"ttl_s", m.ttl_s}};
}
void from_j(const Json& j, LeaseRenewRequest& m) {
  m.ttl_s = num<uint32_t>(j, "ttl_s");
}
Json to_j(const LeaseRenewReply& m) {
  return {{"expires_at_ms", m.expires_at_ms}};
}
void from_j(const Json& j, LeaseRenewReply& m) {
  m.expires_at_ms = num<uint64_t>(j, "expires_at_ms");
}

Json to_j(const Empty&) {
  return Json::object();
}
void from_j(const Json& j, Empty&) {
  if (!j.empty()) throw std::invalid_argument("empty payload has fields");
}

Json to_j(const LeaseInfo& m) {
  return {{"lease_id", m.lease_id},
          {"state", enum_name(m.state, kLeaseStateNames)},
          {"exclusivity", enum_name(m.exclusivity, kExclusivityNames)},
          {"device", m.device},
          {"quota_bytes", m.quota_bytes},
          {"used_bytes", m.used_bytes},
          {"expires_at_ms", m.expires_at_ms},
          {"remaining_ms", m.remaining_ms},
          {"buffers", m.buffers},
          {"modules", m.modules}};
}
void from_j(const Json& j, LeaseInfo& m) {
  m.lease_id = num<uint64_t>(j, "lease_id");
  m.state = enum_from<LeaseState>(j, "state", kLeaseStateNames);
  m.exclusivity = enum_from<Exclusivity>(j, "exclusivity", kExclusivityNames);
  m.device = num<uint16_t>(j, "device");
  m.quota_bytes = num<uint64_t>(j, "quota_bytes");
  m.used_bytes = num<uint64_t>(j, "used_bytes");
  m.expires_at_ms = num<uint64_t>(j, "expires_at_ms");
  m.remaining_ms = num<uint64_t>(j, "remaining_ms");
  m.buffers = num<uint32_t>(j, "buffers");
  m.modules = num<uint32_t>(j, "modules");
}

Json to_j(const LeaseListReply& m) {
  Json a = Json::array();
  for (const auto& l : m.leases) a.push_back(to_j(l));
  return {{"leases", a}};
}
void from_j(const Json& j, LeaseListReply& m) {
  for (const Json& e : j.at("leases")) {
    LeaseInfo l;
    from_j(e, l);
    m.leases.push_back(l);
  }
}

Json to_j(const CapRequestRequest& m) {
  return {{"permissions", m.permissions}, {"ttl_s", m.ttl_s}};
}
void from_j(const Json& j, CapRequestRequest& m) {
  m.permissions = num<uint32_t>(j, "permissions");
  m.ttl_s = num<uint32_t>(j, "ttl_s");
}
Json to_j(const CapRequestReply& m) {
  return {{"token", to_hex(m.token)}};
}
void from_j(const Json& j, CapRequestReply& m) {
  m.token = hex_field(j, "token");
}

Json to_j(const MemAllocRequest& m) {
  return {{"size", m.size}};
}
void from_j(const Json& j, MemAllocRequest& m) {
  m.size = num<uint64_t>(j, "size");
}
Json to_j(const HandleReply& m) {
  return {{"handle", m.handle}};
}
void from_j(const Json& j, HandleReply& m) {
  m.handle = num<uint64_t>(j, "handle");
}
Json to_j(const HandleRequest& m) {
  return {{"handle", m.handle}};
}
void from_j(const Json& j, HandleRequest& m) {
  m.handle = num<uint64_t>(j, "handle");
}

Json to_j(const MemWriteRequest& m) {
  return {{"handle", m.handle}, {"offset", m.offset}, {"data", to_hex(m.data)}};
}
void from_j(const Json& j, MemWriteRequest& m) {
  m.handle = num<uint64_t>(j, "handle");
  m.offset = num<uint64_t>(j, "offset");
  m.data = hex_field(j, "data");
}
Json to_j(const MemReadRequest& m) {
  return {{"handle", m.handle}, {"offset", m.offset}, {"length", m.length}};
}
void from_j(const Json& j, MemReadRequest& m) {
  m.handle = num<uint64_t>(j, "handle");
  m.offset = num<uint64_t>(j, "offset");
  m.length = num<uint32_t>(j, "length");
}
Json to_j(const MemReadReply& m) {
  return {{"data", to_hex(m.data)}};
}
void from_j(const Json& j, MemReadReply& m) {
  m.data = hex_field(j, "data");
}

Json to_j(const ModuleLoadRequest& m) {
  return {{"format", enum_name(m.format, kFormatNames)}, {"image", to_hex(m.image)}};
}
void from_j(const Json& j, ModuleLoadRequest& m) {
  m.format = enum_from<ImageFormat>(j, "format", kFormatNames);
  m.image = hex_field(j, "image");
}

Json args_json(const KernelArgs& a) {
  Json j = {{"form", enum_name(a.form, kArgFormNames)}};
  if (a.form == ArgForm::kRaw) {
    j["sizes"] = a.raw_sizes;
    j["blob"] = to_hex(a.raw_blob);
  } else {
    Json list = Json::array();
    for (const auto& t : a.typed) {
      if (t.kind == TypedArgKind::kScalar) {
        list.push_back({{"kind", "SCALAR"}, {"bytes", to_hex(t.scalar)}});
      } else {
        list.push_back({{"kind", "BUFFER"}, {"handle", t.handle}, {"offset", t.offset}});
      }
    }
    j["args"] = list;
  }
  return j;
}
KernelArgs args_from(const Json& j) {
  KernelArgs a;
  a.form = enum_from<ArgForm>(j, "form", kArgFormNames);
  if (a.form == ArgForm::kRaw) {
    a.raw_sizes = j.at("sizes").get<std::vector<uint32_t>>();
    a.raw_blob = hex_field(j, "blob");
  } else {
    for (const Json& e : j.at("args")) {
      TypedArg t;
      t.kind = enum_from<TypedArgKind>(e, "kind", kTypedKindNames);
      if (t.kind == TypedArgKind::kScalar) {
        t.scalar = hex_field(e, "bytes");
      } else {
        t.handle = num<uint64_t>(e, "handle");
        t.offset = num<uint64_t>(e, "offset");
      }
      a.typed.push_back(std::move(t));
    }
  }
  return a;
}

Json to_j(const LaunchRequest& m) {
  return {{"module", m.module},
          {"kernel", m.kernel},
          {"grid", dim3_json(m.grid)},
          {"block", dim3_json(m.block)},
          {"shared_bytes", m.shared_bytes},
          {"args", args_json(m.args)}};
}
void from_j(const Json& j, LaunchRequest& m) {
  m.module = num<uint64_t>(j, "module");
  m.kernel = j.at("kernel").get<std::string>();
  m.grid = dim3_from(j, "grid");
  m.block = dim3_from(j, "block");
  m.shared_bytes = num<uint32_t>(j, "shared_bytes");
  m.args = args_from(j.at("args"));
}
Json to_j(const LaunchReply& m) {
  return {{"launch_seq", m.launch_seq}};
}
void from_j(const Json& j, LaunchReply& m) {
  m.launch_seq = num<uint64_t>(j, "launch_seq");
}
Json to_j(const SyncReply& m) {
  return {{"completed", m.completed}};
}
void from_j(const Json& j, SyncReply& m) {
  m.completed = num<uint64_t>(j, "completed");
}

Json to_j(const GpuSubmitRequest& m) {
  Json args = Json::array();
  for (const auto& a : m.args) {
    Json e = {{"kind", enum_name(a.kind, kSubmitKindNames)}};
    if (a.kind == SubmitArgKind::kOut) {
      e["size"] = a.out_size;
    } else {
      e["bytes"] = to_hex(a.data);
    }
    args.push_back(e);
  }
  return {{"format", enum_name(m.format, kFormatNames)},
          {"image", to_hex(m.image)},
          {"kernel", m.kernel},
          {"grid", dim3_json(m.grid)},
          {"block", dim3_json(m.block)},
          {"shared_bytes", m.shared_bytes},
          {"args", args}};
}
void from_j(const Json& j, GpuSubmitRequest& m) {
  m.format = enum_from<ImageFormat>(j, "format", kFormatNames);
  m.image = hex_field(j, "image");
  m.kernel = j.at("kernel").get<std::string>();
  m.grid = dim3_from(j, "grid");
  m.block = dim3_from(j, "block");
  m.shared_bytes = num<uint32_t>(j, "shared_bytes");
  for (const Json& e : j.at("args")) {
    SubmitArg a;
    a.kind = enum_from<SubmitArgKind>(e, "kind", kSubmitKindNames);
    if (a.kind == SubmitArgKind::kOut) {
      a.out_size = num<uint64_t>(e, "size");
    } else {
      a.data = hex_field(e, "bytes");
    }
    m.args.push_back(std::move(a));
  }
}
Json to_j(const GpuSubmitReply& m) {
  Json outs = Json::array();
  for (const auto& o : m.outputs)
    outs.push_back({{"arg_index", o.arg_index}, {"data", to_hex(o.data)}});
  return {{"outputs", outs}};
}
void from_j(const Json& j, GpuSubmitReply& m) {
  for (const Json& e : j.at("outputs")) {
    m.outputs.push_back({num<uint16_t>(e, "arg_index"), hex_field(e, "data")});
  }
}

Json to_j(const ModuleGlobalRequest& m) {
  return {{"module", m.module}, {"name", m.name}};
}
void from_j(const Json& j, ModuleGlobalRequest& m) {
  m.module = num<uint64_t>(j, "module");
  m.name = j.at("name").get<std::string>();
}
Json to_j(const ModuleGlobalReply& m) {
  return {{"handle", m.handle}, {"size", m.size}, {"space", enum_name(m.space, kGlobalSpaceNames)}};
}
void from_j(const Json& j, ModuleGlobalReply& m) {
  m.handle = num<uint64_t>(j, "handle");
  m.size = num<uint64_t>(j, "size");
  m.space = enum_from<GlobalSpace>(j, "space", kGlobalSpaceNames);
}

Json to_j(const ErrorReply& m) {
  return {{"message", m.message}};
}
void from_j(const Json& j, ErrorReply& m) {
  m.message = j.at("message").get<std::string>();
}

template <typename M, typename V>
V make(const Json& j) {
  M m;
  from_j(j, m);
  return V(std::move(m));
}

}  // namespace

// ---- Messages ------------------------------------------------------------------

Json request_to_json(const RequestMessage& m) {
  return std::visit([](const auto& v) { return to_j(v); }, m);
}
Json reply_to_json(const ReplyMessage& m) {
  return std::visit([](const auto& v) { return to_j(v); }, m);
}

// The opcode -> message type mapping is the codec's (OpcodeMessages in
// messages.hpp, generated over wire::kOpcodeTable), not a copy of it.
namespace {

template <typename V, bool kRequest, size_t... I>
V from_json_by_table(Opcode op, const Json& j, std::index_sequence<I...>) {
  using Maker = V (*)(const Json&);
  static constexpr std::array<Maker, sizeof...(I)> kMakers{{+[](const Json& js) {
    constexpr Opcode kOp = kOpcodeTable[I].op;
    using M = std::conditional_t<kRequest, RequestOf<kOp>, ReplyOf<kOp>>;
    return make<M, V>(js);
  }...}};
  for (size_t i = 0; i < kOpcodeTable.size(); ++i) {
    if (kOpcodeTable[i].op == op) return kMakers[i](j);
  }
  throw std::invalid_argument("unknown opcode");
}

}  // namespace

RequestMessage request_from_json(Opcode op, const Json& j) {
  return from_json_by_table<RequestMessage, true>(op, j,
                                                  std::make_index_sequence<kOpcodeTable.size()>{});
}

ReplyMessage reply_from_json(Opcode op, const Json& j) {
  return from_json_by_table<ReplyMessage, false>(op, j,
                                                 std::make_index_sequence<kOpcodeTable.size()>{});
}

// ---- Frames --------------------------------------------------------------------

Result<DecodedFrame> decode_full_frame(ByteSpan bytes, const Limits& limits) {
  auto v = decode_frame(bytes, limits);
  if (!v) return std::move(v).error();
  DecodedFrame f{v->header, Bytes(v->token.begin(), v->token.end()), ErrorReply{}};
  const FrameHeader& h = v->header;
  if (!h.is_reply()) {
    auto m = decode_request(h.opcode, v->payload, limits);
    if (!m) return std::move(m).error();
    f.message = std::move(m).value();
  } else if (h.status != Status::kOk) {
    auto m = decode_payload<ErrorReply>(v->payload, limits);
    if (!m) return std::move(m).error();
    f.message = std::move(m).value();
  } else {
    auto m = decode_reply(h.opcode, v->payload, limits);
    if (!m) return std::move(m).error();
    f.message = std::move(m).value();
  }
  return f;
}

Bytes encode_full_frame(const DecodedFrame& f) {
  Bytes payload = std::visit(
      [](const auto& m) -> Bytes {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, RequestMessage>) {
          return encode_request(m);
        } else if constexpr (std::is_same_v<M, ReplyMessage>) {
          return encode_reply(m);
        } else {
          return encode_payload(m);
        }
      },
      f.message);
  return encode_frame(f.header, f.token, payload);
}

Json frame_to_json(const DecodedFrame& f) {
  Json j;
  j["version"] = f.header.version;
  j["request_id"] = f.header.request_id;
  j["lease_id"] = f.header.lease_id;
  if (f.header.is_reply()) {
    j["status"] = std::string(status_name(f.header.status));
  } else {
    j["token"] = to_hex(f.token);
  }
  j["payload"] = std::visit(
      [](const auto& m) -> Json {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, RequestMessage>) {
          return request_to_json(m);
        } else if constexpr (std::is_same_v<M, ReplyMessage>) {
          return reply_to_json(m);
        } else {
          return to_j(m);
        }
      },
      f.message);
  return j;
}

DecodedFrame frame_from_json(Opcode op, bool reply, const Json& j) {
  DecodedFrame f{};
  f.header.version = num<uint16_t>(j, "version");
  f.header.opcode = op;
  f.header.flags = reply ? kFlagReply : 0;
  f.header.request_id = num<uint64_t>(j, "request_id");
  f.header.lease_id = num<uint64_t>(j, "lease_id");
  const Json& p = j.at("payload");
  if (!reply) {
    f.token = hex_field(j, "token");
    f.message = request_from_json(op, p);
    return f;
  }
  auto s = status_from_name(j.at("status").get<std::string>());
  if (!s) throw std::invalid_argument("unknown status name");
  f.header.status = *s;
  if (*s == Status::kOk) {
    f.message = reply_from_json(op, p);
  } else {
    ErrorReply e;
    from_j(p, e);
    f.message = std::move(e);
  }
  return f;
}

}  // namespace gpulease::vectors
