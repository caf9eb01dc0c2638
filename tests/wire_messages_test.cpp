// Message payloads: every type round trips with edge values; every truncated
// prefix and every trailing byte is handled; limits are enforced before
// anything is allocated; strings must be UTF-8; opcodes map to their types.
#include "gpulease/wire/messages.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

// Tracks the largest single allocation, so a test can show that a hostile
// count or length is refused before memory is reserved for it.
namespace {
std::atomic<size_t> g_largest_alloc{0};
}  // namespace

// g++ 12 flags free() of memory from a replaced operator new even though the
// replacement allocates with malloc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(size_t n) {
  size_t cur = g_largest_alloc.load(std::memory_order_relaxed);
  while (n > cur && !g_largest_alloc.compare_exchange_weak(cur, n)) {
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}

namespace gpulease::wire {
namespace {

const Limits kLimits{};

Bytes b(std::string_view s) {
  return to_bytes(s);
}
Bytes fill(size_t n, uint8_t v) {
  return Bytes(n, std::byte{v});
}

// Encodes `m`, decodes it back as M, and checks equality and that the
// re-encoding is byte-identical.
template <typename M>
void expect_round_trip(const M& m, const Limits& l = kLimits) {
  Bytes p = encode_payload(m);
  auto d = decode_payload<M>(p, l);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_TRUE(*d == m);
  EXPECT_EQ(encode_payload(*d), p);
}

// Every strict prefix either fails cleanly, or (for payloads that end in a
// "rest" field) decodes to a message that re-encodes to exactly that prefix.
template <typename M>
void expect_every_prefix_handled(const M& m) {
  Bytes p = encode_payload(m);
  for (size_t n = 0; n < p.size(); ++n) {
    ByteSpan prefix = ByteSpan(p).first(n);
    auto d = decode_payload<M>(prefix, kLimits);
    if (d) {
      EXPECT_EQ(encode_payload(*d), Bytes(prefix.begin(), prefix.end())) << n;
    } else {
      EXPECT_NE(d.status(), Status::kOk);
    }
  }
}

template <typename M>
void expect_trailing_byte_rejected(const M& m) {
  Bytes p = encode_payload(m);
  p.push_back(std::byte{0});
  EXPECT_EQ(decode_payload<M>(p, kLimits).status(), Status::kBadFrame);
}

HelloReply sample_hello_reply() {
  HelloReply m{1, "node-\xc3\xa9", "cuda", {1, 2, 3, 4, 5, 6, 7}, {}};
  DeviceDescriptor d{0, "NVIDIA H100 80GB HBM3", {}, 9, 0, 132, 85ull << 30, ~0ull};
  d.uuid.fill(0xab);
  m.devices = {d, d};
  m.devices[1].index = 0xffff;
  return m;
}

LaunchRequest sample_launch(ArgForm form) {
  LaunchRequest m;
  m.module = ~0ull;
  m.kernel = std::string(kLimits.max_name_bytes, 'k');
  m.grid = kLimits.max_grid;
  m.block = kLimits.max_block;
  m.shared_bytes = 0xffffffff;
  m.args.form = form;
  if (form == ArgForm::kRaw) {
    m.args.raw_sizes = {8, 4, 4};
    m.args.raw_blob = fill(16, 0x5a);
  } else {
    m.args.typed = {TypedArg{TypedArgKind::kBuffer, {}, ~0ull, ~0ull},
                    TypedArg{TypedArgKind::kScalar, fill(kLimits.max_scalar_bytes, 1), 0, 0},
                    TypedArg{TypedArgKind::kScalar, fill(1, 2), 0, 0}};
  }
  return m;
}

GpuSubmitRequest sample_submit() {
  GpuSubmitRequest m;
  m.format = ImageFormat::kFatbin;
  m.image = b("image");
  m.kernel = "k";
  m.args = {SubmitArg{SubmitArgKind::kScalar, fill(4, 1), 0},
            SubmitArg{SubmitArgKind::kIn, fill(3, 2), 0}, SubmitArg{SubmitArgKind::kOut, {}, 12},
            SubmitArg{SubmitArgKind::kInOut, fill(5, 3), 0}};
  return m;
}

// ---- Round trips ---------------------------------------------------------------

TEST(WireMessages, EveryRequestTypeRoundTripsWithEdgeValues) {
  expect_round_trip(HelloRequest{0, 0xffff, std::string(kLimits.max_name_bytes, 'c')});
  expect_round_trip(HelloRequest{1, 1, ""});
  expect_round_trip(PingRequest{});
  expect_round_trip(PingRequest{fill(kLimits.max_ping_bytes, 0xff)});
  expect_round_trip(LeaseAcquireRequest{~0ull,
                                        ~0u,
                                        Exclusivity::kDeviceExclusive,
                                        kAcquireReleaseOnDisconnect,
                                        kAnyDevice,
                                        {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}});
  expect_round_trip(LeaseAcquireRequest{1, 1, Exclusivity::kSessionExclusive, 0, 0, {}});
  expect_round_trip(LeaseRenewRequest{~0u});
  expect_round_trip(Empty{});
  expect_round_trip(CapRequestRequest{~0u, 0});
  expect_round_trip(MemAllocRequest{~0ull});
  expect_round_trip(HandleRequest{0});
  expect_round_trip(MemWriteRequest{~0ull, ~0ull, fill(100, 7)});
  expect_round_trip(MemWriteRequest{1, 0, {}});
  expect_round_trip(MemReadRequest{1, ~0ull, kLimits.max_payload_bytes});
  expect_round_trip(ModuleLoadRequest{ImageFormat::kCubin, fill(1, 0)});
  expect_round_trip(sample_launch(ArgForm::kRaw));
  expect_round_trip(sample_launch(ArgForm::kTyped));
  expect_round_trip(sample_submit());
  expect_round_trip(ModuleGlobalRequest{~0ull, "kCoeffs"});
  expect_round_trip(ModuleGlobalRequest{1, std::string(kLimits.max_name_bytes, 'g')});
}

TEST(WireMessages, HelloReplyAnnouncingALimitOutsideOneToTheMaximumIsBadFrame) {
  HelloReply h = sample_hello_reply();
  h.limits.max_arg_bytes = kLimits.max_arg_bytes + 1;
  auto d = decode_payload<HelloReply>(encode_payload(h), kLimits);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.status(), Status::kBadFrame);
  h = sample_hello_reply();
  h.limits.max_lease_ttl_s = 0;
  d = decode_payload<HelloReply>(encode_payload(h), kLimits);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.status(), Status::kBadFrame);
}

