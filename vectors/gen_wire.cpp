// gen_wire: writes the golden wire vectors (vectors/wire/*.json) and,
// optionally, the fuzz seed corpora derived from them.
//
//   gen_wire OUT_DIR [--corpus CORPUS_DIR] [--doc]
//
// Every value is fixed (no clock, no randomness), so the output is the same
// byte for byte on every run; a ctest test re-runs the generator and compares
// it with the checked-in files. The generator checks itself: every valid
// vector must decode to its fields and re-encode to its bytes, and every
// invalid one must fail with exactly the status it records, or it aborts.
//
// --doc prints each valid vector's frame split into header fields, token and
// payload (the hex examples of docs/PROTOCOL.md are pasted from it).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "wire_json.hpp"

namespace fs = std::filesystem;
using namespace gpulease;
using namespace gpulease::wire;
using gpulease::vectors::DecodedFrame;
using gpulease::vectors::Json;
using gpulease::vectors::to_hex;

namespace {

struct Vector {
  std::string id;
  std::string description;
  uint16_t opcode = 0;
  bool reply = false;
  Bytes frame;
  std::optional<Status> error;  // set for invalid vectors
  Json fields;
};

struct File {
  std::string name;
  std::string description;
  std::vector<Vector> vectors;
};

[[noreturn]] void die(const std::string& msg) {
  std::cerr << "gen_wire: " << msg << "\n";
  std::exit(1);
}

const Limits kLimits{};

Bytes str_bytes(std::string_view s) {
  return to_bytes(s);
}

// A placeholder token section: the wire layer carries it opaquely. Real
// tokens (docs/TOKENS.md) are longer; a node answers these with UNAUTHENTICATED.
const Bytes kToken = str_bytes("TOKEN:tenant-a:1");

// A short PTX module (the `scale` kernel of recipe 30, abridged).
const std::string kPtx =
    ".version 7.5\n.target sm_75\n.address_size 64\n.visible .entry scale(.param .u64 p){ret;}\n";

constexpr uint64_t kLease = 42;
constexpr uint64_t kBuffer = 0x00007f0000200000;  // a device address
constexpr uint64_t kModule = 1;

Bytes le32(uint32_t v) {
  Bytes b(4);
  store_le32(b.data(), v);
  return b;
}
Bytes le64(uint64_t v) {
  Bytes b(8);
  store_le64(b.data(), v);
  return b;
}
Bytes f32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return le32(u);
}
Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

FrameHeader request_header(Opcode op, uint64_t request_id, uint64_t lease_id) {
  FrameHeader h;
  h.opcode = op;
  h.request_id = request_id;
  h.lease_id = lease_id;
  return h;
}
FrameHeader reply_header(Opcode op, uint64_t request_id, uint64_t lease_id,
                         Status s = Status::kOk) {
  FrameHeader h = request_header(op, request_id, lease_id);
  h.flags = kFlagReply;
  h.status = s;
  return h;
}

// Decodes `v.frame`, and checks the record against the decoder both ways.
void check_valid(Vector& v) {
  auto d = vectors::decode_full_frame(v.frame, kLimits);
  if (!d) die(v.id + ": valid vector does not decode: " + d.error().message);
  v.fields = vectors::frame_to_json(*d);
  DecodedFrame back = vectors::frame_from_json(static_cast<Opcode>(v.opcode), v.reply, v.fields);
  if (vectors::encode_full_frame(back) != v.frame)
    die(v.id + ": fields do not re-encode to the frame");
}

void check_invalid(const Vector& v) {
  auto d = vectors::decode_full_frame(v.frame, kLimits);
  if (d) die(v.id + ": invalid vector decodes");
  if (d.status() != *v.error) {
    die(v.id + ": expected " + std::string(status_name(*v.error)) + ", got " +
        std::string(status_name(d.status())) + " (" + d.error().message + ")");
  }
}

Vector valid_frame(std::string id, std::string desc, const DecodedFrame& f) {
  Vector v{std::move(id),
           std::move(desc),
           static_cast<uint16_t>(f.header.opcode),
           f.header.is_reply(),
           vectors::encode_full_frame(f),
           std::nullopt,
           {}};
  check_valid(v);
  return v;
}

Vector request(std::string id, std::string desc, Opcode op, RequestMessage m, uint64_t rid,
               uint64_t lease, Bytes token = kToken) {
  return valid_frame(std::move(id), std::move(desc),
                     DecodedFrame{request_header(op, rid, lease), std::move(token), std::move(m)});
}
Vector reply(std::string id, std::string desc, Opcode op, ReplyMessage m, uint64_t rid,
             uint64_t lease) {
  return valid_frame(std::move(id), std::move(desc),
                     DecodedFrame{reply_header(op, rid, lease), {}, std::move(m)});
}
Vector error_reply(std::string id, std::string desc, Opcode op, Status s, std::string msg,
                   uint64_t rid, uint64_t lease) {
  return valid_frame(std::move(id), std::move(desc),
                     DecodedFrame{reply_header(op, rid, lease, s), {}, ErrorReply{std::move(msg)}});
}

Vector invalid(std::string id, std::string desc, uint16_t opcode, bool is_reply, Bytes frame,
               Status s) {
  Vector v{std::move(id), std::move(desc), opcode, is_reply, std::move(frame), s, Json::object()};
  check_invalid(v);
  return v;
}

// A frame whose header and checksum are right but whose payload is `payload`
// as given (for payload-level rejections).
Bytes raw_frame(FrameHeader h, const Bytes& token, const Bytes& payload) {
  return encode_frame(h, token, payload);
}
Vector bad_request_payload(std::string id, std::string desc, Opcode op, Bytes payload, Status s,
                           uint64_t lease = kLease) {
  Bytes token = (op == Opcode::kHello || op == Opcode::kPing) ? Bytes{} : kToken;
  return invalid(std::move(id), std::move(desc), static_cast<uint16_t>(op), false,
                 raw_frame(request_header(op, 900, lease), token, payload), s);
}
Vector bad_reply_payload(std::string id, std::string desc, Opcode op, Bytes payload, Status s,
                         Status header_status = Status::kOk) {
  return invalid(std::move(id), std::move(desc), static_cast<uint16_t>(op), true,
                 raw_frame(reply_header(op, 900, kLease, header_status), {}, payload), s);
}

// Recomputes the checksum of a (possibly tampered) frame over all its bytes.
void reseal(Bytes& f) {
  ByteSpan all(f);
  uint64_t c = frame_checksum(all.first(kHeaderSize), {}, all.subspan(kHeaderSize));
  store_le64(f.data() + kOffChecksum, c);
}

// ---- Valid requests ---------------------------------------------------------------

LaunchRequest scale_launch_raw() {
  LaunchRequest m;
  m.module = kModule;
  m.kernel = "scale";
  m.grid = {4, 1, 1};
  m.block = {256, 1, 1};
  m.args.form = ArgForm::kRaw;
  m.args.raw_sizes = {8, 4, 4};  // (float* data, int n, float factor)
  m.args.raw_blob = concat({le64(kBuffer), le32(1024), f32(2.0f)});
  return m;
}

LaunchRequest scale_launch_typed() {
  LaunchRequest m = scale_launch_raw();
  m.args = {};
  m.args.form = ArgForm::kTyped;
  m.args.typed = {TypedArg{TypedArgKind::kBuffer, {}, kBuffer, 0},
                  TypedArg{TypedArgKind::kScalar, le32(1024), 0, 0},
                  TypedArg{TypedArgKind::kScalar, f32(2.0f), 0, 0}};
  return m;
}

