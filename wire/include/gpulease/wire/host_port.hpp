// HOST:PORT, the one parser for every address a user types (the client's
// --node, the node's --listen, --metrics and their config-file keys).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "gpulease/wire/result.hpp"

namespace gpulease::wire {

struct HostPort {
  std::string host;  // without brackets: "::1", "127.0.0.1", "node.example"
  uint16_t port = 0;
};

// "HOST:PORT" or "[V6ADDR]:PORT": a non-empty host (no ':' unless bracketed),
// a port of 1..5 decimal digits, 1..65535 (0 too when `allow_port_zero`: "any
// free port" for a listener). INVALID_ARGUMENT naming the text otherwise.
[[nodiscard]] Result<HostPort> parse_host_port(std::string_view text, bool allow_port_zero = false);

// The inverse: brackets around a host holding ':'.
[[nodiscard]] std::string format_host_port(std::string_view host, uint16_t port);

}  // namespace gpulease::wire