TEST(WireMessages, StructuralErrorsWinOverValueErrorsWhereverTheyAre) {
  // An empty kernel name (INVALID_ARGUMENT) early, an unknown argument form
  // (BAD_FRAME) later: the structural error is reported.
  LaunchRequest l;
  l.module = 1;
  l.kernel = "";
  l.grid = {1, 1, 1};
  l.block = {1, 1, 1};
  Bytes p = encode_payload(l);
  p[8 + 2 + 12 + 12 + 4] = std::byte{7};  // the args form byte
  auto d = decode_payload<LaunchRequest>(p, kLimits);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.status(), Status::kBadFrame) << d.error().message;
  // Only value errors: the first field's is reported.
  LeaseAcquireRequest a;
  a.min_vram = 0;
  a.ttl_s = 0;
  auto e = decode_payload<LeaseAcquireRequest>(encode_payload(a), kLimits);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.status(), Status::kInvalidArgument);
  EXPECT_NE(e.error().message.find("min_vram"), std::string::npos) << e.error().message;
}

TEST(WireMessages, MemWriteDecodesInPlaceAndAgreesWithTheOwningForm) {
  const Bytes p = encode_payload(MemWriteRequest{7, 9, fill(100, 3)});
  auto v = decode_payload<MemWriteView>(p, kLimits);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->handle, 7u);
  EXPECT_EQ(v->offset, 9u);
  EXPECT_EQ(v->data.data(), p.data() + 16);  // a view into the payload, not a copy
  EXPECT_EQ(v->data.size(), 100u);
  Limits small = kLimits;
  small.max_payload_bytes = 99;
  EXPECT_EQ(decode_payload<MemWriteView>(p, small).status(), Status::kFrameTooLarge);
  EXPECT_EQ(decode_payload<MemWriteRequest>(p, small).status(), Status::kFrameTooLarge);
  const Bytes cut(p.begin(), p.begin() + 15);
  EXPECT_EQ(decode_payload<MemWriteView>(cut, kLimits).status(), Status::kBadFrame);
}

