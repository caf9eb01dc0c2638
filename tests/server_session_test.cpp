// The node end to end over TCP on the sim backend: leases and every session op.
#include "server_test_util.hpp"

namespace gpulease::testing {
namespace {

using namespace std::chrono_literals;

class SessionTest : public ::testing::Test {
 protected:
  TestNode node_;
  RawClient c_{node_.port()};
  Bytes tok_ = node_.token("alice");
};

TEST_F(SessionTest, HelloNeedsNoTokenAndDescribesTheNode) {
  wire::HelloRequest h;
  h.client_name = "test";
  auto r = c_.call(Opcode::kHello, 0, {}, h);
  ASSERT_EQ(r.status(), Status::kOk) << r.message();
  auto hr = r.as<wire::HelloReply>();
  EXPECT_EQ(hr.version, 1);
  EXPECT_EQ(hr.node_id, "test-node");
  EXPECT_EQ(hr.backend, "sim");
  ASSERT_EQ(hr.devices.size(), 1u);
  EXPECT_EQ(hr.devices[0].total_bytes, 64ull << 20);
  EXPECT_GT(hr.limits.max_payload_bytes, 0u);
}

TEST_F(SessionTest, HelloRefusesVersionsTheNodeDoesNotSpeak) {
  wire::HelloRequest h;
  h.min_version = 2;
  h.max_version = 3;
  EXPECT_EQ(c_.call(Opcode::kHello, 0, {}, h).status(), Status::kUnsupportedVersion);
}

TEST_F(SessionTest, PingEchoesItsData) {
  wire::PingRequest p{wire::to_bytes("hello node")};
  auto r = c_.call(Opcode::kPing, 0, {}, p);
  ASSERT_EQ(r.status(), Status::kOk);
  EXPECT_EQ(r.as<wire::PingReply>().data, p.data);
}

TEST_F(SessionTest, AcquireAllocWriteReadReleaseRoundTrip) {
  uint64_t lease = acquire(c_, tok_, 4 << 20);
  ASSERT_NE(lease, 0u);
  uint64_t buf = alloc(c_, lease, tok_, 1024);
  ASSERT_NE(buf, 0u);
  Bytes data(1024);
  for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i * 7);
  wire::MemWriteRequest w{buf, 0, data};
  ASSERT_EQ(c_.call(Opcode::kMemWrite, lease, tok_, w).status(), Status::kOk);
  auto r = c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{buf, 0, 1024});
  ASSERT_EQ(r.status(), Status::kOk);
  EXPECT_EQ(r.payload, data);
  // A read at an offset sees the same bytes.
  r = c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{buf, 1000, 24});
  ASSERT_EQ(r.status(), Status::kOk);
  EXPECT_EQ(r.payload, Bytes(data.begin() + 1000, data.end()));

  auto q = c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{});
  ASSERT_EQ(q.status(), Status::kOk);
  auto info = q.as<wire::LeaseInfo>();
  EXPECT_EQ(info.lease_id, lease);
  EXPECT_EQ(info.state, wire::LeaseState::kActive);
  EXPECT_EQ(info.used_bytes, 1024u);
  EXPECT_EQ(info.buffers, 1u);
  EXPECT_GT(info.remaining_ms, 0u);

  ASSERT_EQ(c_.call(Opcode::kLeaseRelease, lease, tok_, wire::Empty{}).status(), Status::kOk);
  EXPECT_EQ(c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{buf, 0, 4}).status(),
            Status::kLeaseExpired);
}

// A MEM_READ reply is hashed while it is copied out of device memory, in
// pieces: every size around the piece boundary, at odd offsets, carries the
// bytes and the checksum of the whole frame (RawClient::recv checks it).
TEST_F(SessionTest, MemReadRepliesHashedWhileCopiedCarryTheFrameChecksum) {
  constexpr size_t kBytes = (1u << 20) + 64;
  uint64_t lease = acquire(c_, tok_, 4 << 20);
  uint64_t buf = alloc(c_, lease, tok_, kBytes);
  ASSERT_NE(buf, 0u);
  Bytes data(kBytes);
  for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte((i * 2654435761u) >> 13);
  ASSERT_EQ(c_.call(Opcode::kMemWrite, lease, tok_, wire::MemWriteRequest{buf, 0, data}).status(),
            Status::kOk);
  constexpr size_t kPiece = 64u << 10;
  for (size_t len : {size_t{1}, kPiece - 1, kPiece, kPiece + 1, 3 * kPiece + 17, size_t{1} << 20}) {
    for (size_t off : {size_t{0}, size_t{3}}) {
      auto r = c_.call(Opcode::kMemRead, lease, tok_,
                       wire::MemReadRequest{buf, off, static_cast<uint32_t>(len)});
      ASSERT_EQ(r.status(), Status::kOk) << len << " at " << off;
      ASSERT_EQ(r.header.payload_len, len);
      EXPECT_TRUE(std::equal(r.payload.begin(), r.payload.end(), data.begin() + off))
          << len << " at " << off;
    }
  }
  // Pipelined reads answered with one gathered write still check out.
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < 8; ++i)
    ids.push_back(c_.send(Opcode::kMemRead, lease, tok_,
                          wire::encode_payload(wire::MemReadRequest{
                              buf, i * kPiece, static_cast<uint32_t>(kPiece + i)})));
  for (size_t i = 0; i < 8; ++i) {
    auto r = c_.recv();
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->status(), Status::kOk);
    EXPECT_EQ(r->header.request_id, ids[i]);
    EXPECT_TRUE(std::equal(r->payload.begin(), r->payload.end(), data.begin() + i * kPiece));
  }
}

