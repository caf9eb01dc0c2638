#include "gpulease/wire/messages.hpp"

#include "gpulease/wire/utf8.hpp"

#include <array>
#include <string>
#include <type_traits>
#include <utility>

namespace gpulease::wire {
namespace {

// A decoder with a sticky first error: after a failure every read returns a
// zero value and consumes nothing, so message decoders read straight through
// and check once at the end.
class Decoder {
 public:
  Decoder(ByteSpan in, const Limits& limits) : r_(in), limits_(limits) {}

  const Limits& limits() const { return limits_; }
  bool ok() const { return !err_; }

  // A structural error (BAD_FRAME, FRAME_TOO_LARGE): stops decoding.
  void fail(Status s, std::string msg) {
    if (!err_) err_ = make_error(s, std::move(msg));
  }
  // A value the operation cannot accept (INVALID_ARGUMENT) in a field whose
  // layout is sound: decoding goes on, because a structural error anywhere in
  // the payload wins over a value error (PROTOCOL.md, "Decoding order").
  void invalid(std::string msg) {
    if (!value_err_) value_err_ = make_error(Status::kInvalidArgument, std::move(msg));
  }
  void truncated(const char* field) {
    fail(Status::kBadFrame, std::string("truncated at ") + field);
  }

  uint8_t u8(const char* f) {
    return num<uint8_t>(f, [&](uint8_t& v) { return r_.u8(v); });
  }
  uint16_t u16(const char* f) {
    return num<uint16_t>(f, [&](uint16_t& v) { return r_.u16(v); });
  }
  uint32_t u32(const char* f) {
    return num<uint32_t>(f, [&](uint32_t& v) { return r_.u32(v); });
  }
  uint64_t u64(const char* f) {
    return num<uint64_t>(f, [&](uint64_t& v) { return r_.u64(v); });
  }

  template <size_t N>
  std::array<uint8_t, N> fixed(const char* f) {
    std::array<uint8_t, N> out{};
    ByteSpan b;
    if (!err_ && r_.take(N, b)) {
      for (size_t i = 0; i < N; ++i) out[i] = std::to_integer<uint8_t>(b[i]);
    } else {
      truncated(f);
    }
    return out;
  }

  // Exactly n bytes. REQUIRES: n was already capped by a limit.
  Bytes take(const char* f, size_t n) {
    ByteSpan b;
    if (err_) return {};
    if (!r_.take(n, b)) {
      truncated(f);
      return {};
    }
    return Bytes(b.begin(), b.end());
  }

  // str16 capped at `max`; must be UTF-8.
  std::string str16(const char* f, size_t max) {
    if (err_) return {};
    if (r_.remaining() >= 2) {
      uint16_t n = load_le16(r_.rest().data());
      if (n > max) {
        fail(Status::kFrameTooLarge, std::string(f) + " longer than " + std::to_string(max));
        return {};
      }
    }
    std::string_view s;
    if (!r_.str16(s, max)) {
      truncated(f);
      return {};
    }
    if (!valid_utf8(s)) {
      fail(Status::kBadFrame, std::string(f) + " is not valid UTF-8");
      return {};
    }
    return std::string(s);
  }

  // bytes32 capped at `max`.
  Bytes bytes32(const char* f, size_t max) {
    if (err_) return {};
    if (r_.remaining() >= 4 && load_le32(r_.rest().data()) > max) {
      fail(Status::kFrameTooLarge, std::string(f) + " longer than " + std::to_string(max));
      return {};
    }
    ByteSpan b;
    if (!r_.bytes32(b, max)) {
      truncated(f);
      return {};
    }
    return Bytes(b.begin(), b.end());
  }

  // The rest of the payload, capped at `max`, as a view into the input.
  ByteSpan rest_view(const char* f, size_t max) {
    if (err_) return {};
    if (r_.remaining() > max) {
      fail(Status::kFrameTooLarge, std::string(f) + " longer than " + std::to_string(max));
      return {};
    }
    ByteSpan b = r_.rest();
    (void)r_.take(b.size(), b);
    return b;
  }

  // The rest of the payload, capped at `max`, copied.
  Bytes rest(const char* f, size_t max) {
    const ByteSpan b = rest_view(f, max);
    return Bytes(b.begin(), b.end());
  }