GpuSubmitRequest submit_all_kinds() {
  GpuSubmitRequest m;
  m.format = ImageFormat::kPtx;
  m.image = str_bytes(kPtx);
  m.kernel = "axpy";
  m.grid = {1, 1, 1};
  m.block = {4, 1, 1};
  m.args = {SubmitArg{SubmitArgKind::kScalar, f32(3.0f), 0},
            SubmitArg{SubmitArgKind::kIn, concat({f32(1), f32(2), f32(3), f32(4)}), 0},
            SubmitArg{SubmitArgKind::kInOut, concat({f32(10), f32(20), f32(30), f32(40)}), 0},
            SubmitArg{SubmitArgKind::kOut, {}, 16}, SubmitArg{SubmitArgKind::kScalar, le32(4), 0}};
  return m;
}

HelloReply hello_reply() {
  HelloReply m;
  m.version = 1;
  m.node_id = "node-a";
  m.backend = "sim";
  m.limits = {1024, 64u << 20, 64, 128, 4096, 256, 86400};
  DeviceDescriptor d;
  d.index = 0;
  d.name = "sim0";
  for (uint8_t i = 0; i < 16; ++i) d.uuid[i] = static_cast<uint8_t>(0xa0 + i);
  d.cc_major = 7;
  d.cc_minor = 5;
  d.sm_count = 40;
  d.total_bytes = 16ull << 30;
  d.free_bytes = 15ull << 30;
  m.devices.push_back(d);
  return m;
}

LeaseInfo lease_info(uint64_t id, LeaseState s) {
  LeaseInfo l;
  l.lease_id = id;
  l.state = s;
  l.exclusivity = Exclusivity::kShared;
  l.device = 0;
  l.quota_bytes = 256ull << 20;
  l.used_bytes = 4096;
  l.expires_at_ms = 1700000600000;
  l.remaining_ms = 600000;
  l.buffers = 1;
  l.modules = 1;
  return l;
}

std::vector<Vector> requests() {
  std::vector<Vector> v;
  v.push_back(request("request.hello", "HELLO offering versions 1..1, empty token section",
                      Opcode::kHello, HelloRequest{1, 1, "example-client/1.0"}, 1, 0, {}));
  v.push_back(request("request.hello.range", "HELLO offering versions 1..3 (the node picks 1)",
                      Opcode::kHello, HelloRequest{1, 3, ""}, 2, 0, {}));
  v.push_back(request("request.ping", "PING with 4 bytes of echo data and an empty token section",
                      Opcode::kPing, PingRequest{str_bytes("ping")}, 3, 0, {}));
  v.push_back(request("request.ping.token", "PING with an empty payload and a token section",
                      Opcode::kPing, PingRequest{}, 4, 0));
  {
    LeaseAcquireRequest m{256ull << 20, 600, Exclusivity::kShared, 0, kAnyDevice, {}};
    v.push_back(request("request.lease_acquire",
                        "LEASE_ACQUIRE 256 MiB for 600 s, shared, any device, no idempotency key",
                        Opcode::kLeaseAcquire, m, 5, 0));
    IdempotencyKey key{};
    for (uint8_t i = 0; i < 16; ++i) key[i] = static_cast<uint8_t>(i + 1);
    m = {1ull << 30, 3600, Exclusivity::kSessionExclusive, kAcquireReleaseOnDisconnect, 0, key};
    v.push_back(request("request.lease_acquire.session_exclusive",
                        "LEASE_ACQUIRE 1 GiB on device 0, session-exclusive, release on "
                        "disconnect, idempotency key 01..10",
                        Opcode::kLeaseAcquire, m, 6, 0));
    m = {~0ull, ~0u, Exclusivity::kDeviceExclusive, 0, 0xfffe, {}};
    v.push_back(request(
        "request.lease_acquire.device_exclusive.edge",
        "LEASE_ACQUIRE device-exclusive with the largest min_vram and ttl_s and device 0xfffe",
        Opcode::kLeaseAcquire, m, ~0ull, 0));
  }
  v.push_back(request("request.lease_renew", "LEASE_RENEW by 600 s", Opcode::kLeaseRenew,
                      LeaseRenewRequest{600}, 7, kLease));
  v.push_back(request("request.lease_release", "LEASE_RELEASE (empty payload)",
                      Opcode::kLeaseRelease, Empty{}, 8, kLease));
  v.push_back(request("request.lease_query", "LEASE_QUERY (empty payload)", Opcode::kLeaseQuery,
                      Empty{}, 9, kLease));
  v.push_back(request("request.lease_list", "LEASE_LIST of the tenant's leases (lease_id 0)",
                      Opcode::kLeaseList, Empty{}, 10, 0));
  v.push_back(
      request("request.cap_request",
              "CAP_REQUEST: permissions 0x0000007e (all but lease_acquire and admin), ttl 300 s, "
              "bound to lease 42",
              Opcode::kCapRequest, CapRequestRequest{0x7e, 300}, 11, kLease));
  v.push_back(request("request.mem_alloc", "MEM_ALLOC 4096 bytes", Opcode::kMemAlloc,
                      MemAllocRequest{4096}, 12, kLease));
  v.push_back(request("request.mem_free", "MEM_FREE of a buffer handle", Opcode::kMemFree,
                      HandleRequest{kBuffer}, 13, kLease));
  v.push_back(request(
      "request.mem_write", "MEM_WRITE 16 bytes (four f32 1.0) at offset 0", Opcode::kMemWrite,
      MemWriteRequest{kBuffer, 0, concat({f32(1), f32(1), f32(1), f32(1)})}, 14, kLease));
  v.push_back(request("request.mem_write.chunk",
                      "MEM_WRITE of a later chunk: 4 bytes at offset 1 MiB", Opcode::kMemWrite,
                      MemWriteRequest{kBuffer, 1u << 20, str_bytes("\x01\x02\x03\x04")}, 15,
                      kLease));
  v.push_back(request("request.mem_write.empty", "MEM_WRITE of zero bytes (valid; writes nothing)",
                      Opcode::kMemWrite, MemWriteRequest{kBuffer, 4096, {}}, 16, kLease));
  v.push_back(request("request.mem_read", "MEM_READ 16 bytes at offset 0", Opcode::kMemRead,
                      MemReadRequest{kBuffer, 0, 16}, 17, kLease));
  v.push_back(request("request.mem_read.max", "MEM_READ of max_payload_bytes (the largest chunk)",
                      Opcode::kMemRead, MemReadRequest{kBuffer, 0, kLimits.max_payload_bytes}, 18,
                      kLease));
  v.push_back(request("request.module_load", "MODULE_LOAD of a PTX image", Opcode::kModuleLoad,
                      ModuleLoadRequest{ImageFormat::kPtx, str_bytes(kPtx)}, 19, kLease));
  v.push_back(request("request.module_load.cubin", "MODULE_LOAD of a (fake, 7-byte) cubin image",
                      Opcode::kModuleLoad,
                      ModuleLoadRequest{ImageFormat::kCubin, str_bytes("\x7f"
                                                                       "ELF\x02\x01\x01\x00")},
                      20, kLease));
  v.push_back(request("request.launch.raw",
                      "LAUNCH scale<<<4,256>>>(ptr, 1024, 2.0f) with raw arguments (sizes 8,4,4)",
                      Opcode::kLaunch, scale_launch_raw(), 21, kLease));
  v.push_back(request("request.launch.typed",
                      "LAUNCH scale<<<4,256>>> with typed arguments: buffer (handle, offset 0), "
                      "scalar 4 bytes, scalar 4 bytes",
                      Opcode::kLaunch, scale_launch_typed(), 22, kLease));
  {
    LaunchRequest m = scale_launch_raw();
    m.args = {};
    m.grid = {0x7fffffff, 65535, 65535};
    m.block = {1024, 1, 1};
    m.shared_bytes = 228u << 10;
    v.push_back(request("request.launch.no_args.edge",
                        "LAUNCH with zero raw arguments, the largest grid, block 1024 and 228 KiB "
                        "dynamic shared memory",
                        Opcode::kLaunch, m, 23, kLease));
    LaunchRequest t = scale_launch_typed();
    t.args.typed = {TypedArg{TypedArgKind::kBuffer, {}, kBuffer, 4096}};
    v.push_back(request("request.launch.typed.offset",
                        "LAUNCH with one typed buffer argument at byte offset 4096",
                        Opcode::kLaunch, t, 24, kLease));
  }
  v.push_back(request("request.sync", "SYNC (empty payload)", Opcode::kSync, Empty{}, 25, kLease));
  v.push_back(request("request.module_unload", "MODULE_UNLOAD of a module handle",
                      Opcode::kModuleUnload, HandleRequest{kModule}, 26, kLease));
  v.push_back(request("request.gpu_submit",
                      "GPU_SUBMIT axpy with every argument kind: scalar f32, in 16 bytes, inout 16 "
                      "bytes, out 16 bytes, scalar i32",
                      Opcode::kGpuSubmit, submit_all_kinds(), 27, kLease));
  {
    GpuSubmitRequest m = submit_all_kinds();
    m.args = {};
    v.push_back(request("request.gpu_submit.no_args", "GPU_SUBMIT with no arguments",
                        Opcode::kGpuSubmit, m, 28, kLease));
  }
  v.push_back(request("request.module_global", "MODULE_GLOBAL: variable \"coeffs\" of module 1",
                      Opcode::kModuleGlobal, ModuleGlobalRequest{kModule, "coeffs"}, 29, kLease));
  return v;
}

