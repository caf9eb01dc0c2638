// Session: the recipe-30 flow, pipelined ops and where their errors surface,
// chunked transfers, typed arguments, GPU_SUBMIT, faults.
#include <cmath>

#include "client_test_util.hpp"

namespace gpulease::testing {
namespace {

using client::DeviceBuffer;
using client::KernelArgs;
using client::LeaseBuilder;
using client::Module;
using client::Session;
using client::unwrap;

class ClientSession : public ::testing::Test {
 protected:
  ClientSession()
      : node_(client_test_config()),
        conn_(connect_client(node_.port(), node_.token("t1"))),
        lease_(unwrap(LeaseBuilder(conn_).min_vram(64 << 20).lease_secs(120).acquire())) {}

  static std::vector<float> floats(const Bytes& b) {
    std::vector<float> v(b.size() / 4);
    std::memcpy(v.data(), b.data(), v.size() * 4);
    return v;
  }

  TestNode node_;
  client::Connection conn_;
  client::Lease lease_;
};

TEST_F(ClientSession, RunsScaleThenBiasWithRawArgumentsAsInRecipe30) {
  Session s(lease_);
  const uint32_t n = 1024;
  std::vector<float> input(n);
  for (uint32_t i = 0; i < n; ++i) input[i] = static_cast<float>(i);
  DeviceBuffer buf = unwrap(s.mem_alloc(n * 4));
  ASSERT_TRUE(s.mem_write(buf, 0, as_byte_vector(input)).ok());
  std::string ptx_text = ptx("transform.ptx");
  Module m = unwrap(s.module_load(wire::as_bytes(ptx_text)));
  const client::Dim3 grid{(n + 255) / 256, 1, 1}, block{256, 1, 1};
  const uint32_t sizes[] = {8, 4, 4};
  for (auto [kernel, param] : {std::pair{"scale", 2.0f}, std::pair{"bias", 10.0f}}) {
    Bytes args(16);
    wire::store_le64(args.data(), buf.address());
    wire::store_le32(args.data() + 8, n);
    uint32_t bits;
    std::memcpy(&bits, &param, 4);
    wire::store_le32(args.data() + 12, bits);
    ASSERT_TRUE(s.launch(m, kernel, grid, block, args, sizes).ok());
  }
  auto done = s.sync();
  ASSERT_TRUE(done.ok()) << client::describe(done.error());
  EXPECT_EQ(*done, 2u);
  auto out = floats(unwrap(s.mem_read(buf, 0, n * 4)));
  for (uint32_t i = 0; i < n; ++i) ASSERT_EQ(out[i], 2.0f * static_cast<float>(i) + 10.0f) << i;
  EXPECT_TRUE(s.mem_free(buf).ok());
}

TEST_F(ClientSession, ManyPipelinedLaunchesRunInOrderAndSyncOnce) {
  Session s(lease_);
  const int n = 256;
  std::vector<float> zeros(n, 0.0f);
  DeviceBuffer buf = unwrap(s.mem_alloc(n * 4));
  ASSERT_TRUE(s.mem_write(buf, 0, as_byte_vector(zeros)).ok());
  std::string ptx_text = ptx("transform.ptx");
  Module m = unwrap(s.module_load(wire::as_bytes(ptx_text)));
  for (int i = 0; i < 200; ++i) {
    // data = data * 1 + 1, 200 times, alternating kernels.
    ASSERT_TRUE(
        s.launch_with_args(m, i % 2 ? "scale" : "bias", {1, 1, 1}, {n, 1, 1},
                           KernelArgs().push_buffer(buf).push_i32(n).push_f32(i % 2 ? 1.0f : 1.0f))
            .ok());
  }
  auto done = s.sync();
  ASSERT_TRUE(done.ok()) << client::describe(done.error());
  EXPECT_EQ(*done, 200u);
  EXPECT_EQ(s.pending_ops(), 0u);
  auto out = floats(unwrap(s.mem_read(buf, 0, n * 4)));
  for (int i = 0; i < n; ++i) ASSERT_EQ(out[i], 100.0f);
  // The launches did not wait for each other's replies.
  EXPECT_GT(conn_.stats().max_inflight, 1u);
}

TEST_F(ClientSession, AFailedLaunchSurfacesAtSyncNamingTheKernel) {
  Session s(lease_);
  DeviceBuffer buf = unwrap(s.mem_alloc(1024));
  std::string ptx_text = ptx("transform.ptx");
  Module m = unwrap(s.module_load(wire::as_bytes(ptx_text)));
  // Neither call fails: the launches are pipelined.
  EXPECT_TRUE(s.launch_with_args(m, "no_such_kernel", {1, 1, 1}, {1, 1, 1},
                                 KernelArgs().push_buffer(buf).push_i32(1).push_f32(1))
                  .ok());
  EXPECT_TRUE(s.launch_with_args(m, "scale", {1, 1, 1}, {1, 1, 1},
                                 KernelArgs().push_buffer(buf).push_i32(1).push_f32(1))
                  .ok());
  auto r = s.sync();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), Status::kLaunchFailed);
  EXPECT_NE(r.error().message().find("LAUNCH 'no_such_kernel'"), std::string::npos)
      << r.error().message();
  // Reported once: the session goes on.
  auto again = s.sync();
  EXPECT_TRUE(again.ok()) << client::describe(again.error());
}