// MODULE_GLOBAL (kernels/globals.cu): a variable's handle works in MEM_WRITE,
// MEM_READ and typed BUFFER arguments, is checked like a buffer's, belongs
// to its lease and dies with its module.
TEST_F(SessionTest, ModuleGlobalHandlesAreCheckedAndDieWithTheirModule) {
  const uint64_t lease = acquire(c_, tok_, 4 << 20);
  const uint64_t mod = load_module(c_, lease, tok_, ptx("globals.ptx"));
  ASSERT_NE(mod, 0u);
  const auto lookup = [&](uint64_t l, uint64_t m, const std::string& name) {
    return c_.call(Opcode::kModuleGlobal, l, tok_, wire::ModuleGlobalRequest{m, name});
  };
  const uint64_t used =
      c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>().used_bytes;
  EXPECT_EQ(lookup(lease, mod + 1000, "kTable").status(), Status::kInvalidHandle);
  auto none = lookup(lease, mod, "nope");
  EXPECT_EQ(none.status(), Status::kInvalidArgument);
  EXPECT_NE(none.message().find("nope"), std::string::npos) << none.message();
  EXPECT_EQ(lookup(lease, mod, "poly_table").status(), Status::kInvalidArgument)
      << "a kernel is not a variable";
  auto t = lookup(lease, mod, "kTable");
  ASSERT_EQ(t.status(), Status::kOk) << t.message();
  const auto table = t.as<wire::ModuleGlobalReply>();
  EXPECT_EQ(table.size, 64u);
  EXPECT_EQ(table.space, wire::GlobalSpace::kConst);
  const auto count = lookup(lease, mod, "gCount").as<wire::ModuleGlobalReply>();
  EXPECT_EQ(count.size, 4u);
  EXPECT_EQ(count.space, wire::GlobalSpace::kGlobal);
  // Asking again gives the same handle; lookups charge nothing.
  EXPECT_EQ(lookup(lease, mod, "kTable").as<wire::ModuleGlobalReply>(), table);
  EXPECT_EQ(
      c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>().used_bytes,
      used);

  // MEM_WRITE / MEM_READ within the variable; past its end OUT_OF_RANGE.
  Bytes data(64);
  for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i * 3 + 1);
  ASSERT_EQ(c_.call(Opcode::kMemWrite, lease, tok_, wire::MemWriteRequest{table.handle, 0, data})
                .status(),
            Status::kOk);
  auto r = c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{table.handle, 0, 64});
  ASSERT_EQ(r.status(), Status::kOk);
  EXPECT_EQ(r.payload, data);
  EXPECT_EQ(
      c_.call(Opcode::kMemWrite, lease, tok_, wire::MemWriteRequest{table.handle, 60, Bytes(8)})
          .status(),
      Status::kOutOfRange);
  EXPECT_EQ(
      c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{count.handle, 0, 8}).status(),
      Status::kOutOfRange);
  EXPECT_EQ(
      c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{count.handle + 1, 0, 1}).status(),
      Status::kInvalidHandle)
      << "an interior address is not a handle";
  auto calls = lookup(lease, mod, "gCalls").as<wire::ModuleGlobalReply>();
  r = c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{calls.handle, 0, 4});
  EXPECT_EQ(from_bytes<uint32_t>(r.payload), std::vector<uint32_t>{7u}) << "its initialiser";
  // A variable is not a buffer: MEM_FREE refuses it.
  EXPECT_EQ(c_.call(Opcode::kMemFree, lease, tok_, wire::HandleRequest{count.handle}).status(),
            Status::kInvalidHandle);

  // As a typed BUFFER argument (a pointer to the variable).
  ASSERT_EQ(c_.call(Opcode::kLaunch, lease, tok_,
                    launch_req(mod, "bump", 2, 32, Args().buf(count.handle).scalar(uint32_t{5})))
                .status(),
            Status::kOk);
  EXPECT_EQ(c_.call(Opcode::kLaunch, lease, tok_,
                    launch_req(mod, "bump", 1, 1, Args().buf(count.handle, 5).scalar(uint32_t{1})))
                .status(),
            Status::kOutOfRange);
  ASSERT_EQ(c_.call(Opcode::kSync, lease, tok_, wire::Empty{}).status(), Status::kOk);
  r = c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{count.handle, 0, 4});
  EXPECT_EQ(from_bytes<uint32_t>(r.payload), std::vector<uint32_t>{2u * 32u * 5u});

  // Another lease of the same tenant sees neither the module nor the variable.
  const uint64_t other = acquire(c_, tok_, 1 << 20);
  EXPECT_EQ(lookup(other, mod, "kTable").status(), Status::kInvalidHandle);
  EXPECT_EQ(
      c_.call(Opcode::kMemRead, other, tok_, wire::MemReadRequest{table.handle, 0, 4}).status(),
      Status::kInvalidHandle);

  // Unloading the module ends its variables' handles.
  ASSERT_EQ(c_.call(Opcode::kModuleUnload, lease, tok_, wire::HandleRequest{mod}).status(),
            Status::kOk);
  EXPECT_EQ(
      c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{table.handle, 0, 4}).status(),
      Status::kInvalidHandle);
  EXPECT_EQ(
      c_.call(Opcode::kMemWrite, lease, tok_, wire::MemWriteRequest{count.handle, 0, Bytes(4)})
          .status(),
      Status::kInvalidHandle);
  EXPECT_EQ(lookup(lease, mod, "kTable").status(), Status::kInvalidHandle);
}