// ---- Valid replies ----------------------------------------------------------------

std::vector<Vector> replies() {
  std::vector<Vector> v;
  v.push_back(reply("reply.hello",
                    "HELLO reply: version 1, node-a, sim backend, the default limits, one device",
                    Opcode::kHello, hello_reply(), 1, 0));
  {
    HelloReply m = hello_reply();
    m.devices.clear();
    m.backend = "cuda";
    v.push_back(
        reply("reply.hello.no_devices", "HELLO reply listing no devices", Opcode::kHello, m, 2, 0));
  }
  v.push_back(reply("reply.ping", "PING reply echoing 4 bytes", Opcode::kPing,
                    PingReply{str_bytes("ping")}, 3, 0));
  v.push_back(reply(
      "reply.lease_acquire",
      "LEASE_ACQUIRE reply: lease 42 on device 0, 256 MiB, expires at 1700000600000 ms",
      Opcode::kLeaseAcquire, LeaseAcquireReply{kLease, 0, 256ull << 20, 1700000600000}, 5, 0));
  v.push_back(reply("reply.lease_renew", "LEASE_RENEW reply with the new expiry",
                    Opcode::kLeaseRenew, LeaseRenewReply{1700001200000}, 7, kLease));
  v.push_back(reply("reply.lease_release", "LEASE_RELEASE reply (empty payload)",
                    Opcode::kLeaseRelease, Empty{}, 8, kLease));
  v.push_back(reply("reply.lease_query",
                    "LEASE_QUERY reply: an active lease with one buffer and one module",
                    Opcode::kLeaseQuery, lease_info(kLease, LeaseState::kActive), 9, kLease));
  {
    LeaseInfo f = lease_info(43, LeaseState::kFaulted);
    f.exclusivity = Exclusivity::kDeviceExclusive;
    f.device = 1;
    f.remaining_ms = 0;
    v.push_back(reply("reply.lease_list",
                      "LEASE_LIST reply with two leases (active shared; faulted device-exclusive)",
                      Opcode::kLeaseList,
                      LeaseListReply{{lease_info(kLease, LeaseState::kActive), f}}, 10, 0));
    v.push_back(reply("reply.lease_list.empty", "LEASE_LIST reply with no leases",
                      Opcode::kLeaseList, LeaseListReply{}, 10, 0));
  }
  v.push_back(reply(
      "reply.cap_request", "CAP_REQUEST reply carrying a (placeholder) narrower token",
      Opcode::kCapRequest, CapRequestReply{str_bytes("TOKEN:tenant-a:lease-42")}, 11, kLease));
  v.push_back(reply("reply.mem_alloc", "MEM_ALLOC reply: the handle is the buffer's device address",
                    Opcode::kMemAlloc, HandleReply{kBuffer}, 12, kLease));
  v.push_back(reply("reply.mem_free", "MEM_FREE reply (empty payload)", Opcode::kMemFree, Empty{},
                    13, kLease));
  v.push_back(reply("reply.mem_write", "MEM_WRITE reply (empty payload)", Opcode::kMemWrite,
                    Empty{}, 14, kLease));
  v.push_back(reply("reply.mem_read", "MEM_READ reply with 16 bytes (four f32 12.0)",
                    Opcode::kMemRead, MemReadReply{concat({f32(12), f32(12), f32(12), f32(12)})},
                    17, kLease));
  v.push_back(reply("reply.module_load", "MODULE_LOAD reply: module handle 1", Opcode::kModuleLoad,
                    HandleReply{kModule}, 19, kLease));
  v.push_back(reply("reply.launch", "LAUNCH reply: launch 1 queued", Opcode::kLaunch,
                    LaunchReply{1}, 21, kLease));
  v.push_back(reply("reply.sync", "SYNC reply: 2 launches completed", Opcode::kSync, SyncReply{2},
                    25, kLease));
  v.push_back(reply("reply.module_unload", "MODULE_UNLOAD reply (empty payload)",
                    Opcode::kModuleUnload, Empty{}, 26, kLease));
  v.push_back(reply("reply.gpu_submit",
                    "GPU_SUBMIT reply: outputs of arguments 2 (inout) and 3 (out), in order",
                    Opcode::kGpuSubmit,
                    GpuSubmitReply{{SubmitOutput{2, concat({f32(13), f32(26), f32(39), f32(52)})},
                                    SubmitOutput{3, concat({f32(3), f32(6), f32(9), f32(12)})}}},
                    27, kLease));
  v.push_back(reply("reply.gpu_submit.no_outputs", "GPU_SUBMIT reply with no outputs",
                    Opcode::kGpuSubmit, GpuSubmitReply{}, 28, kLease));
  v.push_back(reply("reply.module_global",
                    "MODULE_GLOBAL reply: a 64-byte .const variable at its device address",
                    Opcode::kModuleGlobal,
                    ModuleGlobalReply{0x0000300000000000ull, 64, GlobalSpace::kConst}, 29, kLease));
  v.push_back(reply("reply.module_global.global", "MODULE_GLOBAL reply: a 4-byte .global variable",
                    Opcode::kModuleGlobal,
                    ModuleGlobalReply{0x0000300000000040ull, 4, GlobalSpace::kGlobal}, 30, kLease));

  // Error replies: status in the header, UTF-8 message as the payload.
  v.push_back(error_reply("reply.error.lease_expired", "LEASE_EXPIRED error reply to MEM_WRITE",
                          Opcode::kMemWrite, Status::kLeaseExpired, "lease 42 expired", 14,
                          kLease));
  v.push_back(
      error_reply("reply.error.alloc_failed", "ALLOC_FAILED error reply to MEM_ALLOC",
                  Opcode::kMemAlloc, Status::kAllocFailed,
                  "allocation of 4096 bytes exceeds the lease quota (268435456 of 268435456 used)",
                  12, kLease));
  v.push_back(
      error_reply("reply.error.load_failed", "LOAD_FAILED error reply carrying a JIT log line",
                  Opcode::kModuleLoad, Status::kLoadFailed,
                  "ptxas application ptx input, line 4; error   : Unknown symbol 'x'", 19, kLease));
  v.push_back(error_reply("reply.error.sync_failed",
                          "SYNC_FAILED error reply naming the CUDA error", Opcode::kSync,
                          Status::kSyncFailed, "CUDA_ERROR_ILLEGAL_ADDRESS", 25, kLease));
  v.push_back(error_reply("reply.error.unauthenticated",
                          "UNAUTHENTICATED error reply with an empty message",
                          Opcode::kLeaseAcquire, Status::kUnauthenticated, "", 5, 0));
  v.push_back(error_reply(
      "reply.error.unsupported.utf8",
      "UNSUPPORTED error reply to LEASE_ACQUIRE with a non-ASCII UTF-8 message",
      Opcode::kLeaseAcquire, Status::kUnsupported,
      "session-exclusive leases need CUDA green contexts \xe2\x80\x94 not on backend sim", 6, 0));
  v.push_back(error_reply("reply.error.busy", "BUSY error reply to GPU_SUBMIT", Opcode::kGpuSubmit,
                          Status::kBusy, "too many requests in flight", 27, kLease));
  {
    // Error replies echo the request's opcode even when it is undefined (or
    // 0 when the header could not be read), so clients match them by request_id.
    DecodedFrame f{reply_header(Opcode::kPing, 31, 0, Status::kUnknownOpcode),
                   {},
                   ErrorReply{"unknown opcode 30583"}};
    f.header.opcode = static_cast<Opcode>(0x7777);
    v.push_back(valid_frame(
        "reply.error.unknown_opcode",
        "UNKNOWN_OPCODE error reply echoing the undefined opcode 0x7777 of the request", f));
    f = DecodedFrame{
        reply_header(Opcode::kPing, 0, 0, Status::kBadFrame), {}, ErrorReply{"bad magic"}};
    f.header.opcode = static_cast<Opcode>(0);
    v.push_back(valid_frame("reply.error.bad_magic",
                            "BAD_FRAME error reply to a frame with a bad magic: opcode 0 (the node "
                            "closes the connection after it)",
                            f));
  }
  v.push_back(error_reply("reply.error.max_message",
                          "INTERNAL error reply with a message of exactly max_message_bytes (1024)",
                          Opcode::kPing, Status::kInternal,
                          std::string(kLimits.max_message_bytes, 'x'), 3, 0));
  return v;
}