TEST(WireMessages, EveryReplyTypeRoundTripsWithEdgeValues) {
  expect_round_trip(sample_hello_reply());
  {
    // Announced limits at both ends of 1..the protocol maximum.
    HelloReply lowest;
    lowest.limits = {1, 1, 1, 1, 1, 1, 1};
    expect_round_trip(lowest);
    HelloReply highest;
    highest.limits = {kLimits.max_token_bytes,
                      kLimits.max_payload_bytes,
                      kLimits.max_inflight,
                      kLimits.max_kernel_args,
                      kLimits.max_arg_bytes,
                      kLimits.max_name_bytes,
                      ~0u};
    expect_round_trip(highest);
  }
  expect_round_trip(PingReply{fill(3, 1)});
  expect_round_trip(LeaseAcquireReply{~0ull, 0xffff, ~0ull, ~0ull});
  expect_round_trip(LeaseRenewReply{~0ull});
  LeaseInfo info{
      ~0ull, LeaseState::kReleased, Exclusivity::kDeviceExclusive, 7, ~0ull, 0, ~0ull, 0, ~0u, ~0u};
  expect_round_trip(info);
  expect_round_trip(LeaseListReply{});
  expect_round_trip(LeaseListReply{{info, LeaseInfo{}, info}});
  expect_round_trip(CapRequestReply{fill(kLimits.max_token_bytes, 9)});
  expect_round_trip(HandleReply{~0ull});
  expect_round_trip(MemReadReply{fill(4096, 4)});
  expect_round_trip(LaunchReply{~0ull});
  expect_round_trip(SyncReply{0});
  expect_round_trip(GpuSubmitReply{{SubmitOutput{0xffff, fill(8, 1)}, SubmitOutput{0, {}}}});
  expect_round_trip(ModuleGlobalReply{~0ull, ~0ull, GlobalSpace::kUnknown});
  expect_round_trip(ModuleGlobalReply{1, 0, GlobalSpace::kConst});
  expect_round_trip(ErrorReply{std::string(kLimits.max_message_bytes, 'm')});
  expect_round_trip(ErrorReply{"\xe2\x80\x94 \xf0\x9f\x98\x80"});
}

TEST(WireMessages, LaunchWithTheMaximumArgumentCountAndBytesRoundTrips) {
  LaunchRequest m = sample_launch(ArgForm::kRaw);
  m.args.raw_sizes.assign(kLimits.max_kernel_args, kLimits.max_arg_bytes / kLimits.max_kernel_args);
  m.args.raw_blob = fill(kLimits.max_arg_bytes, 1);
  expect_round_trip(m);
  m.args.raw_sizes.push_back(1);
  m.args.raw_blob.push_back(std::byte{1});
  EXPECT_EQ(decode_payload<LaunchRequest>(encode_payload(m), kLimits).status(),
            Status::kFrameTooLarge);
}

TEST(WireMessages, TypedArgumentsCountBuffersAsEightBytes) {
  LaunchRequest m = sample_launch(ArgForm::kTyped);
  m.args.typed.assign(kLimits.max_arg_bytes / 8, TypedArg{TypedArgKind::kBuffer, {}, 1, 0});
  m.args.typed.resize(kLimits.max_kernel_args, TypedArg{TypedArgKind::kBuffer, {}, 1, 0});
  EXPECT_TRUE(decode_payload<LaunchRequest>(encode_payload(m), kLimits));
  EXPECT_EQ(kernel_args_count(m.args), kLimits.max_kernel_args);
  Limits tight;
  tight.max_arg_bytes = 8 * 128 - 1;
  EXPECT_EQ(decode_payload<LaunchRequest>(encode_payload(m), tight).status(),
            Status::kFrameTooLarge);
}

