// gpuleased: the node daemon.
#include <asio/signal_set.hpp>

#include <csignal>
#include <iostream>

#include "backend_factory.hpp"
#include "config.hpp"
#include "fleet/registrar.hpp"
#include "gpulease/capability/keys.hpp"
#include "gpulease/wire/host_port.hpp"
#include "log.hpp"
#include "net.hpp"
#include "node.hpp"

using namespace gpulease;
using namespace gpulease::server;

namespace {

// The registrar for --registry: the advertised address is --advertise, else
// the listen address with the port actually bound (a wildcard listen address
// needs --advertise).
Result<std::unique_ptr<Registrar>> start_registrar(Node& node, uint16_t bound_port) {
  const NodeConfig& cfg = node.config();
  RegistrarConfig rc;
  auto eps = etcd::parse_registry_url(cfg.registry);
  if (!eps) return make_error(Status::kInvalidArgument, eps.error().message);
  rc.endpoints = std::move(eps).value();
  rc.fleet = cfg.fleet;
  rc.node_id = cfg.node_id;
  rc.backend = std::string(node.backend_name());
  rc.ttl_s = cfg.registry_ttl_s;
  rc.metrics = &node.metrics();
  if (!cfg.advertise.empty()) {
    rc.address = cfg.advertise;
  } else if (cfg.listen_host == "0.0.0.0" || cfg.listen_host == "::" || cfg.listen_host.empty()) {
    return make_error(Status::kInvalidArgument,
                      "--advertise HOST:PORT is needed with --registry when --listen is a "
                      "wildcard address (" +
                          cfg.listen_host + ")");
  } else {
    rc.address = wire::format_host_port(cfg.listen_host, bound_port);
  }
  auto r = Registrar::create(std::move(rc), [&node] {
    std::vector<DeviceRecord> out;
    for (const auto& [info, room] : node.device_room()) {
      out.push_back(DeviceRecord{info.index, info.name, info.cc_major, info.cc_minor,
                                 info.total_bytes, room});
    }
    return out;
  });
  if (!r) return r;
  (*r)->start();
  return r;
}

}  // namespace

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

  // The fleet directory (--registry): registration runs on its own thread and
  // never holds up serving; an unreachable etcd is retried in the background.
  std::unique_ptr<Registrar> registrar;
  if (!cfg.registry.empty()) {
    auto r = start_registrar(node, server.port());
    if (!r) {
      log_error("cannot register in the fleet directory", {{"error", r.error().message}});
      server.drain_and_stop();
      server.wait();
      return 1;
    }
    registrar = std::move(r).value();
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
    // Leave the directory first, so no new client is sent here (async).
    if (registrar) registrar->deregister();
    server.drain_and_stop();
  };
  signals.async_wait(on_signal);
  server.wait();
  if (registrar) registrar->stop();  // waits (bounded) for the deregistration
  log_info("gpuleased stopped");
  return 0;
}