  // A count that bounds an allocation: capped at `max`, and each element
  // needs at least `min_elem_bytes`, so a count cannot promise more elements
  // than the remaining input can hold.
  size_t count16(const char* f, size_t max, size_t min_elem_bytes) {
    return check_count(f, u16(f), max, min_elem_bytes);
  }
  size_t count32(const char* f, size_t max, size_t min_elem_bytes) {
    return check_count(f, u32(f), max, min_elem_bytes);
  }

  Dim3 dim3(const char* f) { return {u32(f), u32(f), u32(f)}; }

  template <typename M>
  Result<M> finish(M m) {
    if (!err_ && !r_.empty()) fail(Status::kBadFrame, "trailing bytes after message");
    if (err_) return std::move(*err_);
    if (value_err_) return std::move(*value_err_);
    return m;
  }

 private:
  template <typename T, typename F>
  T num(const char* f, F&& read) {
    T v{};
    if (err_) return v;
    if (!read(v)) truncated(f);
    return v;
  }
  size_t check_count(const char* f, size_t n, size_t max, size_t min_elem_bytes) {
    if (err_) return 0;
    if (n > max) {
      fail(Status::kFrameTooLarge,
           std::string(f) + " " + std::to_string(n) + " exceeds " + std::to_string(max));
      return 0;
    }
    if (min_elem_bytes > 0 && n > r_.remaining() / min_elem_bytes) {
      truncated(f);
      return 0;
    }
    return n;
  }