// ---- Truncation and trailing bytes ----------------------------------------------

TEST(WireMessages, EveryTruncatedPrefixOfEveryMessageFailsCleanly) {
  expect_every_prefix_handled(HelloRequest{1, 2, "client"});
  expect_every_prefix_handled(sample_hello_reply());
  expect_every_prefix_handled(LeaseAcquireRequest{5, 5, Exclusivity::kShared, 1, 0, {}});
  expect_every_prefix_handled(LeaseAcquireReply{1, 2, 3, 4});
  expect_every_prefix_handled(LeaseRenewRequest{9});
  expect_every_prefix_handled(LeaseRenewReply{9});
  expect_every_prefix_handled(LeaseInfo{});
  expect_every_prefix_handled(LeaseListReply{{LeaseInfo{}, LeaseInfo{}}});
  expect_every_prefix_handled(CapRequestRequest{1, 2});
  expect_every_prefix_handled(CapRequestReply{b("tok")});
  expect_every_prefix_handled(MemAllocRequest{5});
  expect_every_prefix_handled(HandleRequest{5});
  expect_every_prefix_handled(HandleReply{5});
  expect_every_prefix_handled(MemWriteRequest{1, 2, b("data")});
  expect_every_prefix_handled(MemReadRequest{1, 2, 3});
  expect_every_prefix_handled(ModuleLoadRequest{ImageFormat::kPtx, b("ptx")});
  expect_every_prefix_handled(sample_launch(ArgForm::kRaw));
  expect_every_prefix_handled(sample_launch(ArgForm::kTyped));
  expect_every_prefix_handled(LaunchReply{1});
  expect_every_prefix_handled(SyncReply{1});
  expect_every_prefix_handled(sample_submit());
  expect_every_prefix_handled(GpuSubmitReply{{SubmitOutput{1, b("out")}}});
  expect_every_prefix_handled(ModuleGlobalRequest{1, "kCoeffs"});
  expect_every_prefix_handled(ModuleGlobalReply{1, 64, GlobalSpace::kGlobal});
}

TEST(WireMessages, ModuleGlobalNameAndSpaceAreChecked) {
  // Empty name: a value error; too long: FRAME_TOO_LARGE; not UTF-8: BAD_FRAME.
  EXPECT_EQ(decode_payload<ModuleGlobalRequest>(encode_payload(ModuleGlobalRequest{1, ""}), kLimits)
                .status(),
            Status::kInvalidArgument);
  EXPECT_EQ(
      decode_payload<ModuleGlobalRequest>(
          encode_payload(ModuleGlobalRequest{1, std::string(kLimits.max_name_bytes + 1, 'g')}),
          kLimits)
          .status(),
      Status::kFrameTooLarge);
  EXPECT_EQ(decode_payload<ModuleGlobalRequest>(
                encode_payload(ModuleGlobalRequest{1, std::string("g\xff")}), kLimits)
                .status(),
            Status::kBadFrame);
  Bytes r = encode_payload(ModuleGlobalReply{1, 4, GlobalSpace::kConst});
  r.back() = std::byte{3};
  EXPECT_EQ(decode_payload<ModuleGlobalReply>(r, kLimits).status(), Status::kBadFrame);
}

