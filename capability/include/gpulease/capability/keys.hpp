// Ed25519 authority keys: key ids, secret keys that wipe themselves, and the
// key file formats (docs/TOKENS.md, "Key files").
//
//   NAME.pub:  gpulease-ed25519-public-v1 <key id: 16 hex> <base64 of the 32-byte public key>
//   NAME.key:  gpulease-ed25519-secret-v1 <key id: 16 hex> <base64 of the 32-byte seed>
//
// One key line per file, newline-terminated; blank lines and lines starting
// with '#' are ignored. Base64 is the standard alphabet with padding.
//
// Key id = the first 8 bytes of BLAKE2b-256("gpulease-key-id-v1\0" || public
// key) read as a little-endian u64, written as 16 lower-case hex digits of
// that value. It is derived, never chosen, so a ring entry cannot claim a key
// id that belongs to another key.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "gpulease/wire/bytes.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::capability {

inline constexpr size_t kPublicKeyBytes = 32;
inline constexpr size_t kSeedBytes = 32;
inline constexpr std::string_view kKeyIdDomain{"gpulease-key-id-v1\0", 19};
inline constexpr std::string_view kPublicKeyTag = "gpulease-ed25519-public-v1";
inline constexpr std::string_view kSecretKeyTag = "gpulease-ed25519-secret-v1";

using PublicKey = std::array<uint8_t, kPublicKeyBytes>;
using Signature = std::array<uint8_t, 64>;

[[nodiscard]] uint64_t key_id_of(const PublicKey& pk) noexcept;
// 16 lower-case hex digits.
[[nodiscard]] std::string key_id_hex(uint64_t key_id);

// An Ed25519 signing key. Move-only; the secret bytes are wiped with
// sodium_memzero when the object is destroyed or moved from, and never
// appear in any message or log.
class SecretKey {
 public:
  // A fresh key from the system RNG.
  [[nodiscard]] static SecretKey generate();
  // Deterministic key from a 32-byte seed (vectors and tests).
  [[nodiscard]] static SecretKey from_seed(std::span<const uint8_t, kSeedBytes> seed);

  SecretKey(SecretKey&& other) noexcept;
  SecretKey& operator=(SecretKey&& other) noexcept;
  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;
  ~SecretKey();

  [[nodiscard]] const PublicKey& public_key() const noexcept { return pk_; }
  [[nodiscard]] uint64_t key_id() const noexcept { return key_id_; }

  // Ed25519 detached signature over `message`.
  [[nodiscard]] Signature sign(wire::ByteSpan message) const noexcept;

  // The 32-byte seed, for writing the key file only.
  // LIFETIME: valid while *this is.
  [[nodiscard]] std::span<const uint8_t, kSeedBytes> seed() const noexcept {
    return std::span<const uint8_t, kSeedBytes>(sk_.data(), kSeedBytes);
  }

 private:
  SecretKey() = default;
  void wipe() noexcept;

  std::array<uint8_t, 64> sk_{};  // libsodium layout: seed || public key
  PublicKey pk_{};
  uint64_t key_id_ = 0;
};

// Ed25519 verification of a detached signature. False for any invalid input.
[[nodiscard]] bool verify_signature(const PublicKey& pk, wire::ByteSpan message,
                                    wire::ByteSpan signature) noexcept;

struct PublicKeyEntry {
  uint64_t key_id = 0;
  PublicKey key{};
};

// One key line, as in a .pub file (no trailing newline).
[[nodiscard]] std::string format_public_key(const PublicKey& pk);
// Parses the text of a .pub file (see top of file). INVALID_ARGUMENT when the
// tag, base64 or key id is wrong (a key id that does not match the key is an
// error, not a hint).
[[nodiscard]] Result<PublicKeyEntry> parse_public_key(std::string_view text);

[[nodiscard]] Result<PublicKeyEntry> load_public_key_file(const std::filesystem::path& path);
// SECURITY: refuses a file that is readable or writable by group or others,
// as ssh does, so a leaked-permission key is noticed rather than used. The
// file's bytes are wiped from memory after parsing; errors name the path and
// the problem, never the contents.
[[nodiscard]] Result<SecretKey> load_secret_key_file(const std::filesystem::path& path);

// Writes `base`.key (mode 0600, created with O_EXCL) and `base`.pub (0644,
// O_EXCL). Refuses, changing nothing, when either exists. INVALID_ARGUMENT
// for an existing file, INTERNAL for other I/O errors.
[[nodiscard]] Result<void> write_key_pair(const std::filesystem::path& base, const SecretKey& key);

}  // namespace gpulease::capability