  ByteReader r_;
  const Limits& limits_;
  std::optional<Error> err_;
  std::optional<Error> value_err_;
};

void put_dim3(ByteWriter& w, const Dim3& d) {
  for (uint32_t v : d) w.u32(v);
}
template <size_t N>
void put_fixed(ByteWriter& w, const std::array<uint8_t, N>& a) {
  for (uint8_t v : a) w.u8(v);
}

void encode_lease_info(ByteWriter& w, const LeaseInfo& m) {
  w.u64(m.lease_id);
  w.u8(static_cast<uint8_t>(m.state));
  w.u8(static_cast<uint8_t>(m.exclusivity));
  w.u16(m.device);
  w.u64(m.quota_bytes);
  w.u64(m.used_bytes);
  w.u64(m.expires_at_ms);
  w.u64(m.remaining_ms);
  w.u32(m.buffers);
  w.u32(m.modules);
}

LeaseInfo decode_lease_info(Decoder& d) {
  LeaseInfo m;
  m.lease_id = d.u64("lease_id");
  uint8_t state = d.u8("state");
  uint8_t excl = d.u8("exclusivity");
  m.device = d.u16("device");
  m.quota_bytes = d.u64("quota_bytes");
  m.used_bytes = d.u64("used_bytes");
  m.expires_at_ms = d.u64("expires_at_ms");
  m.remaining_ms = d.u64("remaining_ms");
  m.buffers = d.u32("buffers");
  m.modules = d.u32("modules");
  if (state > static_cast<uint8_t>(LeaseState::kReleased))
    d.fail(Status::kBadFrame, "unknown lease state");
  if (excl > static_cast<uint8_t>(Exclusivity::kDeviceExclusive))
    d.fail(Status::kBadFrame, "unknown exclusivity");
  m.state = static_cast<LeaseState>(state);
  m.exclusivity = static_cast<Exclusivity>(excl);
  return m;
}

ImageFormat decode_format(Decoder& d) {
  uint8_t f = d.u8("format");
  if (f > static_cast<uint8_t>(ImageFormat::kFatbin)) {
    d.invalid("unknown image format " + std::to_string(f));
  }
  return static_cast<ImageFormat>(f);
}

std::string decode_kernel_name(Decoder& d) {
  std::string k = d.str16("kernel", d.limits().max_name_bytes);
  if (d.ok() && k.empty()) d.invalid("empty kernel name");
  return k;
}

Bytes decode_scalar(Decoder& d) {
  uint16_t n = d.u16("scalar size");
  if (d.ok() && (n == 0 || n > d.limits().max_scalar_bytes)) {
    d.invalid("scalar argument of " + std::to_string(n) + " bytes (1.." +
              std::to_string(d.limits().max_scalar_bytes) + ")");
  }
  // Read even when refused: the layout is sound and a structural error later
  // in the payload must still be found. n <= 65535 and take() copies only
  // bytes that are present.
  return d.take("scalar", n);
}

void encode_scalar(ByteWriter& w, const Bytes& s) {
  w.u16(static_cast<uint16_t>(s.size()));
  w.raw(s);
}

}  // namespace

// ---- Encoders ---------------------------------------------------------------

void encode(const HelloRequest& m, Bytes& out) {
  ByteWriter w(out);
  w.u16(m.min_version);
  w.u16(m.max_version);
  w.str16(m.client_name);
}

void encode(const HelloReply& m, Bytes& out) {
  ByteWriter w(out);
  w.u16(m.version);
  w.str16(m.node_id);
  w.str16(m.backend);
  const AnnouncedLimits& l = m.limits;
  for (uint32_t v : {l.max_token_bytes, l.max_payload_bytes, l.max_inflight, l.max_kernel_args,
                     l.max_arg_bytes, l.max_name_bytes, l.max_lease_ttl_s}) {
    w.u32(v);
  }
  w.u16(static_cast<uint16_t>(m.devices.size()));
  for (const auto& dev : m.devices) {
    w.u16(dev.index);
    w.str16(dev.name);
    put_fixed(w, dev.uuid);
    w.u8(dev.cc_major);
    w.u8(dev.cc_minor);
    w.u32(dev.sm_count);
    w.u64(dev.total_bytes);
    w.u64(dev.free_bytes);
  }
}

void encode(const PingRequest& m, Bytes& out) {
  ByteWriter(out).raw(m.data);
}
void encode(const PingReply& m, Bytes& out) {
  ByteWriter(out).raw(m.data);
}

void encode(const LeaseAcquireRequest& m, Bytes& out) {
  ByteWriter w(out);
  w.u64(m.min_vram);
  w.u32(m.ttl_s);
  w.u8(static_cast<uint8_t>(m.exclusivity));
  w.u8(m.flags);
  w.u16(m.device);
  put_fixed(w, m.idempotency_key);
}

void encode(const LeaseAcquireReply& m, Bytes& out) {
  ByteWriter w(out);
  w.u64(m.lease_id);
  w.u16(m.device);
  w.u64(m.granted_bytes);
  w.u64(m.expires_at_ms);
}

void encode(const LeaseRenewRequest& m, Bytes& out) {
  ByteWriter(out).u32(m.ttl_s);
}
void encode(const LeaseRenewReply& m, Bytes& out) {
  ByteWriter(out).u64(m.expires_at_ms);
}
void encode(const Empty&, Bytes&) {}

void encode(const LeaseInfo& m, Bytes& out) {
  ByteWriter w(out);
  encode_lease_info(w, m);
}

void encode(const LeaseListReply& m, Bytes& out) {
  ByteWriter w(out);
  w.u32(static_cast<uint32_t>(m.leases.size()));
  for (const auto& l : m.leases) encode_lease_info(w, l);
}

void encode(const CapRequestRequest& m, Bytes& out) {
  ByteWriter w(out);
  w.u32(m.permissions);
  w.u32(m.ttl_s);
}
void encode(const CapRequestReply& m, Bytes& out) {
  ByteWriter(out).bytes32(m.token);
}

void encode(const MemAllocRequest& m, Bytes& out) {
  ByteWriter(out).u64(m.size);
}
void encode(const HandleReply& m, Bytes& out) {
  ByteWriter(out).u64(m.handle);
}
void encode(const HandleRequest& m, Bytes& out) {
  ByteWriter(out).u64(m.handle);
}

void encode(const MemWriteRequest& m, Bytes& out) {
  ByteWriter w(out);
  w.u64(m.handle);
  w.u64(m.offset);
  w.raw(m.data);
}
void encode(const MemReadRequest& m, Bytes& out) {
  ByteWriter w(out);
  w.u64(m.handle);
  w.u64(m.offset);
  w.u32(m.length);
}
void encode(const MemReadReply& m, Bytes& out) {
  ByteWriter(out).raw(m.data);
}

void encode(const ModuleLoadRequest& m, Bytes& out) {
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(m.format));
  w.raw(m.image);
}