TEST(WireMessages, FixedLayoutPrefixesAreBadFrame) {
  Bytes p = encode_payload(LeaseAcquireRequest{5, 5, Exclusivity::kShared, 0, 0, {}});
  for (size_t n = 0; n < p.size(); ++n) {
    EXPECT_EQ(decode_payload<LeaseAcquireRequest>(ByteSpan(p).first(n), kLimits).status(),
              Status::kBadFrame)
        << n;
  }
  p = encode_payload(sample_launch(ArgForm::kTyped));
  for (size_t n = 0; n < p.size(); ++n) {
    EXPECT_EQ(decode_payload<LaunchRequest>(ByteSpan(p).first(n), kLimits).status(),
              Status::kBadFrame)
        << n;
  }
}

TEST(WireMessages, TrailingBytesAreBadFrame) {
  expect_trailing_byte_rejected(HelloRequest{1, 1, "c"});
  expect_trailing_byte_rejected(sample_hello_reply());
  expect_trailing_byte_rejected(LeaseAcquireRequest{5, 5, Exclusivity::kShared, 0, 0, {}});
  expect_trailing_byte_rejected(LeaseAcquireReply{});
  expect_trailing_byte_rejected(LeaseRenewRequest{1});
  expect_trailing_byte_rejected(Empty{});
  expect_trailing_byte_rejected(LeaseInfo{});
  expect_trailing_byte_rejected(LeaseListReply{});
  expect_trailing_byte_rejected(CapRequestRequest{});
  expect_trailing_byte_rejected(CapRequestReply{});
  expect_trailing_byte_rejected(MemAllocRequest{1});
  expect_trailing_byte_rejected(HandleRequest{});
  expect_trailing_byte_rejected(MemReadRequest{});
  expect_trailing_byte_rejected(sample_launch(ArgForm::kRaw));
  expect_trailing_byte_rejected(sample_launch(ArgForm::kTyped));
  expect_trailing_byte_rejected(LaunchReply{});
  expect_trailing_byte_rejected(SyncReply{});
  expect_trailing_byte_rejected(sample_submit());
  expect_trailing_byte_rejected(GpuSubmitReply{});
  expect_trailing_byte_rejected(ModuleGlobalRequest{1, "g"});
  expect_trailing_byte_rejected(ModuleGlobalReply{});
}

// ---- Limits before allocation ----------------------------------------------------

template <typename M>
size_t largest_alloc_while_decoding(const Bytes& p, const Limits& l, Status want) {
  g_largest_alloc = 0;
  auto d = decode_payload<M>(p, l);
  size_t largest = g_largest_alloc;
  EXPECT_EQ(d.status(), want);
  return largest;
}

TEST(WireMessages, CountOf65535WithATinyPayloadFailsWithoutAllocating) {
  Bytes p =
      encode_payload(GpuSubmitRequest{ImageFormat::kPtx, b("x"), "k", {1, 1, 1}, {1, 1, 1}, 0, {}});
  store_le16(p.data() + p.size() - 2, 0xffff);
  EXPECT_LT(largest_alloc_while_decoding<GpuSubmitRequest>(p, kLimits, Status::kFrameTooLarge),
            1024u);

  // Even with the count limit raised, a count the input cannot hold is
  // refused before the vector is reserved.
  Limits loose;
  loose.max_kernel_args = 0xffff;
  EXPECT_LT(largest_alloc_while_decoding<GpuSubmitRequest>(p, loose, Status::kBadFrame), 1024u);

  Bytes list(4);
  store_le32(list.data(), 0xffffffff);
  loose.max_list_entries = 0xffffffff;
  EXPECT_LT(largest_alloc_while_decoding<LeaseListReply>(list, loose, Status::kBadFrame), 1024u);
  EXPECT_LT(largest_alloc_while_decoding<LeaseListReply>(list, kLimits, Status::kFrameTooLarge),
            1024u);
}

