// The fleet audience (issue 16, docs/TOKENS.md "Fleet audience"): a node
// started with --fleet NAME --accept-fleet-audience also accepts tokens whose
// audience is "fleet:NAME"; nodes without the flag, or of another fleet, refuse
// them; a CAP_REQUEST token minted from one names the node only.
#include <gtest/gtest.h>

#include "capability_test_util.hpp"
#include "fleet_node_util.hpp"
#include "gpulease/capability/verifier.hpp"
#include "gpulease/client/client.hpp"

using namespace gpulease;
using namespace gpulease::capability;
using namespace gpulease::capability::testing;
using namespace std::chrono_literals;

TEST(FleetAudienceVerifier, AcceptsItsFleetOnlyWhenConfigured) {
  Authority a(key_a());
  Claims fleet = reference_claims();
  fleet.audience = "fleet:prod";
  const auto tok = mint(a, fleet);
  ASSERT_FALSE(tok.empty());

  VerifierOptions on;
  on.node_id = kNode;
  on.fleet_audience = "fleet:prod";
  Verifier accepting(on);
  accepting.key_ring().add(a.public_key());
  auto ok = accepting.verify(tok, request(wire::Opcode::kLeaseAcquire));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->audience, "fleet:prod");
  // Its own id still works.
  auto own = accepting.verify(mint(a, reference_claims()), request(wire::Opcode::kLeaseAcquire));
  EXPECT_TRUE(own.ok());

  // Another fleet's token, and a node without the option: wrong_audience.
  Claims other = fleet;
  other.audience = "fleet:staging";
  auto wrong = accepting.verify(mint(a, other), request(wire::Opcode::kLeaseAcquire));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status(), Status::kPermissionDenied);
  EXPECT_EQ(wrong.error().message.rfind("wrong_audience", 0), 0u) << wrong.error().message;

  VerifierOptions off;
  off.node_id = kNode;
  Verifier plain(off);
  plain.key_ring().add(a.public_key());
  auto refused = plain.verify(tok, request(wire::Opcode::kLeaseAcquire));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status(), Status::kPermissionDenied);

  // The bare fleet name is not the fleet audience.
  Claims bare = fleet;
  bare.audience = "prod";
  EXPECT_FALSE(accepting.verify(mint(a, bare), request(wire::Opcode::kLeaseAcquire)).ok());
}

namespace {

auto connect(const test::FleetNodeProcess& n, wire::Bytes token) {
  client::ConnectOptions o;
  o.node = client::NodeAddress{"127.0.0.1", n.port()};
  o.token = std::move(token);
  o.request_timeout = 30s;
  o.reconnect_attempts = 0;
  return client::Connection::connect(std::move(o));
}

}  // namespace

TEST(FleetAudienceNodes, OneTokenWorksOnEveryNodeOfTheFleetAndNowhereElse) {
  test::FleetAuthority auth;
  ASSERT_TRUE(auth.ok());
  auto opts = [&](const std::string& id, const std::string& fleet, bool accept) {
    test::FleetNodeOptions o;
    o.node_id = id;
    o.fleet = fleet;
    o.authority_pub = auth.pub_path();
    o.sim_device_bytes = 256ull << 20;
    if (accept) o.extra = {"--accept-fleet-audience"};
    return o;
  };
  test::FleetNodeProcess a(opts("fa-1", "blue", true));
  test::FleetNodeProcess b(opts("fa-2", "blue", true));
  test::FleetNodeProcess plain(opts("fa-3", "blue", false));
  test::FleetNodeProcess other(opts("fa-4", "green", true));
  ASSERT_TRUE(a.start()) << a.log();
  ASSERT_TRUE(b.start()) << b.log();
  ASSERT_TRUE(plain.start()) << plain.log();
  ASSERT_TRUE(other.start()) << other.log();

  // The token is minted by the CLI with --audience fleet:blue.
  const std::string cli = std::string(GPULEASE_BIN_DIR) + "/gpulease";
  const std::string out = (std::filesystem::path(auth.key_path()).parent_path() / "tok").string();
  const std::string cmd = cli + " token mint --key " + auth.key_path() +
                          " --tenant t1 --audience fleet:blue --perms all --ttl 600 > " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::string text = test::read_text(out);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  auto token = client::token_from_text(text);
  ASSERT_TRUE(token) << text;

  for (auto* n : {&a, &b}) {
    auto conn = connect(*n, *token);
    ASSERT_TRUE(conn) << client::describe(conn.error());
    auto lease = client::LeaseBuilder(*conn).min_vram(16ull << 20).lease_secs(30).acquire();
    ASSERT_TRUE(lease) << n->node_id() << ": " << client::describe(lease.error());
    // A scoped token minted from the fleet token is this node's only.
    auto grant = client::request_scoped_token(*lease);
    ASSERT_TRUE(grant) << client::describe(grant.error());
    EXPECT_EQ(grant->claims.audience, n->node_id());
    EXPECT_EQ(grant->claims.tenant, "t1");
    ASSERT_TRUE(lease->release());
  }
  for (auto* n : {&plain, &other}) {
    auto conn = connect(*n, *token);
    ASSERT_TRUE(conn) << client::describe(conn.error());  // HELLO needs no token
    auto lease = client::LeaseBuilder(*conn).min_vram(16ull << 20).lease_secs(30).acquire();
    ASSERT_FALSE(lease) << n->node_id() << " accepted a token for fleet:blue";
    EXPECT_TRUE(lease.status() == Status::kPermissionDenied) << client::describe(lease.error());
  }
}