void encode(const LaunchRequest& m, Bytes& out) {
  ByteWriter w(out);
  w.u64(m.module);
  w.str16(m.kernel);
  put_dim3(w, m.grid);
  put_dim3(w, m.block);
  w.u32(m.shared_bytes);
  w.u8(static_cast<uint8_t>(m.args.form));
  if (m.args.form == ArgForm::kRaw) {
    w.u16(static_cast<uint16_t>(m.args.raw_sizes.size()));
    for (uint32_t s : m.args.raw_sizes) w.u32(s);
    w.bytes32(m.args.raw_blob);
  } else {
    w.u16(static_cast<uint16_t>(m.args.typed.size()));
    for (const auto& a : m.args.typed) {
      w.u8(static_cast<uint8_t>(a.kind));
      if (a.kind == TypedArgKind::kScalar) {
        encode_scalar(w, a.scalar);
      } else {
        w.u64(a.handle);
        w.u64(a.offset);
      }
    }
  }
}
void encode(const LaunchReply& m, Bytes& out) {
  ByteWriter(out).u64(m.launch_seq);
}
void encode(const SyncReply& m, Bytes& out) {
  ByteWriter(out).u64(m.completed);
}

void encode(const GpuSubmitRequest& m, Bytes& out) {
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(m.format));
  w.bytes32(m.image);
  w.str16(m.kernel);
  put_dim3(w, m.grid);
  put_dim3(w, m.block);
  w.u32(m.shared_bytes);
  w.u16(static_cast<uint16_t>(m.args.size()));
  for (const auto& a : m.args) {
    w.u8(static_cast<uint8_t>(a.kind));
    switch (a.kind) {
      case SubmitArgKind::kScalar:
        encode_scalar(w, a.data);
        break;
      case SubmitArgKind::kIn:
      case SubmitArgKind::kInOut:
        w.bytes32(a.data);
        break;
      case SubmitArgKind::kOut:
        w.u64(a.out_size);
        break;
    }
  }
}
void encode(const GpuSubmitReply& m, Bytes& out) {
  ByteWriter w(out);
  w.u16(static_cast<uint16_t>(m.outputs.size()));
  for (const auto& o : m.outputs) {
    w.u16(o.arg_index);
    w.bytes32(o.data);
  }
}
void encode(const ModuleGlobalRequest& m, Bytes& out) {
  ByteWriter w(out);
  w.u64(m.module);
  w.str16(m.name);
}
void encode(const ModuleGlobalReply& m, Bytes& out) {
  ByteWriter w(out);
  w.u64(m.handle);
  w.u64(m.size);
  w.u8(static_cast<uint8_t>(m.space));
}
void encode(const ErrorReply& m, Bytes& out) {
  ByteWriter(out).raw(as_bytes(m.message));
}

// ---- Decoders ---------------------------------------------------------------

template <>
Result<HelloRequest> decode_payload<HelloRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  HelloRequest m;
  m.min_version = d.u16("min_version");
  m.max_version = d.u16("max_version");
  m.client_name = d.str16("client_name", l.max_name_bytes);
  if (d.ok() && m.min_version > m.max_version) {
    d.invalid("min_version > max_version");
  }
  return d.finish(std::move(m));
}