TEST(WireMessages, DeclaredLengthsBeyondTheInputAllocateNothing) {
  Bytes p(4);
  store_le32(p.data(), 0xfffffff0);
  Limits loose;
  loose.max_token_bytes = 0xffffffff;
  EXPECT_LT(largest_alloc_while_decoding<CapRequestReply>(p, loose, Status::kBadFrame), 1024u);
  EXPECT_LT(largest_alloc_while_decoding<CapRequestReply>(p, kLimits, Status::kFrameTooLarge),
            1024u);

  Bytes s =
      encode_payload(GpuSubmitRequest{ImageFormat::kPtx, b("x"), "k", {1, 1, 1}, {1, 1, 1}, 0, {}});
  store_le32(s.data() + 1, kLimits.max_payload_bytes);  // image length
  EXPECT_LT(largest_alloc_while_decoding<GpuSubmitRequest>(s, kLimits, Status::kBadFrame), 1024u);
}

TEST(WireMessages, MemReadLengthIsCappedByThePayloadLimit) {
  Bytes p = encode_payload(MemReadRequest{1, 0, kLimits.max_payload_bytes + 1});
  EXPECT_EQ(decode_payload<MemReadRequest>(p, kLimits).status(), Status::kFrameTooLarge);
}

TEST(WireMessages, PingDataAboveItsLimitIsFrameTooLarge) {
  Bytes p = fill(kLimits.max_ping_bytes + 1, 0);
  EXPECT_EQ(decode_payload<PingRequest>(p, kLimits).status(), Status::kFrameTooLarge);
  EXPECT_EQ(decode_payload<PingReply>(p, kLimits).status(), Status::kFrameTooLarge);
}

TEST(WireMessages, ErrorMessageAboveItsLimitIsFrameTooLarge) {
  Bytes p = fill(kLimits.max_message_bytes + 1, 'x');
  EXPECT_EQ(decode_payload<ErrorReply>(p, kLimits).status(), Status::kFrameTooLarge);
}

TEST(WireMessages, NamesAboveTheNameLimitAreFrameTooLarge) {
  EXPECT_EQ(decode_payload<HelloRequest>(encode_payload(HelloRequest{1, 1, std::string(257, 'n')}),
                                         kLimits)
                .status(),
            Status::kFrameTooLarge);
  LaunchRequest m = sample_launch(ArgForm::kRaw);
  m.kernel = std::string(257, 'k');
  EXPECT_EQ(decode_payload<LaunchRequest>(encode_payload(m), kLimits).status(),
            Status::kFrameTooLarge);
}

TEST(WireMessages, TooManyDevicesOrLeasesAreFrameTooLarge) {
  HelloReply h = sample_hello_reply();
  h.devices.resize(kLimits.max_devices + 1);
  EXPECT_EQ(decode_payload<HelloReply>(encode_payload(h), kLimits).status(),
            Status::kFrameTooLarge);
  h.devices.resize(kLimits.max_devices);
  EXPECT_TRUE(decode_payload<HelloReply>(encode_payload(h), kLimits));
}

TEST(WireMessages, GpuSubmitParameterBytesAreCappedLikeLaunch) {
  GpuSubmitRequest m = sample_submit();
  m.args.assign(kLimits.max_arg_bytes / kLimits.max_scalar_bytes,
                SubmitArg{SubmitArgKind::kScalar, fill(kLimits.max_scalar_bytes, 1), 0});
  EXPECT_TRUE(decode_payload<GpuSubmitRequest>(encode_payload(m), kLimits));
  m.args.push_back(SubmitArg{SubmitArgKind::kOut, {}, 1});
  EXPECT_EQ(decode_payload<GpuSubmitRequest>(encode_payload(m), kLimits).status(),
            Status::kFrameTooLarge);
}

TEST(WireMessages, GpuSubmitOutputsThatCannotFitOneReplyAreFrameTooLarge) {
  GpuSubmitRequest m = sample_submit();
  m.args = {SubmitArg{SubmitArgKind::kOut, {}, kLimits.max_payload_bytes - 8}};
  EXPECT_TRUE(decode_payload<GpuSubmitRequest>(encode_payload(m), kLimits));
  m.args[0].out_size = kLimits.max_payload_bytes - 7;
  EXPECT_EQ(decode_payload<GpuSubmitRequest>(encode_payload(m), kLimits).status(),
            Status::kFrameTooLarge);
  m.args = {SubmitArg{SubmitArgKind::kOut, {}, 40u << 20},
            SubmitArg{SubmitArgKind::kOut, {}, 40u << 20}};
  EXPECT_EQ(decode_payload<GpuSubmitRequest>(encode_payload(m), kLimits).status(),
            Status::kFrameTooLarge);
}

