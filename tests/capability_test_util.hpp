// Shared fixtures for the capability tests: fixed keys and a reference token.
#pragma once

#include <optional>

#include <array>
#include <cstdint>
#include <string>

#include "gpulease/capability/authority.hpp"
#include "gpulease/capability/keys.hpp"
#include "gpulease/capability/permissions.hpp"
#include "gpulease/capability/token.hpp"
#include "gpulease/capability/verifier.hpp"

namespace gpulease::capability::testing {

inline constexpr int64_t kNow = 1700000000;
inline constexpr const char* kNode = "node-a";

inline std::array<uint8_t, 32> seed(uint8_t first) {
  std::array<uint8_t, 32> s;
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(first + i);
  return s;
}

inline SecretKey key_a() {
  return SecretKey::from_seed(seed(0x00));
}
inline SecretKey key_b() {
  return SecretKey::from_seed(seed(0x20));
}

inline TokenId token_id(uint8_t fill) {
  TokenId id;
  id.fill(fill);
  return id;
}

// alice on node-a, lease management + session ops, valid for an hour around kNow.
inline Claims reference_claims() {
  Claims c;
  c.tenant = "alice";
  c.audience = kNode;
  c.perms = bits(Permission::kLeaseAcquire) | bits(Permission::kLeaseQuery) |
            bits(Permission::kMem) | bits(Permission::kTaskletSubmit) |
            bits(Permission::kCapRequest);
  c.not_before = kNow - 60;
  c.expires_at = kNow + 3600;
  c.token_id = token_id(0x11);
  c.max_vram = uint64_t{1} << 30;
  return c;
}

inline wire::Bytes mint(const Authority& a, const Claims& c) {
  auto r = a.mint(c);
  return r.ok() ? std::move(r).value() : wire::Bytes{};
}

// A frame of `op` on `lease`; by default the lease its opcode's header rule
// wants (lease 42 for opcodes that act on a lease, 0 for the others).
inline VerifyRequest request(wire::Opcode op, std::optional<uint64_t> lease = std::nullopt,
                             int64_t now = kNow) {
  const wire::OpcodeInfo* info = wire::find_opcode(static_cast<uint16_t>(op));
  const bool acts_on_lease = info != nullptr && info->lease_rule == wire::LeaseRule::kRequired;
  return VerifyRequest{op, lease ? *lease : (acts_on_lease ? 42u : 0u), now};
}

}  // namespace gpulease::capability::testing
