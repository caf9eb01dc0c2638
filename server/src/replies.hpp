// Helpers that answer a request through its ReplyFn. Internal to server/.
#pragma once

#include <string_view>

#include "gpulease/wire/messages.hpp"
#include "node.hpp"

namespace gpulease::server {

inline constexpr size_t kMaxReplyMessageBytes = 1024;  // Limits::max_message_bytes

// The UTF-8 message of an error reply, cut to the protocol's limit.
[[nodiscard]] inline wire::Bytes message_bytes(std::string_view s) {
  return wire::to_bytes(s.substr(0, kMaxReplyMessageBytes));
}
inline void reply_error(const ReplyFn& reply, wire::Status s, std::string_view msg) {
  reply(s, message_bytes(msg));
}
inline void reply_error(const ReplyFn& reply, const Error& e) {
  reply(e.status, message_bytes(e.message));
}
template <typename M>
void reply_ok(const ReplyFn& reply, const M& m) {
  reply(wire::Status::kOk, wire::encode_payload(m));
}

}  // namespace gpulease::server