// ---- Frame-level rejections -----------------------------------------------------

std::vector<Vector> frames_invalid() {
  std::vector<Vector> v;
  const uint16_t alloc = static_cast<uint16_t>(Opcode::kMemAlloc);
  const Bytes base = vectors::encode_full_frame(
      DecodedFrame{request_header(Opcode::kMemAlloc, 12, kLease), kToken, MemAllocRequest{4096}});
  auto with = [&](std::function<void(Bytes&)> edit, bool seal) {
    Bytes f = base;
    edit(f);
    if (seal) reseal(f);
    return f;
  };
  auto bad = [&](std::string id, std::string desc, Bytes f, Status s, uint16_t op = 0x0601,
                 bool rep = false) {
    v.push_back(invalid(std::move(id), std::move(desc), op, rep, std::move(f), s));
  };

  // Truncation at every header field boundary, and inside token and payload.
  struct Cut {
    size_t at;
    const char* where;
  };
  for (Cut c : {Cut{0, "empty input"}, Cut{4, "after magic"}, Cut{6, "after version"},
                Cut{8, "after opcode"}, Cut{10, "after flags"}, Cut{12, "after status"},
                Cut{16, "after token_len"}, Cut{24, "after request_id"}, Cut{32, "after lease_id"},
                Cut{36, "after payload_len"}, Cut{40, "after reserved"},
                Cut{47, "one byte short of the header"},
                Cut{48, "after the header (token and payload missing)"},
                Cut{48 + 5, "inside the token section"},
                Cut{48 + kToken.size(), "after the token section (payload missing)"},
                Cut{base.size() - 1, "one byte short of the payload"}}) {
    bad("frame.truncated." + std::to_string(c.at),
        "MEM_ALLOC frame truncated to " + std::to_string(c.at) + " bytes: " + c.where,
        Bytes(base.begin(), base.begin() + c.at), Status::kBadFrame);
  }

  bad("frame.bad_magic", "magic 'GPLT' instead of 'GPLS'",
      with([](Bytes& f) { f[3] = std::byte{'T'}; }, true), Status::kBadFrame);
  bad("frame.bad_magic.big_endian", "magic written big-endian (53 4c 50 47)",
      with([](Bytes& f) { store_le32(f.data(), 0x47504C53); }, true), Status::kBadFrame);
  for (uint16_t ver : {uint16_t{0}, uint16_t{2}, uint16_t{0xffff}}) {
    bad("frame.unknown_version." + std::to_string(ver), "header version " + std::to_string(ver),
        with([&](Bytes& f) { store_le16(f.data() + kOffVersion, ver); }, true),
        Status::kUnsupportedVersion);
  }
  for (uint16_t op :
       {uint16_t{0x0000}, uint16_t{0x0003}, uint16_t{0x0600}, uint16_t{0x060b}, uint16_t{0xffff}}) {
    bad("frame.unknown_opcode." + vectors::opcode_label(op),
        "opcode " + vectors::opcode_label(op) + " is not defined",
        with([&](Bytes& f) { store_le16(f.data() + kOffOpcode, op); }, true),
        Status::kUnknownOpcode, op);
  }
  for (uint16_t flag : {uint16_t{0x0002}, uint16_t{0x0080}, uint16_t{0x8000}}) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%04x", flag);
    bad(std::string("frame.unknown_flag.") + buf, std::string("undefined flag bit ") + buf + " set",
        with([&](Bytes& f) { store_le16(f.data() + kOffFlags, flag); }, true), Status::kBadFrame);
  }
  bad("frame.reserved_nonzero", "reserved header field is 1",
      with([](Bytes& f) { store_le32(f.data() + kOffReserved, 1); }, true), Status::kBadFrame);
  bad("frame.reserved_nonzero.high", "reserved header field is 0x80000000",
      with([](Bytes& f) { store_le32(f.data() + kOffReserved, 0x80000000); }, true),
      Status::kBadFrame);
  bad("frame.status_in_request", "request frame with status 10 (LEASE_NOT_FOUND) in its header",
      with([](Bytes& f) { store_le16(f.data() + kOffStatus, 10); }, true), Status::kBadFrame);
  {
    Bytes f = encode_frame(reply_header(Opcode::kMemAlloc, 12, kLease), kToken, le64(kBuffer));
    bad("frame.token_in_reply", "reply frame with a token section", f, Status::kBadFrame, alloc,
        true);
    f = encode_frame(reply_header(Opcode::kMemAlloc, 12, kLease), {}, le64(kBuffer));
    store_le16(f.data() + kOffStatus, kMaxStatusValue + 1);
    reseal(f);
    bad("frame.unknown_status_in_reply",
        "reply frame with status " + std::to_string(kMaxStatusValue + 1) + " (not defined)", f,
        Status::kBadFrame, alloc, true);
    f = encode_frame(reply_header(Opcode::kMemAlloc, 12, kLease), {}, le64(kBuffer));
    store_le16(f.data() + kOffOpcode, 0x7777);
    reseal(f);
    bad("frame.unknown_opcode_in_ok_reply",
        "OK reply with the undefined opcode 0x7777 (only error replies may echo one)", f,
        Status::kUnknownOpcode, 0x7777, true);
  }
  bad("frame.bad_checksum", "checksum with its lowest bit flipped",
      with([](Bytes& f) { f[kOffChecksum] ^= std::byte{1}; }, false), Status::kChecksumMismatch);
  bad("frame.bad_checksum.zero", "checksum field left zero",
      with([](Bytes& f) { store_le64(f.data() + kOffChecksum, 0); }, false),
      Status::kChecksumMismatch);
  bad("frame.bad_checksum.token_bit", "one bit of the token section flipped after sealing",
      with([](Bytes& f) { f[kHeaderSize] ^= std::byte{0x80}; }, false), Status::kChecksumMismatch);
  bad("frame.bad_checksum.payload_bit", "one bit of the payload flipped after sealing",
      with([](Bytes& f) { f.back() ^= std::byte{0x01}; }, false), Status::kChecksumMismatch);
  bad("frame.bad_checksum.header_bit", "request_id bit flipped after sealing",
      with([](Bytes& f) { f[kOffRequestId] ^= std::byte{0x04}; }, false),
      Status::kChecksumMismatch);
  bad("frame.bad_checksum.big_endian", "checksum stored big-endian",
      with(
          [](Bytes& f) {
            uint64_t c = load_le64(f.data() + kOffChecksum);
            for (int i = 0; i < 8; ++i) f[kOffChecksum + i] = std::byte((c >> (56 - 8 * i)) & 0xff);
          },
          false),
      Status::kChecksumMismatch);

  // Lengths over the limits: rejected from the header alone.
  auto header_only = [&](uint32_t token_len, uint32_t payload_len) {
    Bytes f(base.begin(), base.begin() + kHeaderSize);
    store_le32(f.data() + kOffTokenLen, token_len);
    store_le32(f.data() + kOffPayloadLen, payload_len);
    reseal(f);
    return f;
  };
  bad("frame.token_len_too_large", "token_len 1025 (max_token_bytes + 1); only the header is sent",
      header_only(kLimits.max_token_bytes + 1, 8), Status::kFrameTooLarge);
  bad("frame.token_len_too_large.max", "token_len 0xffffffff", header_only(0xffffffff, 8),
      Status::kFrameTooLarge);
  bad("frame.payload_len_too_large",
      "payload_len 64 MiB + 1 (max_payload_bytes + 1); only the header is sent",
      header_only(static_cast<uint32_t>(kToken.size()), kLimits.max_payload_bytes + 1),
      Status::kFrameTooLarge);
  bad("frame.payload_len_too_large.max", "payload_len 0xffffffff",
      header_only(static_cast<uint32_t>(kToken.size()), 0xffffffff), Status::kFrameTooLarge);

  // Two faults in one frame: the first check in PROTOCOL.md's order names
  // the status (fatal checks, magic, version and lengths, before the others;
  // every header check before the checksum).
  auto two = [&](std::string id, std::string desc, std::function<void(Bytes&)> edit, bool seal,
                 Status s, uint16_t op = 0x0601) {
    bad("frame.two_faults." + id, std::move(desc), with(std::move(edit), seal), s, op);
  };
  two(
      "bad_magic_and_version", "bad magic and version 2: magic is checked first",
      [](Bytes& f) {
        f[3] = std::byte{'T'};
        store_le16(f.data() + kOffVersion, 2);
      },
      true, Status::kBadFrame);
  two(
      "version_and_flag", "version 2 and flag bit 0x0002: version is checked first",
      [](Bytes& f) {
        store_le16(f.data() + kOffVersion, 2);
        store_le16(f.data() + kOffFlags, 2);
      },
      true, Status::kUnsupportedVersion);
  {
    Bytes f = header_only(kLimits.max_token_bytes + 1, 8);
    store_le16(f.data() + kOffFlags, 2);
    reseal(f);
    bad("frame.two_faults.flag_and_token_len",
        "flag bit 0x0002 and token_len 1025: the length (which closes the connection) is "
        "checked first; only the header is sent",
        f, Status::kFrameTooLarge);
    f = header_only(static_cast<uint32_t>(kToken.size()), kLimits.max_payload_bytes + 1);
    store_le16(f.data() + kOffOpcode, 0x0777);
    reseal(f);
    bad("frame.two_faults.unknown_opcode_and_payload_len",
        "undefined opcode 0x0777 and payload_len 64 MiB + 1: the length is checked first; only "
        "the header is sent",
        f, Status::kFrameTooLarge, 0x0777);
  }
  two(
      "reserved_and_unknown_opcode", "reserved field 1 and undefined opcode 0x0777: reserved first",
      [](Bytes& f) {
        store_le32(f.data() + kOffReserved, 1);
        store_le16(f.data() + kOffOpcode, 0x0777);
      },
      true, Status::kBadFrame, 0x0777);
  two(
      "flag_and_checksum", "flag bit 0x0002 and a wrong checksum: header checks come first",
      [](Bytes& f) {
        store_le16(f.data() + kOffFlags, 2);
        f[kOffChecksum] ^= std::byte{1};
      },
      false, Status::kBadFrame);
  two(
      "unknown_opcode_and_checksum",
      "undefined opcode 0x0777 and a wrong checksum: header checks come first",
      [](Bytes& f) {
        store_le16(f.data() + kOffOpcode, 0x0777);
        f[kOffChecksum] ^= std::byte{1};
      },
      false, Status::kUnknownOpcode, 0x0777);
  two(
      "status_in_request_and_checksum",
      "a request with status 10 and a wrong checksum: header checks come first",
      [](Bytes& f) {
        store_le16(f.data() + kOffStatus, 10);
        f[kOffChecksum] ^= std::byte{1};
      },
      false, Status::kBadFrame);
  two(
      "trailing_byte_and_checksum",
      "one byte after the declared payload and a wrong checksum: lengths before the checksum",
      [](Bytes& f) {
        f.push_back(std::byte{0});
        f[kOffChecksum] ^= std::byte{1};
      },
      false, Status::kBadFrame);

  // Inconsistent lengths.
  bad("frame.longer_than_declared", "one byte after the declared payload",
      with([](Bytes& f) { f.push_back(std::byte{0}); }, true), Status::kBadFrame);
  bad("frame.shorter_than_declared", "payload_len one larger than the bytes that follow",
      with([](Bytes& f) { store_le32(f.data() + kOffPayloadLen, 9); }, true), Status::kBadFrame);
  bad("frame.token_len_too_small",
      "token_len one smaller (the last token byte becomes payload): payload is 9 bytes",
      with(
          [](Bytes& f) {
            store_le32(f.data() + kOffTokenLen, load_le32(f.data() + kOffTokenLen) - 1);
            store_le32(f.data() + kOffPayloadLen, 9);
          },
          true),
      Status::kBadFrame);
  bad("frame.token_len_too_large_for_frame",
      "token_len one larger (the first payload byte becomes token): payload is 7 bytes",
      with(
          [](Bytes& f) {
            store_le32(f.data() + kOffTokenLen, load_le32(f.data() + kOffTokenLen) + 1);
            store_le32(f.data() + kOffPayloadLen, 7);
          },
          true),
      Status::kBadFrame);
  return v;
}