// ---- Field domains ----------------------------------------------------------------

TEST(WireMessages, StringsMustBeWellFormedUtf8WithoutNul) {
  for (std::string bad :
       {std::string("\xff"), std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
        std::string("\xe2\x80"), std::string("a\0b", 3), std::string("\xf4\x90\x80\x80"),
        std::string("\x80"), std::string("\xf8\x88\x80\x80\x80")}) {
    EXPECT_EQ(
        decode_payload<HelloRequest>(encode_payload(HelloRequest{1, 1, bad}), kLimits).status(),
        Status::kBadFrame);
    EXPECT_EQ(decode_payload<ErrorReply>(to_bytes(bad), kLimits).status(), Status::kBadFrame);
  }
  for (std::string good :
       {std::string("plain"), std::string("\xc3\xa9"), std::string("\xe2\x80\x94"),
        std::string("\xf0\x9f\x98\x80"), std::string("\xf4\x8f\xbf\xbf")}) {
    EXPECT_TRUE(decode_payload<HelloRequest>(encode_payload(HelloRequest{1, 1, good}), kLimits))
        << good;
  }
}

TEST(WireMessages, OutOfDomainValuesHaveTheirNamedStatus) {
  auto acquire = [](LeaseAcquireRequest m, uint8_t excl) {
    Bytes p = encode_payload(m);
    p[12] = std::byte{excl};
    return decode_payload<LeaseAcquireRequest>(p, kLimits).status();
  };
  LeaseAcquireRequest ok{1, 1, Exclusivity::kShared, 0, 0, {}};
  EXPECT_EQ(acquire(ok, 3), Status::kInvalidArgument);
  EXPECT_EQ(acquire(ok, 0xff), Status::kInvalidArgument);
  EXPECT_EQ(decode_payload<LeaseAcquireRequest>(
                encode_payload(LeaseAcquireRequest{1, 1, {}, 0x80, 0, {}}), kLimits)
                .status(),
            Status::kBadFrame);
  EXPECT_EQ(decode_payload<LeaseAcquireRequest>(
                encode_payload(LeaseAcquireRequest{0, 1, {}, 0, 0, {}}), kLimits)
                .status(),
            Status::kInvalidArgument);
  EXPECT_EQ(decode_payload<LeaseAcquireRequest>(
                encode_payload(LeaseAcquireRequest{1, 0, {}, 0, 0, {}}), kLimits)
                .status(),
            Status::kInvalidArgument);
  EXPECT_EQ(
      decode_payload<LeaseRenewRequest>(encode_payload(LeaseRenewRequest{0}), kLimits).status(),
      Status::kInvalidArgument);
  EXPECT_EQ(decode_payload<MemAllocRequest>(encode_payload(MemAllocRequest{0}), kLimits).status(),
            Status::kInvalidArgument);
  EXPECT_EQ(decode_payload<ModuleLoadRequest>(
                encode_payload(ModuleLoadRequest{ImageFormat::kPtx, {}}), kLimits)
                .status(),
            Status::kInvalidArgument);
  EXPECT_EQ(decode_payload<HelloRequest>(encode_payload(HelloRequest{2, 1, ""}), kLimits).status(),
            Status::kInvalidArgument);
  LaunchRequest l = sample_launch(ArgForm::kRaw);
  l.kernel = "";
  EXPECT_EQ(decode_payload<LaunchRequest>(encode_payload(l), kLimits).status(),
            Status::kInvalidArgument);
  l = sample_launch(ArgForm::kRaw);
  l.args.raw_sizes = {8, 0, 8};
  EXPECT_EQ(decode_payload<LaunchRequest>(encode_payload(l), kLimits).status(),
            Status::kInvalidArgument);
  l.args.raw_sizes = {8, 4, 8};
  EXPECT_EQ(decode_payload<LaunchRequest>(encode_payload(l), kLimits).status(), Status::kBadFrame);
  l = sample_launch(ArgForm::kTyped);
  l.args.typed[1].scalar = fill(kLimits.max_scalar_bytes + 1, 0);
  EXPECT_EQ(decode_payload<LaunchRequest>(encode_payload(l), kLimits).status(),
            Status::kInvalidArgument);
}