template <>
Result<HelloReply> decode_payload<HelloReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  HelloReply m;
  m.version = d.u16("version");
  m.node_id = d.str16("node_id", l.max_name_bytes);
  m.backend = d.str16("backend", l.max_name_bytes);
  auto& lim = m.limits;
  for (uint32_t* v :
       {&lim.max_token_bytes, &lim.max_payload_bytes, &lim.max_inflight, &lim.max_kernel_args,
        &lim.max_arg_bytes, &lim.max_name_bytes, &lim.max_lease_ttl_s}) {
    *v = d.u32("limits");
  }
  // A node announces values in 1..the protocol maximum (QUIC's rule for
  // transport parameters: a value out of range is a protocol error, never
  // clamped silently). max_lease_ttl_s has no protocol maximum.
  const Limits protocol;
  const std::pair<uint32_t, uint32_t> announced[] = {
      {lim.max_token_bytes, protocol.max_token_bytes},
      {lim.max_payload_bytes, protocol.max_payload_bytes},
      {lim.max_inflight, protocol.max_inflight},
      {lim.max_kernel_args, protocol.max_kernel_args},
      {lim.max_arg_bytes, protocol.max_arg_bytes},
      {lim.max_name_bytes, protocol.max_name_bytes},
      {lim.max_lease_ttl_s, UINT32_MAX},
  };
  for (const auto& [value, max] : announced) {
    if (d.ok() && (value == 0 || value > max)) {
      d.fail(Status::kBadFrame,
             "announced limit " + std::to_string(value) + " outside 1.." + std::to_string(max));
    }
  }
  size_t n = d.count16("device count", l.max_devices, kMinDeviceBytes);
  m.devices.reserve(n);
  for (size_t i = 0; i < n && d.ok(); ++i) {
    DeviceDescriptor dev;
    dev.index = d.u16("device index");
    dev.name = d.str16("device name", l.max_name_bytes);
    dev.uuid = d.fixed<16>("device uuid");
    dev.cc_major = d.u8("cc_major");
    dev.cc_minor = d.u8("cc_minor");
    dev.sm_count = d.u32("sm_count");
    dev.total_bytes = d.u64("total_bytes");
    dev.free_bytes = d.u64("free_bytes");
    m.devices.push_back(std::move(dev));
  }
  return d.finish(std::move(m));
}

template <>
Result<PingRequest> decode_payload<PingRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  PingRequest m{d.rest("ping data", l.max_ping_bytes)};
  return d.finish(std::move(m));
}
template <>
Result<PingReply> decode_payload<PingReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  PingReply m{d.rest("ping data", l.max_ping_bytes)};
  return d.finish(std::move(m));
}

template <>
Result<LeaseAcquireRequest> decode_payload<LeaseAcquireRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  LeaseAcquireRequest m;
  m.min_vram = d.u64("min_vram");
  m.ttl_s = d.u32("ttl_s");
  uint8_t excl = d.u8("exclusivity");
  m.flags = d.u8("flags");
  m.device = d.u16("device");
  m.idempotency_key = d.fixed<16>("idempotency_key");
  if (d.ok() && (m.flags & ~kKnownAcquireFlags) != 0) {
    d.fail(Status::kBadFrame, "unknown acquire flag bits");
  }
  // Value checks in field order; the first refusal is the one reported.
  if (d.ok() && m.min_vram == 0) d.invalid("min_vram must be > 0");
  if (d.ok() && m.ttl_s == 0) d.invalid("ttl_s must be > 0");
  if (d.ok() && excl > static_cast<uint8_t>(Exclusivity::kDeviceExclusive)) {
    d.invalid("unknown exclusivity class " + std::to_string(excl));
  }
  m.exclusivity = static_cast<Exclusivity>(excl);
  return d.finish(std::move(m));
}

template <>
Result<LeaseAcquireReply> decode_payload<LeaseAcquireReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  LeaseAcquireReply m;
  m.lease_id = d.u64("lease_id");
  m.device = d.u16("device");
  m.granted_bytes = d.u64("granted_bytes");
  m.expires_at_ms = d.u64("expires_at_ms");
  return d.finish(std::move(m));
}

template <>
Result<LeaseRenewRequest> decode_payload<LeaseRenewRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  LeaseRenewRequest m{d.u32("ttl_s")};
  if (d.ok() && m.ttl_s == 0) d.invalid("ttl_s must be > 0");
  return d.finish(std::move(m));
}
template <>
Result<LeaseRenewReply> decode_payload<LeaseRenewReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  LeaseRenewReply m{d.u64("expires_at_ms")};
  return d.finish(std::move(m));
}

template <>
Result<Empty> decode_payload<Empty>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  return d.finish(Empty{});
}

template <>
Result<LeaseInfo> decode_payload<LeaseInfo>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  LeaseInfo m = decode_lease_info(d);
  return d.finish(std::move(m));
}

template <>
Result<LeaseListReply> decode_payload<LeaseListReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  LeaseListReply m;
  size_t n = d.count32("lease count", l.max_list_entries, kLeaseRecordBytes);
  m.leases.reserve(n);
  for (size_t i = 0; i < n && d.ok(); ++i) m.leases.push_back(decode_lease_info(d));
  return d.finish(std::move(m));
}

