#include "gpulease/wire/host_port.hpp"

namespace gpulease::wire {

Result<HostPort> parse_host_port(std::string_view text, bool allow_port_zero) {
  auto bad = [&](std::string_view what) {
    return make_error(Status::kInvalidArgument,
                      std::string(what) + " in '" + std::string(text) + "' (expected HOST:PORT)");
  };
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad("unclosed [ADDR] or no port after it");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("no port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("an IPv6 address needs [brackets]");
  }
  if (host.empty()) return bad("no host");
  if (port.empty() || port.size() > 5) return bad("bad port");
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return bad("bad port");
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  if (p > 65535 || (p == 0 && !allow_port_zero)) return bad("port out of range");
  return HostPort{std::string(host), static_cast<uint16_t>(p)};
}

std::string format_host_port(std::string_view host, uint16_t port) {
  std::string out;
  if (host.find(':') != std::string_view::npos) {
    out = "[" + std::string(host) + "]";
  } else {
    out = std::string(host);
  }
  return out + ":" + std::to_string(port);
}

}  // namespace gpulease::wire
