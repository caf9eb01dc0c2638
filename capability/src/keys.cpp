#include "gpulease/capability/keys.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "gpulease/capability/encoding.hpp"

namespace gpulease::capability {
namespace {

// Key files are one short line; anything larger is not a key file.
constexpr size_t kMaxKeyFileBytes = 4096;

const unsigned char* uc(wire::ByteSpan b) {
  return reinterpret_cast<const unsigned char*>(b.data());
}

Error file_error(Status s, const std::filesystem::path& path, std::string_view what) {
  std::string msg = path.string();
  msg += ": ";
  msg.append(what);
  return make_error(s, std::move(msg));
}

Error errno_error(const std::filesystem::path& path, std::string_view op, int err) {
  std::string what(op);
  what += ": ";
  what += std::strerror(err);
  return file_error(err == EEXIST ? Status::kInvalidArgument : Status::kInternal, path, what);
}

// The one key line of a key file: `tag keyid base64`. Returns false when the
// text has no key line, more than one, or a line with another shape.
struct KeyLine {
  std::string_view tag, key_id, b64;
};

bool split_key_line(std::string_view text, KeyLine& out) {
  bool found = false;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    if (found) return false;
    size_t s1 = line.find(' ');
    if (s1 == std::string_view::npos) return false;
    size_t s2 = line.find(' ', s1 + 1);
    if (s2 == std::string_view::npos || line.find(' ', s2 + 1) != std::string_view::npos) {
      return false;
    }
    out = KeyLine{line.substr(0, s1), line.substr(s1 + 1, s2 - s1 - 1), line.substr(s2 + 1)};
    found = true;
  }
  return found;
}

Result<void> write_exclusive(const std::filesystem::path& path, mode_t mode,
                             std::string_view contents) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return errno_error(path, "create", errno);
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(path.c_str());
      return errno_error(path, "write", err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return errno_error(path, "sync", err);
  }
  return {};
}

}  // namespace

uint64_t key_id_of(const PublicKey& pk) noexcept {
  require_sodium();
  unsigned char h[32];
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, sizeof h);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(kKeyIdDomain.data()),
                            kKeyIdDomain.size());
  crypto_generichash_update(&st, pk.data(), pk.size());
  crypto_generichash_final(&st, h, sizeof h);
  return wire::load_le64(reinterpret_cast<const std::byte*>(h));
}

std::string key_id_hex(uint64_t key_id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(key_id));
  return buf;
}

SecretKey SecretKey::generate() {
  require_sodium();
  std::array<uint8_t, kSeedBytes> seed;
  randombytes_buf(seed.data(), seed.size());
  SecretKey k = from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return k;
}

SecretKey SecretKey::from_seed(std::span<const uint8_t, kSeedBytes> seed) {
  require_sodium();
  SecretKey k;
  crypto_sign_seed_keypair(k.pk_.data(), k.sk_.data(), seed.data());
  k.key_id_ = key_id_of(k.pk_);
  return k;
}

SecretKey::SecretKey(SecretKey&& other) noexcept
    : sk_(other.sk_), pk_(other.pk_), key_id_(other.key_id_) {
  other.wipe();
}

SecretKey& SecretKey::operator=(SecretKey&& other) noexcept {
  if (this != &other) {
    sk_ = other.sk_;
    pk_ = other.pk_;
    key_id_ = other.key_id_;
    other.wipe();
  }
  return *this;
}

SecretKey::~SecretKey() {
  wipe();
}

void SecretKey::wipe() noexcept {
  sodium_memzero(sk_.data(), sk_.size());
}

Signature SecretKey::sign(wire::ByteSpan message) const noexcept {
  Signature sig{};
  crypto_sign_detached(sig.data(), nullptr, uc(message), message.size(), sk_.data());
  return sig;
}

bool verify_signature(const PublicKey& pk, wire::ByteSpan message,
                      wire::ByteSpan signature) noexcept {
  if (signature.size() != crypto_sign_BYTES) return false;
  require_sodium();
  return crypto_sign_verify_detached(uc(signature), uc(message), message.size(), pk.data()) == 0;
}

std::string format_public_key(const PublicKey& pk) {
  std::string line(kPublicKeyTag);
  line += ' ';
  line += key_id_hex(key_id_of(pk));
  line += ' ';
  line += to_base64({reinterpret_cast<const std::byte*>(pk.data()), pk.size()},
                    Base64Variant::kStandard);
  return line;
}

