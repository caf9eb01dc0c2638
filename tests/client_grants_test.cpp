// Scoped grants (CAP_REQUEST): a token bound to one lease with only the
// permissions a request needs, checked before use and enforced by the node.
#include "client_test_util.hpp"

namespace gpulease::testing {
namespace {

using capability::Permission;
using client::KernelArgs;
using client::LeaseBuilder;
using client::Session;
using client::unwrap;

TEST(ClientGrants, AScopedTokenIsBoundToTheLeaseWithOnlySubmitAndQuery) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  auto lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).lease_secs(30).acquire());
  auto grant = client::request_scoped_token(lease, client::kDefaultScopedPermissions, 20);
  ASSERT_TRUE(grant.ok()) << client::describe(grant.error());
  EXPECT_EQ(grant->claims.lease_id, lease.lease_id());
  EXPECT_EQ(grant->claims.tenant, "t1");
  EXPECT_EQ(grant->claims.audience, "test-node");
  EXPECT_EQ(grant->claims.perms, client::kDefaultScopedPermissions);
  EXPECT_LE(grant->expires_at_unix_secs(), static_cast<uint64_t>(now_s() + 21));
  EXPECT_EQ(grant->text().rfind("glt1.", 0), 0u);
  EXPECT_TRUE(client::check_scoped_token(*grant, lease.lease_id(), "test-node",
                                         Permission::kTaskletSubmit, now_s())
                  .ok());
}

TEST(ClientGrants, TheCheckRefusesAnotherLeaseAudiencePermissionOrTime) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  auto lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).lease_secs(30).acquire());
  auto grant = unwrap(client::request_scoped_token(lease, client::kDefaultScopedPermissions, 20));
  const auto id = lease.lease_id();
  EXPECT_EQ(
      client::check_scoped_token(grant, id + 1, "test-node", Permission::kTaskletSubmit, now_s())
          .status(),
      client::ClientStatus::local(Status::kPermissionDenied));
  EXPECT_EQ(client::check_scoped_token(grant, id, "other-node", Permission::kTaskletSubmit, now_s())
                .status(),
            client::ClientStatus::local(Status::kPermissionDenied));
  EXPECT_EQ(client::check_scoped_token(grant, id, "test-node", Permission::kMem, now_s()).status(),
            client::ClientStatus::local(Status::kPermissionDenied));
  EXPECT_EQ(
      client::check_scoped_token(grant, id, "test-node", Permission::kTaskletSubmit, now_s() + 3600)
          .status(),
      client::ClientStatus::local(Status::kTokenExpired));
}

TEST(ClientGrants, TheNodeLetsTheGrantLaunchAndSyncButNotTouchMemory) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  auto lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).lease_secs(30).acquire());
  auto grant = unwrap(client::request_scoped_token(lease));
  Session owner(lease);
  Session scoped(lease, grant.token);
  const int n = 64;
  std::vector<float> v(n, 1.0f);
  auto buf = unwrap(owner.mem_alloc(n * 4));
  ASSERT_TRUE(owner.mem_write(buf, 0, as_byte_vector(v)).ok());
  std::string ptx_text = ptx("transform.ptx");
  auto mod = unwrap(owner.module_load(wire::as_bytes(ptx_text)));
  ASSERT_TRUE(owner.flush().ok());

  auto denied = scoped.mem_alloc(64);
  EXPECT_EQ(denied.status(), Status::kPermissionDenied);
  ASSERT_TRUE(scoped
                  .launch_with_args(mod, "scale", {1, 1, 1}, {n, 1, 1},
                                    KernelArgs().push_buffer(buf).push_i32(n).push_f32(4.0f))
                  .ok());
  auto done = scoped.sync();
  ASSERT_TRUE(done.ok()) << client::describe(done.error());
  auto out = unwrap(owner.mem_read(buf, 0, n * 4));
  float f;
  std::memcpy(&f, out.data(), 4);
  EXPECT_EQ(f, 4.0f);

  // LEASE_QUERY with the grant works; another lease is out of its reach.
  auto other = unwrap(LeaseBuilder(conn).min_vram(1 << 20).lease_secs(30).acquire());
  client::RequestOptions ro;
  ro.lease_id = other.lease_id();
  ro.token = grant.token;
  auto q = conn.call(Opcode::kLeaseQuery, wire::encode_payload(wire::Empty{}), ro);
  EXPECT_EQ(q.status(), Status::kPermissionDenied);
  ro.lease_id = lease.lease_id();
  EXPECT_TRUE(conn.call(Opcode::kLeaseQuery, wire::encode_payload(wire::Empty{}), ro).ok());
}

TEST(ClientGrants, ATokenWithoutCapRequestCannotAskForAGrant) {
  TestNode node(client_test_config());
  const auto perms = capability::kAllPermissions & ~capability::bits(Permission::kCapRequest);
  auto conn = connect_client(node.port(), node.token("t1", perms));
  auto lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).lease_secs(30).acquire());
  auto grant = client::request_scoped_token(lease);
  EXPECT_EQ(grant.status(), Status::kPermissionDenied);
}

}  // namespace
}  // namespace gpulease::testing