TEST_F(SessionTest, ReleaseReturnsTheVramToThePoolAtOnce) {
  auto free_bytes = [&] {
    return c_.call(Opcode::kHello, 0, {}, wire::HelloRequest{})
        .as<wire::HelloReply>()
        .devices[0]
        .free_bytes;
  };
  uint64_t before = free_bytes();
  uint64_t lease = acquire(c_, tok_, 16 << 20);
  EXPECT_LE(free_bytes(), before - (16 << 20));
  ASSERT_EQ(c_.call(Opcode::kLeaseRelease, lease, tok_, wire::Empty{}).status(), Status::kOk);
  EXPECT_EQ(free_bytes(), before);
}

TEST_F(SessionTest, AdmissionNeverOversubscribesTheDevice) {
  // 64 MiB device, 2 MiB context overhead: three 18 MiB leases fit, a fourth does not.
  std::vector<uint64_t> leases;
  for (int i = 0; i < 3; ++i) leases.push_back(acquire(c_, tok_, 18 << 20));
  wire::LeaseAcquireRequest req{18 << 20, 60};
  auto r = c_.call(Opcode::kLeaseAcquire, 0, tok_, req);
  EXPECT_EQ(r.status(), Status::kCapacityExceeded) << r.message();
  ASSERT_EQ(c_.call(Opcode::kLeaseRelease, leases[0], tok_, wire::Empty{}).status(), Status::kOk);
  EXPECT_EQ(c_.call(Opcode::kLeaseAcquire, 0, tok_, req).status(), Status::kOk);
}

TEST_F(SessionTest, DeviceExclusiveTakesTheDeviceAlone) {
  wire::LeaseAcquireRequest ex{1 << 20, 60, wire::Exclusivity::kDeviceExclusive};
  auto r = c_.call(Opcode::kLeaseAcquire, 0, tok_, ex);
  ASSERT_EQ(r.status(), Status::kOk) << r.message();
  uint64_t lease = r.as<wire::LeaseAcquireReply>().lease_id;
  EXPECT_EQ(
      c_.call(Opcode::kLeaseAcquire, 0, tok_, wire::LeaseAcquireRequest{1 << 20, 60}).status(),
      Status::kCapacityExceeded);
  ASSERT_EQ(c_.call(Opcode::kLeaseRelease, lease, tok_, wire::Empty{}).status(), Status::kOk);
  acquire(c_, tok_);
  // And an exclusive lease waits for an empty device.
  EXPECT_EQ(c_.call(Opcode::kLeaseAcquire, 0, tok_, ex).status(), Status::kCapacityExceeded);
}

TEST_F(SessionTest, SessionExclusiveIsRefusedClearlyOnTheSimBackend) {
  wire::LeaseAcquireRequest req{1 << 20, 60, wire::Exclusivity::kSessionExclusive};
  auto r = c_.call(Opcode::kLeaseAcquire, 0, tok_, req);
  EXPECT_EQ(r.status(), Status::kUnsupported);
  EXPECT_NE(r.message().find("SessionExclusive"), std::string::npos);
}

TEST_F(SessionTest, AllocBeyondTheQuotaFailsAndChangesNothing) {
  uint64_t lease = acquire(c_, tok_, 1 << 20);
  alloc(c_, lease, tok_, 768 << 10);
  auto r = c_.call(Opcode::kMemAlloc, lease, tok_, wire::MemAllocRequest{512 << 10});
  EXPECT_EQ(r.status(), Status::kAllocFailed);
  auto info = c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>();
  EXPECT_EQ(info.used_bytes, 768u << 10);
  EXPECT_EQ(info.buffers, 1u);
  alloc(c_, lease, tok_, 256 << 10);  // exactly fills the quota
}

TEST(SessionLimits, ALeaseHoldsABoundedNumberOfBuffersAndModules) {
  auto cfg = TestNode::small_config();
  cfg.max_buffers_per_lease = 3;
  cfg.max_modules_per_lease = 1;
  TestNode node(cfg);
  RawClient c(node.port());
  Bytes tok = node.token("alice");
  uint64_t lease = acquire(c, tok);
  uint64_t first = alloc(c, lease, tok, 8);
  alloc(c, lease, tok, 8);
  alloc(c, lease, tok, 8);
  EXPECT_EQ(c.call(Opcode::kMemAlloc, lease, tok, wire::MemAllocRequest{8}).status(),
            Status::kAllocFailed);
  ASSERT_EQ(c.call(Opcode::kMemFree, lease, tok, wire::HandleRequest{first}).status(), Status::kOk);
  alloc(c, lease, tok, 8);
  load_module(c, lease, tok, ptx("transform.ptx"));
  wire::ModuleLoadRequest m;
  m.image = wire::to_bytes(ptx("vector.ptx"));
  EXPECT_EQ(c.call(Opcode::kModuleLoad, lease, tok, m).status(), Status::kAllocFailed);
}

