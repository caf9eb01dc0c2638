// Helpers that answer a request through its ReplyFn. Internal to server/.
#pragma once

#include <string_view>

#include "gpulease/wire/messages.hpp"
#include "gpulease/wire/utf8.hpp"
#include "node.hpp"

namespace gpulease::server {

// The message of an error reply: any text (a JIT log quoting the tenant's
// bytes included) made valid UTF-8 and cut on a code point boundary to the
// protocol's max_message_bytes, so every client's decoder accepts it.
[[nodiscard]] inline wire::Bytes message_bytes(std::string_view s) {
  return wire::to_bytes(wire::sanitize_message(s, wire::Limits{}.max_message_bytes));
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