template <>
Result<CapRequestRequest> decode_payload<CapRequestRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  CapRequestRequest m;
  m.permissions = d.u32("permissions");
  m.ttl_s = d.u32("ttl_s");
  return d.finish(std::move(m));
}
template <>
Result<CapRequestReply> decode_payload<CapRequestReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  CapRequestReply m{d.bytes32("token", l.max_token_bytes)};
  return d.finish(std::move(m));
}

template <>
Result<MemAllocRequest> decode_payload<MemAllocRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  MemAllocRequest m{d.u64("size")};
  if (d.ok() && m.size == 0) d.invalid("allocation size must be > 0");
  return d.finish(std::move(m));
}
template <>
Result<HandleReply> decode_payload<HandleReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  HandleReply m{d.u64("handle")};
  return d.finish(std::move(m));
}
template <>
Result<HandleRequest> decode_payload<HandleRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  HandleRequest m{d.u64("handle")};
  return d.finish(std::move(m));
}

template <>
Result<MemWriteView> decode_payload<MemWriteView>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  MemWriteView m;
  m.handle = d.u64("handle");
  m.offset = d.u64("offset");
  m.data = d.rest_view("data", l.max_payload_bytes);
  return d.finish(m);
}
// The owning form is the view, copied: one decoder for both.
template <>
Result<MemWriteRequest> decode_payload<MemWriteRequest>(ByteSpan p, const Limits& l) {
  auto v = decode_payload<MemWriteView>(p, l);
  if (!v) return std::move(v).error();
  return MemWriteRequest{v->handle, v->offset, Bytes(v->data.begin(), v->data.end())};
}
template <>
Result<MemReadRequest> decode_payload<MemReadRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  MemReadRequest m;
  m.handle = d.u64("handle");
  m.offset = d.u64("offset");
  m.length = d.u32("length");
  if (d.ok() && m.length > l.max_payload_bytes) {
    d.fail(Status::kFrameTooLarge,
           "read length " + std::to_string(m.length) + " exceeds the payload limit");
  }
  return d.finish(std::move(m));
}
template <>
Result<MemReadReply> decode_payload<MemReadReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  MemReadReply m{d.rest("data", l.max_payload_bytes)};
  return d.finish(std::move(m));
}

template <>
Result<ModuleLoadRequest> decode_payload<ModuleLoadRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  ModuleLoadRequest m;
  m.format = decode_format(d);
  m.image = d.rest("image", l.max_payload_bytes);
  if (d.ok() && m.image.empty()) d.invalid("empty module image");
  return d.finish(std::move(m));
}

template <>
Result<LaunchRequest> decode_payload<LaunchRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  LaunchRequest m;
  m.module = d.u64("module");
  m.kernel = decode_kernel_name(d);
  m.grid = d.dim3("grid");
  m.block = d.dim3("block");
  m.shared_bytes = d.u32("shared_bytes");
  uint8_t form = d.u8("arg form");
  if (d.ok() && form > static_cast<uint8_t>(ArgForm::kTyped)) {
    d.fail(Status::kBadFrame, "unknown argument form " + std::to_string(form));
  }
  m.args.form = static_cast<ArgForm>(form);
  if (m.args.form == ArgForm::kRaw) {
    size_t n = d.count16("arg count", l.max_kernel_args, kRawArgSizeBytes);
    m.args.raw_sizes.reserve(n);
    uint64_t total = 0;
    for (size_t i = 0; i < n && d.ok(); ++i) {
      uint32_t s = d.u32("arg size");
      if (d.ok() && s == 0) d.invalid("zero-sized argument");
      total += s;
      m.args.raw_sizes.push_back(s);
    }
    if (d.ok() && total > l.max_arg_bytes) {
      d.fail(Status::kFrameTooLarge,
             "arguments exceed " + std::to_string(l.max_arg_bytes) + " bytes");
    }
    m.args.raw_blob = d.bytes32("arg bytes", l.max_arg_bytes);
    if (d.ok() && m.args.raw_blob.size() != total) {
      d.fail(Status::kBadFrame, "argument bytes do not match the sum of argument sizes");
    }
  } else {
    size_t n = d.count16("arg count", l.max_kernel_args, kMinTypedArgBytes);
    m.args.typed.reserve(n);
    uint64_t total = 0;
    for (size_t i = 0; i < n && d.ok(); ++i) {
      TypedArg a;
      uint8_t kind = d.u8("arg kind");
      if (kind == static_cast<uint8_t>(TypedArgKind::kScalar)) {
        a.scalar = decode_scalar(d);
        total += a.scalar.size();
      } else if (kind == static_cast<uint8_t>(TypedArgKind::kBuffer)) {
        a.kind = TypedArgKind::kBuffer;
        a.handle = d.u64("buffer handle");
        a.offset = d.u64("buffer offset");
        total += 8;
      } else if (d.ok()) {
        d.fail(Status::kBadFrame, "unknown argument kind " + std::to_string(kind));
      }
      m.args.typed.push_back(std::move(a));
    }
    if (d.ok() && total > l.max_arg_bytes) {
      d.fail(Status::kFrameTooLarge,
             "arguments exceed " + std::to_string(l.max_arg_bytes) + " bytes");
    }
  }
  return d.finish(std::move(m));
}
template <>
Result<LaunchReply> decode_payload<LaunchReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  LaunchReply m{d.u64("launch_seq")};
  return d.finish(std::move(m));
}
template <>
Result<SyncReply> decode_payload<SyncReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  SyncReply m{d.u64("completed")};
  return d.finish(std::move(m));
}

