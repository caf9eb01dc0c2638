// JobCoordinator and RetryPolicy: outputs in order, retries on a fresh lease
// after a lease is lost, fail-fast on errors a retry cannot fix, several nodes.
#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "client_test_util.hpp"

namespace gpulease::testing {
namespace {

using client::ChunkContext;
using client::JobCoordinator;
using client::KernelArgs;
using client::RetryPolicy;
using client::unwrap;

// CPU reference of kernels/pipeline.cu (decode -> denoise -> encode).
Bytes pipeline_reference(wire::ByteSpan raw, float threshold) {
  const size_t n = raw.size();
  std::vector<float> d(n), s(n);
  for (size_t i = 0; i < n; ++i)
    d[i] = static_cast<float>(std::to_integer<uint8_t>(raw[i])) / 255.0f;
  for (size_t i = 0; i < n; ++i) {
    float c = d[i], l = i > 0 ? d[i - 1] : c, r = i + 1 < n ? d[i + 1] : c;
    float v = (l + c + r) / 3.0f;
    s[i] = v > threshold ? v : 0.0f;
  }
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) {
    float v = std::min(std::max(s[i], 0.0f), 1.0f);
    out[i] = std::byte(static_cast<uint8_t>(std::fma(v, 255.0f, 0.5f)));
  }
  return out;
}

client::Result<Bytes> run_pipeline(ChunkContext& c, const std::string& ptx_text, float threshold) {
  auto& s = c.session();
  auto mod = c.module("pipeline", wire::as_bytes(ptx_text));
  if (!mod) return std::move(mod).error();
  const auto n = static_cast<uint32_t>(c.input().size());
  auto raw = s.mem_alloc(n);
  if (!raw) return std::move(raw).error();
  auto a = s.mem_alloc(n * 4ull);
  if (!a) return std::move(a).error();
  auto b = s.mem_alloc(n * 4ull);
  if (!b) return std::move(b).error();
  auto out = s.mem_alloc(n);
  if (!out) return std::move(out).error();
  (void)s.mem_write(*raw, 0, c.input());
  const client::Dim3 grid{(n + 127) / 128, 1, 1}, block{128, 1, 1};
  (void)s.launch_with_args(*mod, "decode", grid, block,
                           KernelArgs().push_buffer(*raw).push_buffer(*a).push_u32(n));
  (void)s.launch_with_args(
      *mod, "denoise", grid, block,
      KernelArgs().push_buffer(*a).push_buffer(*b).push_u32(n).push_f32(threshold));
  (void)s.launch_with_args(*mod, "encode", grid, block,
                           KernelArgs().push_buffer(*b).push_buffer(*out).push_u32(n));
  if (auto r = s.sync(); !r) return std::move(r).error();
  auto result = s.mem_read(*out, 0, n);
  for (auto buf : {*raw, *a, *b, *out}) (void)s.mem_free(buf);
  return result;
}

std::vector<Bytes> make_inputs(size_t count, size_t size) {
  std::vector<Bytes> v(count);
  uint32_t x = 12345;
  for (auto& in : v) {
    in.resize(size);
    for (auto& b : in) {
      x = x * 1664525u + 1013904223u;
      b = std::byte(x >> 24);
    }
  }
  return v;
}

TEST(RetryPolicy, BacksOffExponentiallyUpToTheCap) {
  RetryPolicy p;
  p.initial_backoff = std::chrono::milliseconds(10);
  p.multiplier = 3.0;
  p.max_backoff = std::chrono::milliseconds(200);
  EXPECT_EQ(p.backoff(1).count(), 10);
  EXPECT_EQ(p.backoff(2).count(), 30);
  EXPECT_EQ(p.backoff(3).count(), 90);
  EXPECT_EQ(p.backoff(4).count(), 200);
  EXPECT_EQ(p.backoff(1000).count(), 200);
}

TEST(RetryPolicy, RetriesLostLeasesAndConnectionsButNotBadRequests) {
  using client::Error;
  EXPECT_TRUE(RetryPolicy::needs_fresh_lease(Error::node(Status::kLeaseExpired, "")));
  EXPECT_TRUE(RetryPolicy::needs_fresh_lease(Error::node(Status::kLeaseFaulted, "")));
  EXPECT_TRUE(RetryPolicy::needs_fresh_lease(Error::connection_lost("")));
  EXPECT_TRUE(RetryPolicy::needs_fresh_lease(Error::timeout("")));
  EXPECT_TRUE(RetryPolicy::retryable(Error::node(Status::kBusy, "")));
  EXPECT_FALSE(RetryPolicy::needs_fresh_lease(Error::node(Status::kBusy, "")));
  EXPECT_FALSE(RetryPolicy::retryable(Error::node(Status::kLaunchFailed, "")));
  EXPECT_FALSE(RetryPolicy::retryable(Error::node(Status::kPermissionDenied, "")));
  // Found by the library, not said by the node: no retry.
  EXPECT_FALSE(RetryPolicy::retryable(Error::local(Status::kLeaseExpired, "")));
  EXPECT_FALSE(RetryPolicy::retryable(Error::local(Status::kBusy, "")));
}

TEST(ClientJobs, RunsEveryChunkOverSeveralLeasesAndKeepsOutputsInOrder) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  const std::string ptx_text = ptx("pipeline.ptx");
  auto inputs = make_inputs(24, 1000);
  JobCoordinator::Options o;
  o.nodes = {conn};
  o.workers = 3;
  o.lease.min_vram = 1 << 20;
  JobCoordinator jobs(o);
  auto out = jobs.run(inputs, [&](ChunkContext& c) { return run_pipeline(c, ptx_text, 0.1f); });
  ASSERT_TRUE(out.ok()) << client::describe(out.error());
  ASSERT_EQ(out->size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_EQ((*out)[i], pipeline_reference(inputs[i], 0.1f)) << i;
  EXPECT_EQ(jobs.stats().chunks_done, inputs.size());
  EXPECT_EQ(jobs.stats().retries, 0u);
  EXPECT_EQ(jobs.stats().leases_acquired, 3u);
  EXPECT_TRUE(unwrap(client::list_leases(conn)).empty());  // all released
}

TEST(ClientJobs, AChunkWhoseLeaseIsReleasedBehindItsBackRunsAgainOnAFreshLease) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  auto killer = connect_client(node.port(), node.token("t1"));
  const std::string ptx_text = ptx("pipeline.ptx");
  auto inputs = make_inputs(20, 512);
  JobCoordinator::Options o;
  o.nodes = {conn};
  // One worker: the one whose lease is released always has chunks left (with
  // two, on a loaded machine the other could finish the queue first).
  o.workers = 1;
  o.lease.min_vram = 1 << 20;
  o.retry.initial_backoff = std::chrono::milliseconds(5);
  std::atomic<bool> killed{false};
  std::atomic<uint64_t> killed_id{0};
  o.on_chunk_done = [&](size_t index, uint64_t lease_id) {
    if (index >= 3 && !killed.exchange(true)) {
      killed_id = lease_id;
      auto alias = client::Lease::adopt(killer, lease_id);
      EXPECT_TRUE(alias.release().ok());
    }
  };
  std::vector<client::ClientStatus> retried;
  std::mutex mu;
  o.on_retry = [&](size_t, const client::Error& e) {
    std::lock_guard lock(mu);
    retried.push_back(e.status());
  };
  JobCoordinator jobs(o);
  auto out = jobs.run(inputs, [&](ChunkContext& c) { return run_pipeline(c, ptx_text, 0.25f); });
  ASSERT_TRUE(out.ok()) << client::describe(out.error());
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_EQ((*out)[i], pipeline_reference(inputs[i], 0.25f)) << i;
  EXPECT_TRUE(killed.load());
  EXPECT_GE(jobs.stats().retries, 1u);
  EXPECT_GE(jobs.stats().leases_lost, 1u);
  EXPECT_GE(jobs.stats().leases_acquired, 2u);
  std::lock_guard lock(mu);
  ASSERT_FALSE(retried.empty());
  EXPECT_EQ(retried[0], Status::kLeaseExpired);
}