// ---- Payload-level rejections ---------------------------------------------------

std::string opcode_label_desc(const Vector& ok, const std::string& what) {
  return vectors::opcode_label(ok.opcode) + (ok.reply ? " reply" : " request") + " of " + ok.id +
         ": " + what;
}

Bytes payload_of(const Vector& v) {
  auto h = decode_header(v.frame, kLimits);
  return Bytes(v.frame.begin() + kHeaderSize + h->token_len, v.frame.end());
}

// Payload prefix of a LAUNCH request up to (and including) the arg form byte.
Bytes launch_head(uint8_t form) {
  Bytes p;
  ByteWriter w(p);
  w.u64(kModule);
  w.str16("scale");
  for (uint32_t x : {4u, 1u, 1u, 256u, 1u, 1u, 0u}) w.u32(x);
  w.u8(form);
  return p;
}
Bytes submit_head() {
  Bytes p;
  ByteWriter w(p);
  w.u8(0);
  w.bytes32(str_bytes(kPtx));
  w.str16("axpy");
  for (uint32_t x : {1u, 1u, 1u, 4u, 1u, 1u, 0u}) w.u32(x);
  return p;
}

std::vector<Vector> payloads_invalid(const std::vector<Vector>& valid) {
  std::vector<Vector> v;
  // Every valid vector's payload one byte short and with one trailing byte,
  // where that changes validity (payloads that run to the end stay valid).
  for (const Vector& ok : valid) {
    if (ok.id.rfind("reply.error", 0) == 0) continue;
    const auto op = static_cast<Opcode>(ok.opcode);
    Bytes p = payload_of(ok);
    auto h = decode_header(ok.frame, kLimits);
    Bytes token(ok.frame.begin() + kHeaderSize, ok.frame.begin() + kHeaderSize + h->token_len);
    auto add = [&](std::string suffix, std::string what, Bytes q) {
      FrameHeader hh = *h;
      Bytes f = encode_frame(hh, token, q);
      auto d = vectors::decode_full_frame(f, kLimits);
      if (d) return;  // still valid (a "rest" field absorbed the change)
      v.push_back(invalid("payload." + ok.id + "." + suffix, opcode_label_desc(ok, what), ok.opcode,
                          ok.reply, std::move(f), Status::kBadFrame));
    };
    if (!p.empty()) add("truncated", "payload one byte short", Bytes(p.begin(), p.end() - 1));
    Bytes longer = p;
    longer.push_back(std::byte{0});
    add("trailing", "one trailing byte after the payload", longer);
    (void)op;
  }

  const Opcode kL = Opcode::kLaunch, kS = Opcode::kGpuSubmit;
  auto req = [&](std::string id, std::string desc, Opcode op, Bytes p, Status s) {
    v.push_back(bad_request_payload(std::move(id), std::move(desc), op, std::move(p), s));
  };
  auto rep = [&](std::string id, std::string desc, Opcode op, Bytes p, Status s) {
    v.push_back(bad_reply_payload(std::move(id), std::move(desc), op, std::move(p), s));
  };

  // Counts and lengths over the limits.
  req("payload.launch.raw.count_over_limit", "raw argument count 129 > max_kernel_args", kL,
      concat({launch_head(0), Bytes{std::byte{129}, std::byte{0}}}), Status::kFrameTooLarge);
  req("payload.launch.raw.count_65535",
      "raw argument count 65535 with nothing after it (rejected before allocating)", kL,
      concat({launch_head(0), Bytes{std::byte{0xff}, std::byte{0xff}}}), Status::kFrameTooLarge);
  req("payload.launch.raw.count_beyond_input", "raw argument count 3 but only one size follows", kL,
      concat({launch_head(0), Bytes{std::byte{3}, std::byte{0}}, le32(8)}), Status::kBadFrame);
  req("payload.launch.raw.bytes_over_limit",
      "two raw arguments of 4096 bytes each (8192 > max_arg_bytes)", kL,
      concat(
          {launch_head(0), Bytes{std::byte{2}, std::byte{0}}, le32(4096), le32(4096), le32(8192)}),
      Status::kFrameTooLarge);
  req("payload.launch.raw.blob_mismatch", "raw sizes sum to 16 but the blob has 12 bytes", kL,
      concat({launch_head(0), Bytes{std::byte{3}, std::byte{0}}, le32(8), le32(4), le32(4),
              le32(12), Bytes(12, std::byte{0})}),
      Status::kBadFrame);
  req("payload.launch.raw.zero_size", "a raw argument of size 0", kL,
      concat({launch_head(0), Bytes{std::byte{1}, std::byte{0}}, le32(0), le32(0)}),
      Status::kInvalidArgument);
  req("payload.launch.typed.count_over_limit", "typed argument count 129 > max_kernel_args", kL,
      concat({launch_head(1), Bytes{std::byte{129}, std::byte{0}}}), Status::kFrameTooLarge);
  req("payload.launch.typed.scalar_zero", "typed scalar of 0 bytes", kL,
      concat({launch_head(1),
              Bytes{std::byte{1}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}}}),
      Status::kInvalidArgument);
  req("payload.launch.typed.scalar_too_large", "typed scalar of 257 bytes (> max_scalar_bytes)", kL,
      concat({launch_head(1),
              Bytes{std::byte{1}, std::byte{0}, std::byte{0}, std::byte{1}, std::byte{1}},
              Bytes(257, std::byte{0})}),
      Status::kInvalidArgument);
  {
    Bytes p = launch_head(0);
    // Replace the kernel name "scale" (5 bytes) with a 257-byte one.
    Bytes q =
        concat({le64(kModule), Bytes{std::byte{1}, std::byte{1}}, Bytes(257, std::byte{'k'}),
                Bytes(p.begin() + 8 + 2 + 5, p.end()), Bytes{std::byte{0}, std::byte{0}}, le32(0)});
    req("payload.launch.kernel_name_too_long", "kernel name of 257 bytes (> max_name_bytes)", kL, q,
        Status::kFrameTooLarge);
    Bytes e =
        concat({le64(kModule), Bytes{std::byte{0}, std::byte{0}},
                Bytes(p.begin() + 8 + 2 + 5, p.end()), Bytes{std::byte{0}, std::byte{0}}, le32(0)});
    req("payload.launch.kernel_name_empty", "empty kernel name", kL, e, Status::kInvalidArgument);
  }
  {
    const Opcode kG = Opcode::kModuleGlobal;
    req("payload.module_global.name_empty", "MODULE_GLOBAL with an empty name", kG,
        concat({le64(kModule), Bytes{std::byte{0}, std::byte{0}}}), Status::kInvalidArgument);
    req("payload.module_global.name_too_long", "MODULE_GLOBAL name of 257 bytes (> max_name_bytes)",
        kG, concat({le64(kModule), Bytes{std::byte{1}, std::byte{1}}, Bytes(257, std::byte{'g'})}),
        Status::kFrameTooLarge);
    req("payload.module_global.name_not_utf8", "MODULE_GLOBAL name containing byte 0xff", kG,
        concat({le64(kModule), Bytes{std::byte{2}, std::byte{0}},
                Bytes{std::byte{'g'}, std::byte{0xff}}}),
        Status::kBadFrame);
    req("payload.module_global.truncated_name", "MODULE_GLOBAL name length 6 with 3 bytes after it",
        kG, concat({le64(kModule), Bytes{std::byte{6}, std::byte{0}}, str_bytes("coe")}),
        Status::kBadFrame);
    req("payload.module_global.trailing", "MODULE_GLOBAL with a byte after the name", kG,
        concat({le64(kModule), Bytes{std::byte{1}, std::byte{0}}, str_bytes("c"),
                Bytes{std::byte{0}}}),
        Status::kBadFrame);
    rep("payload.module_global.reply_unknown_space", "MODULE_GLOBAL reply with space 3", kG,
        concat({le64(0x0000300000000000ull), le64(64), Bytes{std::byte{3}}}), Status::kBadFrame);
    rep("payload.module_global.reply_truncated", "MODULE_GLOBAL reply without its space byte", kG,
        concat({le64(0x0000300000000000ull), le64(64)}), Status::kBadFrame);
  }
  req("payload.gpu_submit.count_65535", "GPU_SUBMIT argument count 65535 with nothing after it", kS,
      concat({submit_head(), Bytes{std::byte{0xff}, std::byte{0xff}}}), Status::kFrameTooLarge);
  req("payload.gpu_submit.out_zero", "GPU_SUBMIT out argument of size 0", kS,
      concat({submit_head(), Bytes{std::byte{1}, std::byte{0}, std::byte{2}}, le64(0)}),
      Status::kInvalidArgument);
  req("payload.gpu_submit.out_too_large", "GPU_SUBMIT out argument larger than max_payload_bytes",
      kS,
      concat({submit_head(), Bytes{std::byte{1}, std::byte{0}, std::byte{2}},
              le64(kLimits.max_payload_bytes + 1ull)}),
      Status::kFrameTooLarge);
  req("payload.gpu_submit.outputs_over_limit",
      "two out arguments of 40 MiB each: the reply could not fit a frame", kS,
      concat({submit_head(), Bytes{std::byte{2}, std::byte{0}, std::byte{2}}, le64(40u << 20),
              Bytes{std::byte{2}}, le64(40u << 20)}),
      Status::kFrameTooLarge);
  req("payload.gpu_submit.in_empty", "GPU_SUBMIT in argument with 0 bytes", kS,
      concat({submit_head(), Bytes{std::byte{1}, std::byte{0}, std::byte{1}}, le32(0)}),
      Status::kInvalidArgument);
  req("payload.gpu_submit.inout_empty", "GPU_SUBMIT inout argument with 0 bytes", kS,
      concat({submit_head(), Bytes{std::byte{1}, std::byte{0}, std::byte{3}}, le32(0)}),
      Status::kInvalidArgument);
  {
    // The image field of submit_head() is its first bytes32: replace it by an empty one.
    Bytes head = submit_head();
    const uint32_t image_len = load_le32(head.data() + 1);
    Bytes p = concat({Bytes{std::byte{0}}, le32(0), Bytes(head.begin() + 5 + image_len, head.end()),
                      Bytes{std::byte{0}, std::byte{0}}});
    req("payload.gpu_submit.image_empty", "GPU_SUBMIT with an empty module image", kS, p,
        Status::kInvalidArgument);
  }
  {
    Bytes p = concat({submit_head(), Bytes{std::byte{32}, std::byte{0}}});
    for (int i = 0; i < 32; ++i)
      p = concat({p, Bytes{std::byte{0}, std::byte{0}, std::byte{1}}, Bytes(256, std::byte{0})});
    req("payload.gpu_submit.arg_bytes_over_limit",
        "32 scalar arguments of 256 bytes (8192 > max_arg_bytes)", kS, p, Status::kFrameTooLarge);
  }
  {
    Bytes p;
    ByteWriter w(p);
    w.u16(1);
    w.u16(1);
    w.u16(257);
    p = concat({p, Bytes(257, std::byte{'c'})});
    req("payload.hello.client_name_too_long", "HELLO client name of 257 bytes", Opcode::kHello, p,
        Status::kFrameTooLarge);
  }
  req("payload.mem_read.length_over_limit", "MEM_READ length max_payload_bytes + 1",
      Opcode::kMemRead, concat({le64(kBuffer), le64(0), le32(kLimits.max_payload_bytes + 1)}),
      Status::kFrameTooLarge);
  {
    HelloReply m = hello_reply();
    Bytes p = encode_payload(m);
    // Device count sits after version, two str16 and 7 u32 limits.
    size_t at = 2 + 2 + m.node_id.size() + 2 + m.backend.size() + 28;
    store_le16(p.data() + at, static_cast<uint16_t>(kLimits.max_devices + 1));
    rep("payload.hello_reply.device_count_over_limit",
        "HELLO reply declaring 65 devices (> max_devices)", Opcode::kHello, p,
        Status::kFrameTooLarge);
    store_le16(p.data() + at, 2);
    rep("payload.hello_reply.device_count_beyond_input",
        "HELLO reply declaring 2 devices but carrying 1", Opcode::kHello, p, Status::kBadFrame);
  }
  rep("payload.lease_list.count_over_limit", "LEASE_LIST reply count 4097 (> max_list_entries)",
      Opcode::kLeaseList, le32(kLimits.max_list_entries + 1), Status::kFrameTooLarge);
  rep("payload.lease_list.count_beyond_input", "LEASE_LIST reply count 0xffffffff with no entries",
      Opcode::kLeaseList, le32(0xffffffff), Status::kFrameTooLarge);
  rep("payload.lease_list.count_2_entries_1", "LEASE_LIST reply count 2 with one entry",
      Opcode::kLeaseList,
      concat({le32(2), encode_payload(lease_info(kLease, LeaseState::kActive))}),
      Status::kBadFrame);
  rep("payload.cap_request.token_over_limit",
      "CAP_REQUEST reply token length 1025 (> max_token_bytes)", Opcode::kCapRequest,
      le32(kLimits.max_token_bytes + 1), Status::kFrameTooLarge);
  v.push_back(bad_reply_payload("payload.error.message_too_long",
                                "error message of 1025 bytes (> max_message_bytes)", Opcode::kPing,
                                Bytes(kLimits.max_message_bytes + 1, std::byte{'x'}),
                                Status::kFrameTooLarge, Status::kInternal));

  // Bad UTF-8.
  auto hello_name = [](Bytes name) {
    Bytes p;
    ByteWriter w(p);
    w.u16(1);
    w.u16(1);
    w.u16(static_cast<uint16_t>(name.size()));
    w.raw(name);
    return p;
  };
  req("payload.hello.utf8.invalid_byte", "client name containing byte 0xff", Opcode::kHello,
      hello_name({std::byte{'a'}, std::byte{0xff}}), Status::kBadFrame);
  req("payload.hello.utf8.overlong", "client name with an overlong encoding of '/' (c0 af)",
      Opcode::kHello, hello_name({std::byte{0xc0}, std::byte{0xaf}}), Status::kBadFrame);
  req("payload.hello.utf8.surrogate", "client name with an encoded surrogate U+D800 (ed a0 80)",
      Opcode::kHello, hello_name({std::byte{0xed}, std::byte{0xa0}, std::byte{0x80}}),
      Status::kBadFrame);
  req("payload.hello.utf8.truncated", "client name ending inside a 3-byte sequence (e2 80)",
      Opcode::kHello, hello_name({std::byte{0xe2}, std::byte{0x80}}), Status::kBadFrame);
  req("payload.hello.utf8.nul", "client name containing NUL", Opcode::kHello,
      hello_name({std::byte{'a'}, std::byte{0}, std::byte{'b'}}), Status::kBadFrame);
  req("payload.hello.utf8.above_max", "client name with a code point above U+10FFFF (f4 90 80 80)",
      Opcode::kHello,
      hello_name({std::byte{0xf4}, std::byte{0x90}, std::byte{0x80}, std::byte{0x80}}),
      Status::kBadFrame);
  v.push_back(bad_reply_payload("payload.error.utf8", "error message that is not UTF-8 (ff fe)",
                                Opcode::kMemAlloc, Bytes{std::byte{0xff}, std::byte{0xfe}},
                                Status::kBadFrame, Status::kAllocFailed));

  // Unknown enum values and out-of-domain fields.
  auto acquire = [](uint64_t vram, uint32_t ttl, uint8_t excl, uint8_t flags) {
    Bytes p;
    ByteWriter w(p);
    w.u64(vram);
    w.u32(ttl);
    w.u8(excl);
    w.u8(flags);
    w.u16(kAnyDevice);
    w.raw(Bytes(16, std::byte{0}));
    return p;
  };
  const Opcode kA = Opcode::kLeaseAcquire;
  req("payload.lease_acquire.unknown_exclusivity", "exclusivity class 3", kA,
      acquire(4096, 60, 3, 0), Status::kInvalidArgument);
  req("payload.lease_acquire.unknown_flag", "acquire flag bit 0x02", kA, acquire(4096, 60, 0, 2),
      Status::kBadFrame);
  req("payload.lease_acquire.zero_vram", "min_vram 0", kA, acquire(0, 60, 0, 0),
      Status::kInvalidArgument);
  req("payload.lease_acquire.zero_ttl", "ttl_s 0", kA, acquire(4096, 0, 0, 0),
      Status::kInvalidArgument);
  req("payload.lease_renew.zero_ttl", "LEASE_RENEW ttl_s 0", Opcode::kLeaseRenew, le32(0),
      Status::kInvalidArgument);
  req("payload.mem_alloc.zero_size", "MEM_ALLOC size 0", Opcode::kMemAlloc, le64(0),
      Status::kInvalidArgument);
  req("payload.module_load.unknown_format", "image format 3", Opcode::kModuleLoad,
      concat({Bytes{std::byte{3}}, str_bytes(kPtx)}), Status::kInvalidArgument);
  req("payload.module_load.empty_image", "MODULE_LOAD with an empty image", Opcode::kModuleLoad,
      Bytes{std::byte{0}}, Status::kInvalidArgument);
  req("payload.hello.min_above_max", "HELLO min_version 2 > max_version 1", Opcode::kHello,
      concat({Bytes{std::byte{2}, std::byte{0}, std::byte{1}, std::byte{0}, std::byte{0},
                    std::byte{0}}}),
      Status::kInvalidArgument);
  req("payload.launch.unknown_arg_form", "argument form 2", kL,
      concat({launch_head(2), Bytes{std::byte{0}, std::byte{0}}}), Status::kBadFrame);
  req("payload.launch.typed.unknown_kind", "typed argument kind 2", kL,
      concat({launch_head(1), Bytes{std::byte{1}, std::byte{0}, std::byte{2}}, le64(0), le64(0)}),
      Status::kBadFrame);
  req("payload.gpu_submit.unknown_kind", "submit argument kind 4", kS,
      concat({submit_head(), Bytes{std::byte{1}, std::byte{0}, std::byte{4}}, le64(16)}),
      Status::kBadFrame);
  {
    Bytes p = concat({submit_head(), Bytes{std::byte{0}, std::byte{0}}});
    p[0] = std::byte{0xff};
    req("payload.gpu_submit.unknown_format", "GPU_SUBMIT image format 0xff", kS, p,
        Status::kInvalidArgument);
  }
  // Two faults in one payload: every structural error (BAD_FRAME,
  // FRAME_TOO_LARGE) wins over every value error (INVALID_ARGUMENT); among
  // value errors the first field wins.
  req("payload.lease_acquire.two_faults.value_then_flag",
      "exclusivity 3 (a value error) and acquire flag bit 0x02 (structural): BAD_FRAME", kA,
      acquire(4096, 60, 3, 2), Status::kBadFrame);
  req("payload.lease_acquire.two_faults.two_values", "min_vram 0 and exclusivity 3", kA,
      acquire(0, 60, 3, 0), Status::kInvalidArgument);
  req("payload.launch.two_faults.scalar_then_unknown_kind",
      "typed scalar of 257 bytes (a value error) then argument kind 2 (structural): BAD_FRAME", kL,
      concat({launch_head(1),
              Bytes{std::byte{2}, std::byte{0}, std::byte{0}, std::byte{1}, std::byte{1}},
              Bytes(257, std::byte{0}), Bytes{std::byte{2}}, le64(0), le64(0)}),
      Status::kBadFrame);
  req("payload.launch.two_faults.empty_kernel_then_count_over_limit",
      "empty kernel name (a value error) then typed argument count 129: FRAME_TOO_LARGE", kL,
      concat({le64(kModule), Bytes{std::byte{0}, std::byte{0}}, le32(1), le32(1), le32(1), le32(1),
              le32(1), le32(1), le32(0), Bytes{std::byte{1}, std::byte{129}, std::byte{0}}}),
      Status::kFrameTooLarge);
  req("payload.gpu_submit.two_faults.in_empty_then_truncated",
      "an empty IN argument (a value error) then a second argument cut short: BAD_FRAME", kS,
      concat({submit_head(), Bytes{std::byte{2}, std::byte{0}, std::byte{1}}, le32(0),
              Bytes{std::byte{2}, std::byte{0}}}),
      Status::kBadFrame);
  {
    HelloReply h = hello_reply();
    h.limits.max_payload_bytes = kLimits.max_payload_bytes + 1;
    rep("payload.hello.limit_above_maximum",
        "HELLO reply announcing max_payload_bytes 64 MiB + 1 (above the protocol maximum)",
        Opcode::kHello, encode_payload(h), Status::kBadFrame);
    h = hello_reply();
    h.limits.max_inflight = 0;
    rep("payload.hello.limit_zero", "HELLO reply announcing max_inflight 0", Opcode::kHello,
        encode_payload(h), Status::kBadFrame);
  }
  {
    Bytes p = encode_payload(lease_info(kLease, LeaseState::kActive));
    p[8] = std::byte{4};
    rep("payload.lease_query.unknown_state", "LEASE_QUERY reply with lease state 4",
        Opcode::kLeaseQuery, p, Status::kBadFrame);
    p[8] = std::byte{0};
    p[9] = std::byte{3};
    rep("payload.lease_query.unknown_exclusivity", "LEASE_QUERY reply with exclusivity 3",
        Opcode::kLeaseQuery, p, Status::kBadFrame);
  }
  return v;
}