template <>
Result<GpuSubmitRequest> decode_payload<GpuSubmitRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  GpuSubmitRequest m;
  m.format = decode_format(d);
  m.image = d.bytes32("image", l.max_payload_bytes);
  if (d.ok() && m.image.empty()) d.invalid("empty module image");
  m.kernel = decode_kernel_name(d);
  m.grid = d.dim3("grid");
  m.block = d.dim3("block");
  m.shared_bytes = d.u32("shared_bytes");
  size_t n = d.count16("arg count", l.max_kernel_args, kMinSubmitArgBytes);
  m.args.reserve(n);
  uint64_t param_bytes = 0;  // as LAUNCH: scalars at their size, buffers 8 bytes
  uint64_t reply_bytes = 2;  // the reply's output count, then one entry per out/inout
  for (size_t i = 0; i < n && d.ok(); ++i) {
    SubmitArg a;
    uint8_t kind = d.u8("arg kind");
    switch (kind) {
      case static_cast<uint8_t>(SubmitArgKind::kScalar):
        a.data = decode_scalar(d);
        param_bytes += a.data.size();
        break;
      case static_cast<uint8_t>(SubmitArgKind::kIn):
      case static_cast<uint8_t>(SubmitArgKind::kInOut):
        a.data = d.bytes32("buffer data", l.max_payload_bytes);
        if (d.ok() && a.data.empty()) d.invalid("empty input buffer");
        param_bytes += 8;
        if (kind == static_cast<uint8_t>(SubmitArgKind::kInOut)) reply_bytes += 6 + a.data.size();
        break;
      case static_cast<uint8_t>(SubmitArgKind::kOut):
        a.out_size = d.u64("out size");
        if (d.ok() && a.out_size > l.max_payload_bytes) {
          d.fail(Status::kFrameTooLarge,
                 "output buffer larger than " + std::to_string(l.max_payload_bytes) + " bytes");
        } else if (d.ok() && a.out_size == 0) {
          d.invalid("empty output buffer");
        }
        param_bytes += 8;
        reply_bytes += 6 + a.out_size;
        break;
      default:
        if (d.ok())
          d.fail(Status::kBadFrame, "unknown submit argument kind " + std::to_string(kind));
    }
    a.kind = static_cast<SubmitArgKind>(kind);
    m.args.push_back(std::move(a));
  }
  // The limits LAUNCH enforces, and a reply that can be sent: outputs that
  // could not fit one reply frame are refused before anything runs.
  if (d.ok() && param_bytes > l.max_arg_bytes) {
    d.fail(Status::kFrameTooLarge,
           "arguments exceed " + std::to_string(l.max_arg_bytes) + " bytes");
  }
  if (d.ok() && reply_bytes > l.max_payload_bytes) {
    d.fail(Status::kFrameTooLarge,
           "outputs of " + std::to_string(reply_bytes) + " bytes would exceed the payload limit");
  }
  return d.finish(std::move(m));
}
template <>
Result<GpuSubmitReply> decode_payload<GpuSubmitReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  GpuSubmitReply m;
  size_t n = d.count16("output count", l.max_kernel_args, kMinSubmitOutputBytes);
  m.outputs.reserve(n);
  for (size_t i = 0; i < n && d.ok(); ++i) {
    SubmitOutput o;
    o.arg_index = d.u16("arg_index");
    o.data = d.bytes32("output data", l.max_payload_bytes);
    m.outputs.push_back(std::move(o));
  }
  return d.finish(std::move(m));
}