Result<PublicKeyEntry> parse_public_key(std::string_view text) {
  KeyLine kl;
  if (!split_key_line(text, kl)) {
    return make_error(Status::kInvalidArgument,
                      "expected one line '" + std::string(kPublicKeyTag) + " <key id> <base64>'");
  }
  if (kl.tag != kPublicKeyTag) {
    return make_error(Status::kInvalidArgument, kl.tag == kSecretKeyTag
                                                    ? "this is a secret key file, not a public key"
                                                    : "not a gpulease public key");
  }
  auto raw = from_base64(kl.b64, Base64Variant::kStandard);
  if (!raw || raw->size() != kPublicKeyBytes) {
    return make_error(Status::kInvalidArgument, "public key is not 32 bytes of base64");
  }
  PublicKeyEntry e;
  std::memcpy(e.key.data(), raw->data(), kPublicKeyBytes);
  e.key_id = key_id_of(e.key);
  if (kl.key_id != key_id_hex(e.key_id)) {
    return make_error(Status::kInvalidArgument, "key id does not match the public key");
  }
  return e;
}

Result<PublicKeyEntry> load_public_key_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(path, "open", errno);
  std::array<char, kMaxKeyFileBytes + 1> buf;
  size_t len = 0;
  while (len < buf.size()) {
    ssize_t n = ::read(fd, buf.data() + len, buf.size() - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return errno_error(path, "read", err);
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  ::close(fd);
  if (len > kMaxKeyFileBytes) return file_error(Status::kInvalidArgument, path, "too large");
  auto r = parse_public_key({buf.data(), len});
  if (!r) return file_error(r.status(), path, r.error().message);
  return r;
}

Result<SecretKey> load_secret_key_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(path, "open", errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return errno_error(path, "stat", err);
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return file_error(Status::kPermissionDenied, path,
                      "secret key file is accessible by group or others (chmod 600 it)");
  }
  // SECURITY: the file's bytes live only in this stack buffer and the decoded
  // vector below; both are wiped on every path out.
  std::array<char, kMaxKeyFileBytes + 1> buf;
  size_t len = 0;
  int read_err = 0;
  while (len < buf.size()) {
    ssize_t n = ::read(fd, buf.data() + len, buf.size() - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) read_err = errno;
    if (n <= 0) break;
    len += static_cast<size_t>(n);
  }
  ::close(fd);
  struct Wipe {
    std::array<char, kMaxKeyFileBytes + 1>& b;
    ~Wipe() { sodium_memzero(b.data(), b.size()); }
  } wipe_buf{buf};
  if (read_err != 0) return errno_error(path, "read", read_err);
  if (len > kMaxKeyFileBytes) return file_error(Status::kInvalidArgument, path, "too large");

  KeyLine kl;
  if (!split_key_line({buf.data(), len}, kl)) {
    return file_error(Status::kInvalidArgument, path, "not a gpulease secret key file");
  }
  if (kl.tag != kSecretKeyTag) {
    return file_error(Status::kInvalidArgument, path,
                      kl.tag == kPublicKeyTag ? "this is a public key file, not a secret key"
                                              : "not a gpulease secret key file");
  }
  auto seed = from_base64(kl.b64, Base64Variant::kStandard);
  if (!seed || seed->size() != kSeedBytes) {
    if (seed) sodium_memzero(seed->data(), seed->size());
    return file_error(Status::kInvalidArgument, path, "secret key is not 32 bytes of base64");
  }
  SecretKey key = SecretKey::from_seed(std::span<const uint8_t, kSeedBytes>(
      reinterpret_cast<const uint8_t*>(seed->data()), kSeedBytes));
  sodium_memzero(seed->data(), seed->size());
  if (kl.key_id != key_id_hex(key.key_id())) {
    return file_error(Status::kInvalidArgument, path, "key id does not match the secret key");
  }
  return key;
}

Result<void> write_key_pair(const std::filesystem::path& base, const SecretKey& key) {
  std::filesystem::path key_path = base, pub_path = base;
  key_path += ".key";
  pub_path += ".pub";
  struct stat st;
  for (const auto& p : {key_path, pub_path}) {
    if (::lstat(p.c_str(), &st) == 0) {
      return file_error(Status::kInvalidArgument, p, "already exists; refusing to overwrite");
    }
  }
  std::string secret_line(kSecretKeyTag);
  secret_line += ' ';
  secret_line += key_id_hex(key.key_id());
  secret_line += ' ';
  // Reserve first so the appends below never reallocate and leave a stray
  // copy of the secret behind.
  secret_line.reserve(secret_line.size() + 64);
  const auto seed = key.seed();
  std::string b64 = to_base64({reinterpret_cast<const std::byte*>(seed.data()), seed.size()},
                              Base64Variant::kStandard);
  secret_line += b64;
  secret_line += '\n';
  sodium_memzero(b64.data(), b64.size());
  auto r = write_exclusive(key_path, 0600, secret_line);
  sodium_memzero(secret_line.data(), secret_line.size());
  if (!r) return r;
  r = write_exclusive(pub_path, 0644, format_public_key(key.public_key()) + "\n");
  if (!r) {
    ::unlink(key_path.c_str());
    return r;
  }
  return {};
}

}  // namespace gpulease::capability