// ---- Output -------------------------------------------------------------------

Json to_json(const Vector& v) {
  Json j;
  j["id"] = v.id;
  j["description"] = v.description;
  j["opcode"] = vectors::opcode_label(v.opcode);
  j["direction"] = v.reply ? "reply" : "request";
  j["hex"] = to_hex(v.frame);
  j["result"] = v.error ? "invalid" : "valid";
  if (v.error) j["error"] = std::string(status_name(*v.error));
  j["fields"] = v.fields;
  return j;
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) die("cannot write " + path.string());
}

void write_vectors(const fs::path& dir, const File& f) {
  Json root;
  root["description"] = f.description;
  root["format"] = "docs/PROTOCOL.md, section \"Golden vectors\"";
  root["limits"] = "the protocol defaults (docs/PROTOCOL.md, section \"Limits\")";
  root["vectors"] = Json::array();
  for (const auto& v : f.vectors) root["vectors"].push_back(to_json(v));
  write_file(dir / f.name, root.dump(1) + "\n");
}

// Seeds: whole frames for the frame and round-trip targets; opcode (u16 LE)
// followed by the payload for the payload targets.
void write_corpus(const fs::path& dir, const std::vector<File>& files) {
  auto put = [&](const std::string& target, const std::string& id, const Bytes& b) {
    fs::create_directories(dir / target);
    write_file(dir / target / id, std::string(as_chars(b)));
  };
  for (const File& f : files) {
    for (const Vector& v : f.vectors) {
      put("fuzz_frame_header", v.id, v.frame);
      put("fuzz_roundtrip", v.id, v.frame);
      auto h = decode_header(v.frame, kLimits);
      if (!h) continue;
      size_t start = kHeaderSize + h->token_len;
      if (v.frame.size() != start + h->payload_len) continue;
      Bytes seed(2);
      store_le16(seed.data(), v.opcode);
      seed.insert(seed.end(), v.frame.begin() + start, v.frame.end());
      put(v.reply ? "fuzz_reply_payloads" : "fuzz_request_payloads", v.id, seed);
    }
  }
}