TEST_F(SessionTest, HandlesAndRangesAreCheckedOnEveryOp) {
  uint64_t lease = acquire(c_, tok_);
  uint64_t buf = alloc(c_, lease, tok_, 100);
  EXPECT_EQ(c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{buf + 8, 0, 4}).status(),
            Status::kInvalidHandle);
  EXPECT_EQ(c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{buf, 96, 5}).status(),
            Status::kOutOfRange);
  EXPECT_EQ(c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{buf, ~0ull, 1}).status(),
            Status::kOutOfRange);
  wire::MemWriteRequest w{buf, 99, Bytes(2)};
  EXPECT_EQ(c_.call(Opcode::kMemWrite, lease, tok_, w).status(), Status::kOutOfRange);
  EXPECT_EQ(c_.call(Opcode::kMemFree, lease, tok_, wire::HandleRequest{buf}).status(), Status::kOk);
  EXPECT_EQ(c_.call(Opcode::kMemFree, lease, tok_, wire::HandleRequest{buf}).status(),
            Status::kInvalidHandle);
  EXPECT_EQ(c_.call(Opcode::kModuleUnload, lease, tok_, wire::HandleRequest{77}).status(),
            Status::kInvalidHandle);
  EXPECT_EQ(
      c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>().used_bytes,
      0u);
}

TEST_F(SessionTest, Recipe30ScaleThenBiasGivesTwoITimesPlusTen) {
  uint64_t lease = acquire(c_, tok_, 64 << 10);
  const int n = 1024;
  std::vector<float> in(n);
  for (int i = 0; i < n; ++i) in[i] = static_cast<float>(i);
  uint64_t buf = alloc(c_, lease, tok_, n * 4);
  ASSERT_EQ(c_.call(Opcode::kMemWrite, lease, tok_, wire::MemWriteRequest{buf, 0, pod_bytes(in)})
                .status(),
            Status::kOk);
  uint64_t mod = load_module(c_, lease, tok_, ptx("transform.ptx"));
  // scale with raw args (the recipe's form), bias with typed args.
  wire::LaunchRequest scale;
  scale.module = mod;
  scale.kernel = "scale";
  scale.grid = {(n + 255) / 256, 1, 1};
  scale.block = {256, 1, 1};
  scale.args.form = wire::ArgForm::kRaw;
  scale.args.raw_sizes = {8, 4, 4};
  Bytes raw(16);
  wire::store_le64(raw.data(), buf);
  wire::store_le32(raw.data() + 8, n);
  float two = 2.0f;
  std::memcpy(raw.data() + 12, &two, 4);
  scale.args.raw_blob = raw;
  auto l1 = c_.call(Opcode::kLaunch, lease, tok_, scale);
  ASSERT_EQ(l1.status(), Status::kOk) << l1.message();
  EXPECT_EQ(l1.as<wire::LaunchReply>().launch_seq, 1u);
  auto l2 = c_.call(Opcode::kLaunch, lease, tok_,
                    launch_req(mod, "bias", (n + 255) / 256, 256,
                               Args().buf(buf).scalar<int32_t>(n).scalar(10.0f)));
  ASSERT_EQ(l2.status(), Status::kOk) << l2.message();
  auto s = c_.call(Opcode::kSync, lease, tok_, wire::Empty{});
  ASSERT_EQ(s.status(), Status::kOk) << s.message();
  EXPECT_EQ(s.as<wire::SyncReply>().completed, 2u);
  auto r = c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{buf, 0, n * 4});
  ASSERT_EQ(r.status(), Status::kOk);
  auto out = from_bytes<float>(r.payload);
  for (int i = 0; i < n; ++i) ASSERT_EQ(out[i], 2.0f * i + 10.0f) << i;
  ASSERT_EQ(c_.call(Opcode::kModuleUnload, lease, tok_, wire::HandleRequest{mod}).status(),
            Status::kOk);
}

TEST_F(SessionTest, LaunchChecksModuleKernelGeometryAndArguments) {
  uint64_t lease = acquire(c_, tok_);
  uint64_t buf = alloc(c_, lease, tok_, 64);
  uint64_t mod = load_module(c_, lease, tok_, ptx("transform.ptx"));
  auto good = Args().buf(buf).scalar<int32_t>(16).scalar(1.0f);
  EXPECT_EQ(
      c_.call(Opcode::kLaunch, lease, tok_, launch_req(mod + 1, "scale", 1, 16, good)).status(),
      Status::kInvalidHandle);
  EXPECT_EQ(c_.call(Opcode::kLaunch, lease, tok_, launch_req(mod, "no_such_kernel", 1, 16, good))
                .status(),
            Status::kLaunchFailed);
  EXPECT_EQ(c_.call(Opcode::kLaunch, lease, tok_, launch_req(mod, "scale", 1, 2048, good)).status(),
            Status::kLaunchFailed);
  EXPECT_EQ(c_.call(Opcode::kLaunch, lease, tok_, launch_req(mod, "scale", 0, 16, good)).status(),
            Status::kLaunchFailed);
  EXPECT_EQ(c_.call(Opcode::kLaunch, lease, tok_,
                    launch_req(mod, "scale", 1, 16, Args().buf(buf).scalar<int32_t>(16)))
                .status(),
            Status::kLaunchFailed);
  EXPECT_EQ(
      c_.call(Opcode::kLaunch, lease, tok_,
              launch_req(mod, "scale", 1, 16, Args().buf(buf + 1).scalar<int32_t>(16).scalar(1.0f)))
          .status(),
      Status::kInvalidHandle);
  EXPECT_EQ(
      c_.call(Opcode::kLaunch, lease, tok_,
              launch_req(mod, "scale", 1, 16, Args().buf(buf, 65).scalar<int32_t>(16).scalar(1.0f)))
          .status(),
      Status::kOutOfRange);
  // None of those queued anything.
  auto s = c_.call(Opcode::kSync, lease, tok_, wire::Empty{});
  ASSERT_EQ(s.status(), Status::kOk);
  EXPECT_EQ(s.as<wire::SyncReply>().completed, 0u);
}

