// gpuleased: the node daemon.
#include <asio/signal_set.hpp>

#include <csignal>
#include <iostream>

#include "backend_factory.hpp"
#include "config.hpp"
#include "gpulease/capability/keys.hpp"
#include "log.hpp"
#include "net.hpp"
#include "node.hpp"

using namespace gpulease;
using namespace gpulease::server;

int main(int argc, char** argv) {
  NodeConfig cfg;
  bool help = false;
  if (auto r = parse_node_config(argc, argv, cfg, help); !r) {
    std::cerr << "gpuleased: " << r.error().message << "\n";
    return 2;
  }
  if (help) return 0;
  set_log_level(cfg.log_level);

  auto backend = make_backend(cfg);
  if (!backend) {
    log_error("cannot start the device backend",
              {{"backend", cfg.backend}, {"error", backend.error().message}});
    return 1;
  }
  log_info("gpuleased starting",
           {{"backend", std::string((*backend)->name())}, {"node_id", cfg.node_id}});

  Result<capability::SecretKey> key =
      cfg.node_key.empty() ? Result<capability::SecretKey>(capability::SecretKey::generate())
                           : capability::load_secret_key_file(cfg.node_key);
  if (!key) {
    log_error("cannot load the node key", {{"error", key.error().message}});
    return 1;
  }
  if (cfg.node_key.empty()) {
    log_info(
        "no --node-key: CAP_REQUEST tokens are signed with an ephemeral key and die with this "
        "process");
  }
  if (cfg.authority_keys.empty()) {
    log_warn("no --authority-key: only tokens this node issued itself will verify");
  }

  Node node(cfg, std::move(backend).value(), std::move(key).value());
  if (auto r = node.start(); !r) {
    log_error("cannot start the node", {{"error", r.error().message}});
    return 1;
  }
  Server server(node, node.config());
  if (auto r = server.start(); !r) {
    log_error("cannot start the server", {{"error", r.error().message}});
    return 1;
  }

  asio::signal_set signals(server.io(), SIGINT, SIGTERM, SIGHUP);
  std::function<void(const asio::error_code&, int)> on_signal = [&](const asio::error_code& ec,
                                                                    int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      auto r = node.reload_revocations();
      if (r) {
        log_info("revocation list reloaded");
      } else {
        log_warn("revocation list not reloaded; the previous one stays in force",
                 {{"error", r.error().message}});
      }
      signals.async_wait(on_signal);
      return;
    }
    log_info("signal received: draining", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    server.drain_and_stop();
  };
  signals.async_wait(on_signal);
  server.wait();
  log_info("gpuleased stopped");
  return 0;
}