TEST(ClientJobs, GivesUpAfterMaxRetriesNamingTheChunk) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  JobCoordinator::Options o;
  o.nodes = {conn};
  o.workers = 1;
  o.lease.min_vram = 1 << 20;
  o.retry.max_retries = 2;
  o.retry.initial_backoff = std::chrono::milliseconds(1);
  JobCoordinator jobs(o);
  std::atomic<int> attempts{0};
  auto out = jobs.run(make_inputs(1, 8), [&](ChunkContext&) -> client::Result<Bytes> {
    attempts++;
    return client::Error::node(Status::kLeaseFaulted, "simulated fault");
  });
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status(), Status::kLeaseFaulted);
  EXPECT_NE(out.error().message().find("chunk 0"), std::string::npos) << out.error().message();
  EXPECT_EQ(attempts.load(), 3);
  EXPECT_EQ(jobs.stats().leases_acquired, 3u);  // a fresh lease for every attempt
}

TEST(ClientJobs, AnErrorARetryCannotFixFailsTheJobAtOnce) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  JobCoordinator::Options o;
  o.nodes = {conn};
  o.workers = 2;
  o.lease.min_vram = 1 << 20;
  JobCoordinator jobs(o);
  std::atomic<int> attempts{0};
  auto out = jobs.run(make_inputs(10, 8), [&](ChunkContext& c) -> client::Result<Bytes> {
    attempts++;
    if (c.index() == 4) return client::Error::node(Status::kLaunchFailed, "bad kernel");
    return Bytes(c.input().begin(), c.input().end());
  });
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status(), Status::kLaunchFailed);
  EXPECT_EQ(jobs.stats().retries, 0u);
}