TEST_F(SessionTest, BadPtxIsLoadFailedWithTheLoaderLog) {
  uint64_t lease = acquire(c_, tok_);
  wire::ModuleLoadRequest m;
  m.image = wire::to_bytes(
      ".version 7.0\n.target sm_75\n.address_size 64\n.visible .entry k() { frobnicate.u32 %r1; "
      "}\n");
  auto r = c_.call(Opcode::kModuleLoad, lease, tok_, m);
  EXPECT_EQ(r.status(), Status::kLoadFailed);
  EXPECT_FALSE(r.message().empty());
}

TEST_F(SessionTest, AnOutOfBoundsKernelFailsSyncFaultsTheLeaseAndSparesOthers) {
  uint64_t bad = acquire(c_, tok_);
  uint64_t good = acquire(c_, tok_);
  uint64_t in = alloc(c_, bad, tok_, 256);
  uint64_t out = alloc(c_, bad, tok_, 256);
  uint64_t mod = load_module(c_, bad, tok_, ptx("faults.ptx"));
  auto l =
      c_.call(Opcode::kLaunch, bad, tok_,
              launch_req(mod, "oob_read", 1, 64,
                         Args().buf(in).buf(out).scalar<int32_t>(64).scalar<int32_t>(1 << 20)));
  ASSERT_EQ(l.status(), Status::kOk) << l.message();
  auto s = c_.call(Opcode::kSync, bad, tok_, wire::Empty{});
  EXPECT_EQ(s.status(), Status::kSyncFailed);
  EXPECT_NE(s.message().find("oob_read"), std::string::npos) << s.message();
  EXPECT_EQ(c_.call(Opcode::kMemRead, bad, tok_, wire::MemReadRequest{in, 0, 4}).status(),
            Status::kLeaseFaulted);
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, bad, tok_, wire::Empty{}).as<wire::LeaseInfo>().state,
            wire::LeaseState::kFaulted);
  // The other lease keeps working, and release cleans the faulted one up.
  uint64_t b2 = alloc(c_, good, tok_, 16);
  EXPECT_EQ(c_.call(Opcode::kMemRead, good, tok_, wire::MemReadRequest{b2, 0, 16}).status(),
            Status::kOk);
  EXPECT_EQ(c_.call(Opcode::kLeaseRelease, bad, tok_, wire::Empty{}).status(), Status::kOk);
}

TEST_F(SessionTest, GpuSubmitRunsOneKernelAndReturnsItsOutputs) {
  uint64_t lease = acquire(c_, tok_);
  const int n = 300;
  std::vector<float> a(n), b(n);
  for (int i = 0; i < n; ++i) a[i] = i * 0.5f, b[i] = 3.0f - i;
  wire::GpuSubmitRequest req;
  req.image = wire::to_bytes(ptx("vector.ptx"));
  req.kernel = "vector_add";
  req.grid = {(n + 127) / 128, 1, 1};
  req.block = {128, 1, 1};
  req.args.push_back({wire::SubmitArgKind::kIn, pod_bytes(a), 0});
  req.args.push_back({wire::SubmitArgKind::kIn, pod_bytes(b), 0});
  req.args.push_back({wire::SubmitArgKind::kOut, {}, n * 4});
  Bytes nb(4);
  wire::store_le32(nb.data(), n);
  req.args.push_back({wire::SubmitArgKind::kScalar, nb, 0});
  auto r = c_.call(Opcode::kGpuSubmit, lease, tok_, req);
  ASSERT_EQ(r.status(), Status::kOk) << r.message();
  auto rep = r.as<wire::GpuSubmitReply>();
  ASSERT_EQ(rep.outputs.size(), 1u);
  EXPECT_EQ(rep.outputs[0].arg_index, 2);
  auto c = from_bytes<float>(rep.outputs[0].data);
  for (int i = 0; i < n; ++i) ASSERT_EQ(c[i], a[i] + b[i]);
  // Nothing of it outlives the reply.
  auto info = c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>();
  EXPECT_EQ(info.used_bytes, 0u);
  EXPECT_EQ(info.modules, 0u);
}

TEST_F(SessionTest, GpuSubmitChargesItsModuleToTheLeaseQuota) {
  std::string text = ptx("vector.ptx");
  // A lease whose quota holds the buffers but not the module.
  uint64_t lease = acquire(c_, tok_, 4096);
  wire::GpuSubmitRequest req;
  req.image = wire::to_bytes(text + std::string(8192, '\n'));
  req.kernel = "vector_add";
  req.grid = {1, 1, 1};
  req.block = {4, 1, 1};
  req.args.push_back({wire::SubmitArgKind::kIn, Bytes(16), 0});
  req.args.push_back({wire::SubmitArgKind::kIn, Bytes(16), 0});
  req.args.push_back({wire::SubmitArgKind::kOut, {}, 16});
  Bytes nb(4);
  wire::store_le32(nb.data(), 4);
  req.args.push_back({wire::SubmitArgKind::kScalar, nb, 0});
  auto r = c_.call(Opcode::kGpuSubmit, lease, tok_, req);
  EXPECT_EQ(r.status(), Status::kAllocFailed) << r.message();
  auto info = c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>();
  EXPECT_EQ(info.used_bytes, 0u);
  EXPECT_EQ(info.modules, 0u);
}