TEST_F(ClientSession, AnOutOfRangeWriteSurfacesAtTheNextReadNamingMemWrite) {
  Session s(lease_);
  DeviceBuffer buf = unwrap(s.mem_alloc(64));
  Bytes data(128, std::byte{1});
  EXPECT_TRUE(s.mem_write(buf, 0, data).ok());  // pipelined: no error yet
  auto r = s.mem_read(buf, 0, 64);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), Status::kOutOfRange);
  EXPECT_NE(r.error().message().find("MEM_WRITE"), std::string::npos) << r.error().message();
  EXPECT_TRUE(s.mem_read(buf, 0, 64).ok());
}

TEST_F(ClientSession, AWriteToAFreedBufferSurfacesAtSyncAsInvalidHandle) {
  Session s(lease_);
  DeviceBuffer buf = unwrap(s.mem_alloc(64));
  ASSERT_TRUE(s.mem_free(buf).ok());
  EXPECT_TRUE(s.mem_write(buf, 0, Bytes(8)).ok());
  auto r = s.sync();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), Status::kInvalidHandle);
  EXPECT_NE(r.error().message().find("MEM_WRITE"), std::string::npos) << r.error().message();
}

TEST_F(ClientSession, LargeTransfersAreSplitIntoChunksInFlightTogether) {
  client::ConnectOptions o;
  o.max_chunk_bytes = 64 << 10;
  auto conn = connect_client(node_.port(), node_.token("t1"), o);
  auto lease = unwrap(LeaseBuilder(conn).min_vram(8 << 20).lease_secs(60).acquire());
  Session s(lease);
  const size_t size = (3 << 20) + 123;
  Bytes data(size);
  for (size_t i = 0; i < size; ++i) data[i] = std::byte((i * 131) >> 3);
  DeviceBuffer buf = unwrap(s.mem_alloc(size));
  uint64_t last_progress = 0;
  ASSERT_TRUE(
      s.mem_write(buf, 0, data, [&](uint64_t done, uint64_t) { last_progress = done; }).ok());
  auto back = s.mem_read(buf, 0, size);
  ASSERT_TRUE(back.ok()) << client::describe(back.error());
  EXPECT_TRUE(*back == data);
  EXPECT_EQ(last_progress, size);
  EXPECT_GE(conn.stats().requests, 2 * size / (64 << 10));
  EXPECT_GT(conn.stats().max_inflight, 1u);
}

TEST_F(ClientSession, AFaultingKernelIsSyncFailedAndFaultsTheLease) {
  Session s(lease_);
  DeviceBuffer in = unwrap(s.mem_alloc(64));
  DeviceBuffer out = unwrap(s.mem_alloc(64));
  std::string ptx_text = ptx("faults.ptx");
  Module m = unwrap(s.module_load(wire::as_bytes(ptx_text)));
  ASSERT_TRUE(s.launch_with_args(
                   m, "oob_read", {1, 1, 1}, {16, 1, 1},
                   KernelArgs().push_buffer(in).push_buffer(out).push_i32(16).push_i32(1 << 20))
                  .ok());
  auto r = s.sync();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), Status::kSyncFailed);
  EXPECT_NE(r.error().message().find("SYNC"), std::string::npos) << r.error().message();
  auto next = s.mem_alloc(64);
  EXPECT_EQ(next.status(), Status::kLeaseFaulted);
  EXPECT_TRUE(client::is_lease_lost(next.error()));
}

TEST_F(ClientSession, SubmitRunsOneKernelAndReturnsItsOutputs) {
  const int n = 100;
  std::vector<float> input(n);
  for (int i = 0; i < n; ++i) input[i] = static_cast<float>(i);
  std::string ptx_text = ptx("transform.ptx");
  auto r =
      client::submit(lease_, wire::as_bytes(ptx_text), "scale", {1, 1, 1}, {128, 1, 1},
                     client::SubmitArgs().inout(as_byte_vector(input)).push_i32(n).push_f32(3.0f));
  ASSERT_TRUE(r.ok()) << client::describe(r.error());
  ASSERT_EQ(r->outputs.size(), 1u);
  ASSERT_NE(r->output(0), nullptr);
  auto out = floats(*r->output(0));
  for (int i = 0; i < n; ++i) EXPECT_EQ(out[i], 3.0f * static_cast<float>(i));
  auto info = unwrap(lease_.query());
  EXPECT_EQ(info.used_bytes, 0u);  // the node freed the temporaries
}