template <>
Result<ModuleGlobalRequest> decode_payload<ModuleGlobalRequest>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  ModuleGlobalRequest m;
  m.module = d.u64("module");
  m.name = d.str16("name", l.max_name_bytes);
  if (d.ok() && m.name.empty()) d.invalid("empty variable name");
  return d.finish(std::move(m));
}
template <>
Result<ModuleGlobalReply> decode_payload<ModuleGlobalReply>(ByteSpan p, const Limits& l) {
  Decoder d(p, l);
  ModuleGlobalReply m;
  m.handle = d.u64("handle");
  m.size = d.u64("size");
  uint8_t space = d.u8("space");
  if (d.ok() && space > static_cast<uint8_t>(GlobalSpace::kUnknown))
    d.fail(Status::kBadFrame, "unknown variable space " + std::to_string(space));
  m.space = static_cast<GlobalSpace>(space);
  return d.finish(std::move(m));
}

template <>
Result<ErrorReply> decode_payload<ErrorReply>(ByteSpan p, const Limits& l) {
  if (p.size() > l.max_message_bytes) {
    return make_error(Status::kFrameTooLarge, "error message too long");
  }
  std::string_view s = as_chars(p);
  if (!valid_utf8(s)) return make_error(Status::kBadFrame, "error message is not valid UTF-8");
  return ErrorReply{std::string(s)};
}

// ---- Per-opcode dispatch -------------------------------------------------------

namespace {

template <typename V, typename M>
Result<V> widen(Result<M> r) {
  if (!r) return std::move(r).error();
  return V(std::move(r).value());
}

}  // namespace

namespace {

template <typename V, bool kRequest, size_t... I>
Result<V> decode_by_table(Opcode op, ByteSpan p, const Limits& l, std::index_sequence<I...>) {
  using Decoder = Result<V> (*)(ByteSpan, const Limits&);
  static constexpr std::array<Decoder, sizeof...(I)> kDecoders{{+[](ByteSpan b, const Limits& lim) {
    constexpr Opcode kOp = kOpcodeTable[I].op;
    using M = std::conditional_t<kRequest, RequestOf<kOp>, ReplyOf<kOp>>;
    return widen<V>(decode_payload<M>(b, lim));
  }...}};
  for (size_t i = 0; i < kOpcodeTable.size(); ++i) {
    if (kOpcodeTable[i].op == op) return kDecoders[i](p, l);
  }
  return make_error(Status::kUnknownOpcode, "unknown opcode");
}

}  // namespace

Result<RequestMessage> decode_request(Opcode op, ByteSpan p, const Limits& l) {
  return decode_by_table<RequestMessage, true>(op, p, l,
                                               std::make_index_sequence<kOpcodeTable.size()>{});
}

Result<ReplyMessage> decode_reply(Opcode op, ByteSpan p, const Limits& l) {
  return decode_by_table<ReplyMessage, false>(op, p, l,
                                              std::make_index_sequence<kOpcodeTable.size()>{});
}

Bytes encode_request(const RequestMessage& m) {
  return std::visit([](const auto& v) { return encode_payload(v); }, m);
}
Bytes encode_reply(const ReplyMessage& m) {
  return std::visit([](const auto& v) { return encode_payload(v); }, m);
}

size_t kernel_args_count(const KernelArgs& a) noexcept {
  return a.form == ArgForm::kRaw ? a.raw_sizes.size() : a.typed.size();
}

}  // namespace gpulease::wire
