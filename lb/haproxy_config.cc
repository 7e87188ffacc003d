// Renders a load balancer's HAProxy configuration (lb/haproxy_config.h). Every value put into the text was
// validated by the model (names, patterns and fixed bodies hold no quote, backslash or control character),
// so double quotes are all the quoting it needs.
#include "lb/haproxy_config.h"

#include <fmt/format.h>

#include <iterator>

namespace corral::lb {
namespace {

using Out = std::back_insert_iterator<std::string>;

// An ACL matching a path pattern: a prefix ("/api/*") or the exact path.
std::string pathCondition(const Pattern& path) {
  if (path.isPrefix()) return fmt::format("path -m beg \"{}\"", path.text.substr(0, path.text.size() - 1));
  return fmt::format("path -m str \"{}\"", path.text);
}

// The Host header without its port, compared case-insensitively: exact, or "*.example.com" as a suffix.
std::string hostCondition(const Pattern& host) {
  if (host.isPrefix())
    return fmt::format("req.hdr(host),field(1,:),lower -m end \"{}\"", host.text.substr(1));
  return fmt::format("req.hdr(host),field(1,:),lower -m str \"{}\"", host.text);
}

std::string firewallCondition(const FirewallRule& rule) {
  switch (rule.part) {
    case RequestPart::Path:
      return pathCondition(Pattern{rule.pattern});
    case RequestPart::Method:
      return fmt::format("method \"{}\"", rule.pattern);
    case RequestPart::Header:
      return fmt::format("req.hdr({}) -m sub -i \"{}\"", rule.header, rule.pattern);
    case RequestPart::Body:
      return fmt::format("req.body -m sub -i \"{}\"", rule.pattern);
  }
  return "always_false";
}

std::string actionBackend(const Listener& listener, const ListenerAction& action, int priority) {
  if (action.type == ListenerActionType::Forward) return targetGroupBackendName(action.targetGroup);
  return fixedResponseBackendName(listener, priority);
}

void renderFixedResponse(Out out, const Listener& listener, const ListenerAction& action, int priority) {
  fmt::format_to(out, "\nbackend {}\n    mode http\n", fixedResponseBackendName(listener, priority));
  if (action.body.empty()) {
    fmt::format_to(out, "    http-request return status {}\n", action.status);
  } else {
    fmt::format_to(out, "    http-request return status {} content-type \"{}\" string \"{}\"\n",
                   action.status, action.contentType, action.body);
  }
}

void renderFrontend(Out out, const HaproxyInputs& inputs, const Listener& listener) {
  const bool http = listener.protocol == ListenerProtocol::Http;
  fmt::format_to(out, "\nfrontend {}\n    mode {}\n", frontendName(listener), http ? "http" : "tcp");
  for (const auto& address : inputs.listenAddresses)
    fmt::format_to(out, "    bind {}:{}\n", address, listener.port);
  if (http) fmt::format_to(out, "    option forwardfor\n");
  bool readsBody = false;
  for (const auto& rule : listener.firewall) readsBody = readsBody || rule.part == RequestPart::Body;
  // The body is only there to match once HAProxy waited for it (up to its buffer size).
  if (readsBody) fmt::format_to(out, "    option http-buffer-request\n");
  // The L7 firewall first: each rule denies through its own backend, whose request count is the rule's.
  for (const auto& rule : listener.firewall) {
    fmt::format_to(out, "    acl fw-{} {}\n", rule.id, firewallCondition(rule));
    fmt::format_to(out, "    use_backend {} if fw-{}\n", firewallBackendName(listener, rule), rule.id);
  }
  for (const auto& rule : listener.rules) {
    std::string conditions;
    if (!rule.host.empty()) {
      fmt::format_to(out, "    acl rule-{}-host {}\n", rule.priority, hostCondition(rule.host));
      conditions += fmt::format(" rule-{}-host", rule.priority);
    }
    if (!rule.path.empty()) {
      fmt::format_to(out, "    acl rule-{}-path {}\n", rule.priority, pathCondition(rule.path));
      conditions += fmt::format(" rule-{}-path", rule.priority);
    }
    fmt::format_to(out, "    use_backend {} if{}\n", actionBackend(listener, rule.action, rule.priority),
                   conditions);
  }
  fmt::format_to(out, "    default_backend {}\n", actionBackend(listener, listener.defaultAction, 0));
}

void renderTargetGroup(Out out, const HaproxyInputs& inputs, const TargetGroup& group) {
  const bool http = group.protocol == ListenerProtocol::Http;
  const HealthCheck& check = group.healthCheck;
  fmt::format_to(out, "\nbackend {}\n    mode {}\n    balance roundrobin\n",
                 targetGroupBackendName(group.name), http ? "http" : "tcp");
  if (http) {
    fmt::format_to(out, "    option httpchk GET {}\n    http-check expect status 200-399\n", check.path);
  }
  fmt::format_to(out, "    timeout check {}s\n", check.timeoutSeconds);
  fmt::format_to(out, "    default-server inter {}s rise {} fall {}\n", check.intervalSeconds,
                 check.healthyThreshold, check.unhealthyThreshold);
  for (const auto& target : group.targets) {
    auto address = inputs.targetAddresses.find(target);
    if (address == inputs.targetAddresses.end()) {
      fmt::format_to(out, "    # {}: no address in the VPC (not running)\n", target);
      continue;
    }
    fmt::format_to(out, "    server {} {}:{} check\n", target, address->second, group.port);
  }
}

}  // namespace

std::string frontendName(const Listener& listener) {
  return fmt::format("listener-{}", listener.port);
}

std::string targetGroupBackendName(std::string_view group) {
  return fmt::format("tg-{}", group);
}

std::string firewallBackendName(const Listener& listener, const FirewallRule& rule) {
  return fmt::format("deny-{}-{}", listener.port, rule.id);
}

std::string fixedResponseBackendName(const Listener& listener, int priority) {
  return fmt::format("fixed-{}-{}", listener.port, priority);
}

std::string renderHaproxyConfig(const HaproxyInputs& inputs) {
  const LoadBalancer& balancer = *inputs.balancer;
  std::string text;
  Out out(text);
  fmt::format_to(out, "# corral load balancer \"{}\" (VPC {}), written by corrald: edits are overwritten.\n",
                 balancer.name, balancer.vpc);
  // expose-fd listeners: a reload's new worker takes over the listening sockets from the old one, so no
  // connection attempt is refused while both run. hard-stop-after bounds how long the old worker may
  // finish its requests. The socket's path is relative to HAProxy's working directory (its run
  // directory): an absolute one under a long --lb-dir would pass HAProxy's limit (97 bytes, sun_path less
  // its ".PID.tmp" while binding).
  fmt::format_to(out,
                 "global\n"
                 "    stats socket unix@admin.sock mode 600 level admin expose-fd listeners\n"
                 "    stats timeout 30s\n"
                 "    hard-stop-after 30s\n"
                 "\ndefaults\n"
                 "    timeout connect 5s\n"
                 "    timeout client 30s\n"
                 "    timeout server 30s\n"
                 "    timeout http-request 10s\n"
                 "    retries 2\n"
                 "    option redispatch\n");
  for (const auto& listener : balancer.listeners) renderFrontend(out, inputs, listener);
  for (const auto& listener : balancer.listeners) {
    for (const auto& rule : listener.firewall) {
      fmt::format_to(out, "\nbackend {}\n    mode http\n    http-request deny deny_status 403\n",
                     firewallBackendName(listener, rule));
    }
    for (const auto& rule : listener.rules) {
      if (rule.action.type == ListenerActionType::FixedResponse)
        renderFixedResponse(out, listener, rule.action, rule.priority);
    }
    if (listener.defaultAction.type == ListenerActionType::FixedResponse)
      renderFixedResponse(out, listener, listener.defaultAction, 0);
  }
  for (const auto& [name, group] : inputs.groups) renderTargetGroup(out, inputs, *group);
  return text;
}

}  // namespace corral::lb