TEST_F(ClientSession, ModulesLoadAndUnload) {
  Session s(lease_);
  std::string ptx_text = ptx("transform.ptx");
  Module m = unwrap(s.module_load(wire::as_bytes(ptx_text)));
  EXPECT_EQ(unwrap(lease_.query()).modules, 1u);
  ASSERT_TRUE(s.module_unload(m).ok());
  EXPECT_EQ(unwrap(lease_.query()).modules, 0u);
  auto again = s.module_unload(m);
  EXPECT_EQ(again.status(), Status::kInvalidHandle);
  auto bad = s.module_load(wire::as_bytes(std::string_view("this is not ptx")));
  EXPECT_EQ(bad.status(), Status::kLoadFailed);
}

// Module variables (kernels/globals.cu) through the C++ client: looked up,
// written (pipelined), read, passed as a pointer, gone with their module.
TEST_F(ClientSession, ModuleGlobalsAreWrittenReadAndPassedAsPointers) {
  Session s(lease_);
  std::string ptx_text = ptx("globals.ptx");
  Module m = unwrap(s.module_load(wire::as_bytes(ptx_text)));
  client::ModuleGlobal table = unwrap(s.module_global(m, "kTable"));
  EXPECT_EQ(table.size, 64u);
  EXPECT_TRUE(table.is_const());
  EXPECT_EQ(table.name, "kTable");
  client::ModuleGlobal terms = unwrap(s.module_global(m, "kTerms"));
  client::ModuleGlobal count = unwrap(s.module_global(m, "gCount"));
  EXPECT_FALSE(count.is_const());
  EXPECT_EQ(count.buffer().address(), count.handle);
  std::vector<float> coeffs(16, 0.0f);
  coeffs[0] = 2.0f;
  coeffs[1] = -1.0f;
  ASSERT_TRUE(s.write_global(table, as_byte_vector(coeffs)).ok());
  ASSERT_TRUE(s.write_global(terms, as_byte_vector(std::vector<int32_t>{2})).ok());
  // More than the variable holds is refused before anything is sent.
  auto over = s.write_global(terms, as_byte_vector(std::vector<int32_t>{1, 2}));
  EXPECT_EQ(over.status(), client::ClientStatus::local(Status::kInvalidArgument));
  EXPECT_EQ(s.write_global(table, as_byte_vector(std::vector<float>{1.0f}), 64).status(),
            client::ClientStatus::local(Status::kInvalidArgument));
  const uint32_t n = 300;
  std::vector<float> x(n);
  for (uint32_t i = 0; i < n; ++i) x[i] = static_cast<float>(i);
  DeviceBuffer dx = unwrap(s.mem_alloc(n * 4));
  DeviceBuffer dy = unwrap(s.mem_alloc(n * 4));
  ASSERT_TRUE(s.mem_write(dx, 0, as_byte_vector(x)).ok());
  ASSERT_TRUE(s.launch_with_args(m, "poly_table", {2, 1, 1}, {256, 1, 1},
                                 KernelArgs().push_buffer(dx).push_buffer(dy).push_i32(n))
                  .ok());
  ASSERT_TRUE(s.launch_with_args(m, "bump", {1, 1, 1}, {10, 1, 1},
                                 KernelArgs().push_buffer(count.buffer()).push_u32(100))
                  .ok());
  ASSERT_TRUE(s.sync().ok());
  auto y = floats(unwrap(s.mem_read(dy, 0, n * 4)));
  for (uint32_t i = 0; i < n; ++i) ASSERT_EQ(y[i], 2.0f - x[i]) << i;
  Bytes c = unwrap(s.read_global(count));
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(wire::load_le32(c.data()), n + 10u * 100u);
  EXPECT_EQ(floats(unwrap(s.read_global(table))), coeffs);
  auto none = s.module_global(m, "nope");
  EXPECT_EQ(none.status(), Status::kInvalidArgument);
  EXPECT_NE(none.error().message().find("MODULE_GLOBAL 'nope'"), std::string::npos)
      << none.error().message();
  ASSERT_TRUE(s.module_unload(m).ok());
  EXPECT_EQ(s.read_global(count).status(), Status::kInvalidHandle);
  EXPECT_EQ(s.module_global(m, "kTable").status(), Status::kInvalidHandle);
}

TEST_F(ClientSession, RawArgumentSizesMustMatchTheBytes) {
  Session s(lease_);
  const uint32_t sizes[] = {8, 4};
  auto r = s.launch(Module{1}, "scale", {1, 1, 1}, {1, 1, 1}, Bytes(16), sizes);
  EXPECT_EQ(r.status(), client::ClientStatus::local(Status::kInvalidArgument));
}

TEST_F(ClientSession, UnwrapThrowsClientErrorWithTheStatus) {
  Session s(lease_);
  try {
    (void)unwrap(s.mem_alloc(1ull << 40));
    FAIL() << "expected ClientError";
  } catch (const client::ClientError& e) {
    EXPECT_EQ(e.status(), Status::kAllocFailed);
    EXPECT_NE(std::string(e.what()).find("ALLOC_FAILED"), std::string::npos);
  }
}

}  // namespace
}  // namespace gpulease::testing