TEST(ClientJobs, SpreadsLeasesOverSeveralNodes) {
  TestNode a(client_test_config()), b(client_test_config());
  auto ca = connect_client(a.port(), a.token("t1"));
  auto cb = connect_client(b.port(), b.token("t1"));
  const std::string ptx_text = ptx("pipeline.ptx");
  auto inputs = make_inputs(12, 256);
  JobCoordinator::Options o;
  o.nodes = {ca, cb};
  o.workers = 4;
  o.lease.min_vram = 1 << 20;
  std::mutex mu;
  std::set<uint64_t> leases;
  o.on_chunk_done = [&](size_t, uint64_t id) {
    std::lock_guard lock(mu);
    leases.insert(id);
  };
  JobCoordinator jobs(o);
  auto out = jobs.run(inputs, [&](ChunkContext& c) { return run_pipeline(c, ptx_text, 0.1f); });
  ASSERT_TRUE(out.ok()) << client::describe(out.error());
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_EQ((*out)[i], pipeline_reference(inputs[i], 0.1f));
  EXPECT_EQ(a.node().metrics().lease_acquired.load() > 0, true);
  EXPECT_EQ(b.node().metrics().lease_acquired.load() > 0, true);
}

TEST(ClientJobs, WorkersThatCannotGetALeaseStepAsideWhileAnotherHoldsOne) {
  TestNode node(client_test_config());  // one device
  auto conn = connect_client(node.port(), node.token("t1"));
  JobCoordinator::Options o;
  o.nodes = {conn};
  o.workers = 2;
  o.lease.min_vram = 1 << 20;
  o.lease.exclusivity = client::Exclusivity::kDeviceExclusive;  // room for one lease
  o.retry.max_retries = 1;
  o.retry.initial_backoff = std::chrono::milliseconds(1);
  JobCoordinator jobs(o);
  std::vector<Bytes> inputs(200, Bytes(16, std::byte{7}));
  auto out = jobs.run(inputs, [&](ChunkContext& c) -> client::Result<Bytes> {
    if (auto p = c.lease().connection().ping(); !p) return std::move(p).error();
    return Bytes(c.input().begin(), c.input().end());
  });
  ASSERT_TRUE(out.ok()) << client::describe(out.error());
  EXPECT_EQ(out->size(), inputs.size());
  EXPECT_EQ(jobs.stats().chunks_done, inputs.size());
}

TEST(ClientJobs, AnExceptionFromTheWorkFunctionFailsTheJobInsteadOfTheProcess) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  JobCoordinator::Options o;
  o.nodes = {conn};
  o.workers = 2;
  o.lease.min_vram = 1 << 20;
  JobCoordinator jobs(o);
  auto out = jobs.run(std::vector<Bytes>(4, Bytes(4)), [&](ChunkContext&) -> client::Result<Bytes> {
    throw std::runtime_error("work broke");
  });
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status(), client::ClientStatus::local(Status::kInternal));
  EXPECT_NE(out.error().message().find("work broke"), std::string::npos) << out.error().message();
}

}  // namespace
}  // namespace gpulease::testing