TEST_F(SessionTest, ZeroLengthWriteAndReadAtTheEndOfABufferAreOk) {
  uint64_t lease = acquire(c_, tok_);
  uint64_t buf = alloc(c_, lease, tok_, 64);
  EXPECT_EQ(c_.call(Opcode::kMemWrite, lease, tok_, wire::MemWriteRequest{buf, 64, {}}).status(),
            Status::kOk);
  auto r = c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{buf, 64, 0});
  EXPECT_EQ(r.status(), Status::kOk) << r.message();
  EXPECT_TRUE(r.payload.empty());
  // One past the end is still out of range.
  EXPECT_EQ(c_.call(Opcode::kMemWrite, lease, tok_, wire::MemWriteRequest{buf, 65, {}}).status(),
            Status::kOutOfRange);
  EXPECT_EQ(c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{buf, 65, 0}).status(),
            Status::kOutOfRange);
}

TEST_F(SessionTest, RetriedAllocWithTheSameRequestIdReturnsTheFirstAnswer) {
  uint64_t lease = acquire(c_, tok_);
  Bytes p = wire::encode_payload(wire::MemAllocRequest{4096});
  c_.send(Opcode::kMemAlloc, lease, tok_, p, 77);
  auto first = c_.recv();
  ASSERT_TRUE(first && first->status() == Status::kOk);
  // The "lost reply" retry, on a new connection.
  RawClient again(node_.port());
  again.send(Opcode::kMemAlloc, lease, tok_, p, 77);
  auto second = again.recv();
  ASSERT_TRUE(second && second->status() == Status::kOk);
  EXPECT_EQ(second->as<wire::HandleReply>().handle, first->as<wire::HandleReply>().handle);
  EXPECT_EQ(
      c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>().used_bytes,
      4096u);
  // A new request id allocates anew.
  alloc(c_, lease, tok_, 4096);
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>().buffers,
            2u);
}

TEST_F(SessionTest, TheReplayWindowAnswersOnlyTheSameRequestAndForgetsFreedHandles) {
  uint64_t lease = acquire(c_, tok_);
  Bytes small = wire::encode_payload(wire::MemAllocRequest{64});
  Bytes large = wire::encode_payload(wire::MemAllocRequest{128});
  c_.send(Opcode::kMemAlloc, lease, tok_, small, 500);
  uint64_t first = c_.recv()->as<wire::HandleReply>().handle;
  // Same request id, different request: a new allocation, not a replay.
  c_.send(Opcode::kMemAlloc, lease, tok_, large, 500);
  uint64_t second = c_.recv()->as<wire::HandleReply>().handle;
  EXPECT_NE(first, second);
  // Once freed, the handle is never handed out again by a replay.
  ASSERT_EQ(c_.call(Opcode::kMemFree, lease, tok_, wire::HandleRequest{first}).status(),
            Status::kOk);
  c_.send(Opcode::kMemAlloc, lease, tok_, small, 500);
  auto again = c_.recv();
  ASSERT_TRUE(again && again->status() == Status::kOk);
  uint64_t third = again->as<wire::HandleReply>().handle;
  EXPECT_EQ(c_.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{third, 0, 64}).status(),
            Status::kOk);
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>().buffers,
            2u);
}

TEST_F(SessionTest, LoadedModulesCountAgainstTheQuota) {
  std::string text = ptx("transform.ptx");
  uint64_t lease = acquire(c_, tok_, 256 << 10);
  auto used = [&] {
    return c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{})
        .as<wire::LeaseInfo>()
        .used_bytes;
  };
  uint64_t mod = load_module(c_, lease, tok_, text);
  const uint64_t held = used();
  EXPECT_GE(held, text.size());
  // Nothing past the rest of the quota fits.
  EXPECT_EQ(c_.call(Opcode::kMemAlloc, lease, tok_, wire::MemAllocRequest{(256 << 10) - held + 1})
                .status(),
            Status::kAllocFailed);
  ASSERT_EQ(c_.call(Opcode::kModuleUnload, lease, tok_, wire::HandleRequest{mod}).status(),
            Status::kOk);
  EXPECT_EQ(used(), 0u);
}

TEST_F(SessionTest, AModuleWhoseLoadedFormOutgrowsTheQuotaIsRefused) {
  // 1000 empty kernels: a small image whose decoded form is several times larger.
  std::string text = ".version 7.8\n.target sm_75\n.address_size 64\n";
  for (int i = 0; i < 1000; ++i)
    text += ".visible .entry k" + std::to_string(i) + "()\n{\nret;\n}\n";
  uint64_t lease = acquire(c_, tok_, text.size() * 2);
  wire::ModuleLoadRequest m;
  m.image = wire::to_bytes(text);
  auto r = c_.call(Opcode::kModuleLoad, lease, tok_, m);
  EXPECT_EQ(r.status(), Status::kAllocFailed) << r.message();
  auto info = c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>();
  EXPECT_EQ(info.used_bytes, 0u);
  EXPECT_EQ(info.modules, 0u);
}