// ---- Opcode dispatch ------------------------------------------------------------------

TEST(WireMessages, OpcodeNumbersAreThoseOfTheSpec) {
  EXPECT_EQ(static_cast<uint16_t>(Opcode::kHello), 0x0001);
  EXPECT_EQ(static_cast<uint16_t>(Opcode::kPing), 0x0002);
  EXPECT_EQ(static_cast<uint16_t>(Opcode::kLeaseAcquire), 0x0101);
  EXPECT_EQ(static_cast<uint16_t>(Opcode::kLeaseRenew), 0x0102);
  EXPECT_EQ(static_cast<uint16_t>(Opcode::kLeaseRelease), 0x0103);
  EXPECT_EQ(static_cast<uint16_t>(Opcode::kLeaseQuery), 0x0104);
  EXPECT_EQ(static_cast<uint16_t>(Opcode::kLeaseList), 0x0105);
  EXPECT_EQ(static_cast<uint16_t>(Opcode::kCapRequest), 0x0201);
  for (uint16_t i = 0; i < 9; ++i) {
    EXPECT_EQ(static_cast<uint16_t>(kAllOpcodes[8 + i]), 0x0601 + i);
  }
  for (Opcode op : kAllOpcodes) {
    auto back = opcode_from_name(opcode_name(op));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, op);
  }
  EXPECT_FALSE(opcode_from_name("NOPE").has_value());
}

TEST(WireMessages, RequestsDecodeToTheTypeTheirOpcodeNames) {
  auto is = [](Opcode op, const Bytes& p, size_t index) {
    auto d = decode_request(op, p, kLimits);
    return d && d->index() == index;
  };
  EXPECT_TRUE(is(Opcode::kLeaseRelease, {}, 4));
  EXPECT_TRUE(is(Opcode::kSync, {}, 4));
  EXPECT_TRUE(is(Opcode::kMemFree, encode_payload(HandleRequest{1}), 7));
  EXPECT_TRUE(is(Opcode::kModuleUnload, encode_payload(HandleRequest{1}), 7));
  EXPECT_TRUE(is(Opcode::kLaunch, encode_payload(sample_launch(ArgForm::kRaw)), 11));
  EXPECT_FALSE(decode_request(Opcode::kMemAlloc, {}, kLimits));
}

TEST(WireMessages, RepliesDecodeToTheTypeTheirOpcodeNames) {
  auto is = [](Opcode op, const Bytes& p, size_t index) {
    auto d = decode_reply(op, p, kLimits);
    return d && d->index() == index;
  };
  EXPECT_TRUE(is(Opcode::kMemWrite, {}, 4));
  EXPECT_TRUE(is(Opcode::kMemAlloc, encode_payload(HandleReply{1}), 8));
  EXPECT_TRUE(is(Opcode::kModuleLoad, encode_payload(HandleReply{1}), 8));
  EXPECT_TRUE(is(Opcode::kLeaseQuery, encode_payload(LeaseInfo{}), 5));
  EXPECT_TRUE(is(Opcode::kSync, encode_payload(SyncReply{1}), 11));
}

TEST(WireMessages, EncodeRequestAndReplyMatchEncodePayload) {
  RequestMessage r = sample_submit();
  EXPECT_EQ(encode_request(r), encode_payload(sample_submit()));
  ReplyMessage q = LaunchReply{7};
  EXPECT_EQ(encode_reply(q), encode_payload(LaunchReply{7}));
}

}  // namespace
}  // namespace gpulease::wire