void print_doc(const std::vector<File>& files) {
  for (const File& f : files) {
    for (const Vector& v : f.vectors) {
      if (v.error) continue;
      std::string hex = to_hex(v.frame);
      auto h = decode_header(v.frame, kLimits);
      auto part = [&](size_t off, size_t n) { return hex.substr(off * 2, n * 2); };
      std::cout << "### " << v.id << "\n" << v.description << "\n";
      std::cout << "header: " << part(0, 4) << " " << part(4, 2) << " " << part(6, 2) << " "
                << part(8, 2) << " " << part(10, 2) << " " << part(12, 4) << " " << part(16, 8)
                << " " << part(24, 8) << " " << part(32, 4) << " " << part(36, 4) << " "
                << part(40, 8) << "\n";
      if (h->token_len) std::cout << "token:   " << part(48, h->token_len) << "\n";
      if (h->payload_len)
        std::cout << "payload: " << part(48 + h->token_len, h->payload_len) << "\n";
      std::cout << "\n";
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: gen_wire OUT_DIR [--corpus CORPUS_DIR] [--doc]");
  fs::path out = argv[1];
  std::optional<fs::path> corpus;
  bool doc = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--corpus" && i + 1 < argc) {
      corpus = argv[++i];
    } else if (a == "--doc") {
      doc = true;
    } else {
      die("unknown argument " + a);
    }
  }

  std::vector<File> files;
  files.push_back({"requests.json", "Valid request frames: at least one per opcode.", requests()});
  files.push_back({"replies.json",
                   "Valid reply frames: at least one OK reply per opcode, and error replies.",
                   replies()});
  files.push_back({"frames_invalid.json",
                   "Frames rejected by the header, length or checksum checks.", frames_invalid()});
  std::vector<Vector> all_valid = files[0].vectors;
  all_valid.insert(all_valid.end(), files[1].vectors.begin(), files[1].vectors.end());
  files.push_back({"payloads_invalid.json",
                   "Frames whose header and checksum are right but whose payload is rejected.",
                   payloads_invalid(all_valid)});

  fs::create_directories(out);
  for (const File& f : files) write_vectors(out, f);
  if (corpus) write_corpus(*corpus, files);
  if (doc) print_doc(files);
  return 0;
}