TEST_F(SessionTest, AcquireWithTheSameIdempotencyKeyReturnsTheSameLease) {
  wire::LeaseAcquireRequest req{1 << 20, 60};
  req.idempotency_key[0] = 42;
  auto a = c_.call(Opcode::kLeaseAcquire, 0, tok_, req).as<wire::LeaseAcquireReply>();
  auto b = c_.call(Opcode::kLeaseAcquire, 0, tok_, req).as<wire::LeaseAcquireReply>();
  EXPECT_EQ(a.lease_id, b.lease_id);
  auto list = c_.call(Opcode::kLeaseList, 0, tok_, wire::Empty{}).as<wire::LeaseListReply>();
  EXPECT_EQ(list.leases.size(), 1u);
  req.idempotency_key[0] = 43;
  const uint64_t other =
      c_.call(Opcode::kLeaseAcquire, 0, tok_, req).as<wire::LeaseAcquireReply>().lease_id;
  EXPECT_NE(other, a.lease_id);
  // A lease's end frees its key and no other.
  ASSERT_EQ(c_.call(Opcode::kLeaseRelease, other, tok_, wire::Empty{}).status(), Status::kOk);
  req.idempotency_key[0] = 42;
  EXPECT_EQ(c_.call(Opcode::kLeaseAcquire, 0, tok_, req).as<wire::LeaseAcquireReply>().lease_id,
            a.lease_id);
  ASSERT_EQ(c_.call(Opcode::kLeaseRelease, a.lease_id, tok_, wire::Empty{}).status(), Status::kOk);
  const uint64_t after =
      c_.call(Opcode::kLeaseAcquire, 0, tok_, req).as<wire::LeaseAcquireReply>().lease_id;
  EXPECT_NE(after, 0u);
  EXPECT_NE(after, a.lease_id) << "the key still named the ended lease";
}

TEST_F(SessionTest, AnIdempotencyKeyReusedWithOtherParametersIsAConflict) {
  wire::LeaseAcquireRequest req{1 << 20, 60};
  req.idempotency_key[0] = 7;
  auto first = c_.call(Opcode::kLeaseAcquire, 0, tok_, req);
  ASSERT_EQ(first.status(), Status::kOk);
  for (int field = 0; field < 4; ++field) {
    wire::LeaseAcquireRequest other = req;
    if (field == 0) other.min_vram = 2 << 20;
    if (field == 1) other.ttl_s = 61;
    if (field == 2) other.flags = wire::kAcquireReleaseOnDisconnect;
    if (field == 3) other.device = 0;
    auto r = c_.call(Opcode::kLeaseAcquire, 0, tok_, other);
    EXPECT_EQ(r.status(), Status::kIdempotencyConflict) << field << ": " << r.message();
  }
  // The same parameters still get the first lease; nothing else was acquired.
  auto again = c_.call(Opcode::kLeaseAcquire, 0, tok_, req).as<wire::LeaseAcquireReply>();
  EXPECT_EQ(again.lease_id, first.as<wire::LeaseAcquireReply>().lease_id);
  auto list = c_.call(Opcode::kLeaseList, 0, tok_, wire::Empty{}).as<wire::LeaseListReply>();
  EXPECT_EQ(list.leases.size(), 1u);
}

TEST_F(SessionTest, RenewExtendsTheLeaseButNeverPastTheToken) {
  uint64_t lease = acquire(c_, tok_, 1 << 20, 5);
  auto before =
      c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>().expires_at_ms;
  auto r = c_.call(Opcode::kLeaseRenew, lease, tok_, wire::LeaseRenewRequest{120});
  ASSERT_EQ(r.status(), Status::kOk);
  EXPECT_GT(r.as<wire::LeaseRenewReply>().expires_at_ms, before + 100'000);
  Bytes short_tok = node_.token("alice", capability::kAllPermissions, 10);
  auto r2 = c_.call(Opcode::kLeaseRenew, lease, short_tok, wire::LeaseRenewRequest{3600});
  ASSERT_EQ(r2.status(), Status::kOk);
  // The earlier, longer expiry stands; a short token cannot stretch it to an hour.
  EXPECT_LT(r2.as<wire::LeaseRenewReply>().expires_at_ms, before + 200'000);
}

TEST_F(SessionTest, ALeaseExpiresOnTimeAndItsMemoryGoesBack) {
  uint64_t lease = acquire(c_, tok_, 8 << 20, 1);
  alloc(c_, lease, tok_, 1 << 20);
  ASSERT_TRUE(eventually([&] { return node_.node().active_leases() == 0; }, 5s));
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).status(),
            Status::kLeaseExpired);
  auto hello = c_.call(Opcode::kHello, 0, {}, wire::HelloRequest{}).as<wire::HelloReply>();
  EXPECT_EQ(hello.devices[0].free_bytes, hello.devices[0].total_bytes);
}

TEST_F(SessionTest, ReleaseOnDisconnectLeasesEndWithTheirConnection) {
  {
    RawClient other(node_.port());
    acquire(other, tok_, 1 << 20, 60, wire::kAcquireReleaseOnDisconnect);
    acquire(other, tok_, 1 << 20, 60);
    EXPECT_EQ(node_.node().active_leases(), 2u);
  }
  EXPECT_TRUE(eventually([&] { return node_.node().active_leases() == 1; }));
}

TEST_F(SessionTest, LeasesSurviveADroppedConnection) {
  uint64_t lease;
  {
    RawClient other(node_.port());
    lease = acquire(other, tok_);
  }
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).status(), Status::kOk);
}

// A bulk MEM_READ of an idle lease is sent straight from device memory (a
// loan: leases/lent_bytes.hpp). Whatever the lease does next while that
// reply is still unsent (a bulk or a small write, a kernel that writes the
// buffer, a free, its release), the reply carries the bytes of its own
// time with their checksum (RawClient::recv checks it): the loan is copied
// out first, once.
TEST_F(SessionTest, ALentReadCarriesItsOwnTimesBytesWhateverTheLeaseDoesNext) {
  constexpr uint32_t kBytes = 16u << 20;
  constexpr uint32_t kChunk = 4u << 20;
  constexpr int kFloats = 1024;  // what the kernel changes
  server::Metrics& m = node_.node().metrics();
  const uint64_t lent_before = m.mem_read_lent_bytes.load();
  enum class Next { kBulkWrite, kSmallWrite, kLaunch, kFree, kRelease };
  for (Next next :
       {Next::kBulkWrite, Next::kSmallWrite, Next::kLaunch, Next::kFree, Next::kRelease}) {
    SCOPED_TRACE("case " + std::to_string(static_cast<int>(next)));
    // A reader that takes nothing until every request is sent, through a
    // small receive buffer: most of the 16 MiB reply stays in the node.
    RawClient slow(node_.port(), 64 << 10);
    const uint64_t lease = acquire(slow, tok_, kBytes + (1u << 20));
    const uint64_t buf = alloc(slow, lease, tok_, kBytes);
    ASSERT_NE(buf, 0u);
    std::vector<float> values(kBytes / 4);
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 4093);
    const Bytes before = pod_bytes(values);
    for (uint32_t off = 0; off < kBytes; off += kChunk) {
      const wire::MemWriteRequest w{buf, off,
                                    Bytes(before.begin() + off, before.begin() + off + kChunk)};
      ASSERT_EQ(slow.call(Opcode::kMemWrite, lease, tok_, w).status(), Status::kOk);
    }
    const uint64_t mod =
        next == Next::kLaunch ? load_module(slow, lease, tok_, ptx("vector.ptx")) : 0;
    const uint64_t revoked_before = m.mem_read_loans_revoked.load();

    slow.send(Opcode::kMemRead, lease, tok_,
              wire::encode_payload(wire::MemReadRequest{buf, 0, kBytes}));
    // The ops after it change the buffer's last bytes: those are still in
    // the node when they run (its first bytes may be in the socket).
    constexpr uint32_t kTail = kBytes - kFloats * 4;
    Bytes after(before.begin() + kTail, before.end());  // what a read of the tail shows next
    switch (next) {
      case Next::kBulkWrite:
        slow.send(Opcode::kMemWrite, lease, tok_,
                  wire::encode_payload(wire::MemWriteRequest{buf, kBytes - (1u << 20),
                                                             Bytes(1u << 20, std::byte{0xee})}));
        std::fill(after.begin(), after.end(), std::byte{0xee});
        break;
      case Next::kSmallWrite:
        slow.send(Opcode::kMemWrite, lease, tok_,
                  wire::encode_payload(
                      wire::MemWriteRequest{buf, kTail + 8, Bytes(64, std::byte{0xee})}));
        std::fill(after.begin() + 8, after.begin() + 72, std::byte{0xee});
        break;
      case Next::kLaunch: {
        // saxpy with x = y: y = 2y over the last kFloats floats.
        ASSERT_NE(mod, 0u);
        slow.send(
            Opcode::kLaunch, lease, tok_,
            wire::encode_payload(launch_req(
                mod, "saxpy", kFloats / 256, 256,
                Args().scalar<int32_t>(kFloats).scalar(1.0f).buf(buf, kTail).buf(buf, kTail))));
        slow.send(Opcode::kSync, lease, tok_, wire::encode_payload(wire::Empty{}));
        std::vector<float> doubled(values.begin() + kTail / 4, values.end());
        for (float& v : doubled) v *= 2;
        after = pod_bytes(doubled);
        break;
      }
      case Next::kFree:
        slow.send(Opcode::kMemFree, lease, tok_, wire::encode_payload(wire::HandleRequest{buf}));
        break;
      case Next::kRelease:
        // The node ends a lease at once, ahead of its queued ops: release
        // once the read has been lent its bytes.
        ASSERT_TRUE(eventually(
            [&] { return m.mem_read_lent_bytes.load() == lent_before + 5ull * kBytes; }));
        slow.send(Opcode::kLeaseRelease, lease, tok_, wire::encode_payload(wire::Empty{}));
        break;
    }
    const bool buffer_lives = next != Next::kFree && next != Next::kRelease;
    uint64_t read_after = 0;
    if (buffer_lives) {
      read_after = slow.send(Opcode::kMemRead, lease, tok_,
                             wire::encode_payload(wire::MemReadRequest{buf, kTail, kFloats * 4}));
    }

    auto lent = slow.recv();
    ASSERT_TRUE(lent.has_value());
    ASSERT_EQ(lent->status(), Status::kOk) << lent->message();
    EXPECT_TRUE(lent->payload == before) << "the reply shows a later op's bytes";
    const int more = (next == Next::kLaunch ? 2 : 1) + (buffer_lives ? 1 : 0);
    for (int i = 0; i < more; ++i) {
      auto r = slow.recv();
      ASSERT_TRUE(r.has_value());
      ASSERT_EQ(r->status(), Status::kOk) << r->message();
      if (r->header.request_id == read_after) {  // SYNC and it may come in either order
        EXPECT_TRUE(r->payload == after) << "the op after the read did not take effect";
      }
    }
    EXPECT_EQ(m.mem_read_loans_revoked.load(), revoked_before + 1)
        << "the loan was not copied out before the op";
    if (next != Next::kRelease) {
      EXPECT_EQ(slow.call(Opcode::kLeaseRelease, lease, tok_, wire::Empty{}).status(), Status::kOk);
    }
  }
  EXPECT_EQ(m.mem_read_lent_bytes.load() - lent_before, 5ull * kBytes)
      << "the bulk reads were copied, not lent";
}

}  // namespace
}  // namespace gpulease::testing
