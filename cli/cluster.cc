// `corral cluster`: this host's membership of a corral cluster (issue 20, docs/cluster.md): init, join,
// ls, token, set, leave. corrald runs the host's etcd member; the CLI only asks it.
#include <map>

#include "cli/cli.h"

namespace corral::cli {
namespace {

void addAzOption(po::options_description& options, const char* help) {
  options.add_options()("az", po::value<std::string>()->value_name("AZ"), help);
}

std::string hostHealth(const json& host) {
  std::string health = displayText(field(host, "health"));
  if (field(host, "lost_since").is_number_integer())
    health += fmt::format(" (since {})", displayTime(field(host, "lost_since")));
  return health;
}

// "2 up", "1 up, 1 down (h3 is lost)": the host's tunnels by state (docs/api.md "Cluster"); "-" without a
// chassis (no OVN backend).
std::string tunnelSummary(const json& host) {
  if (field(host, "chassis").is_null()) return "-";
  std::map<std::string, int> byState;
  for (const json& tunnel : field(host, "tunnels")) ++byState[displayText(field(tunnel, "state"))];
  if (byState.empty()) return "none";
  std::string text;
  for (const char* state : {"up", "down", "missing", "unknown"}) {
    if (!byState.contains(state)) continue;
    if (!text.empty()) text += ", ";
    text += fmt::format("{} {}", byState[state], state);
  }
  return text;
}

}  // namespace

Command clusterCommand() {
  return group(
      "cluster",
      "several hosts as one corral: each runs corrald with --cluster-address and a member of the cluster's\n"
      "etcd; each host is in an AZ (init, join, ls, token, set, leave)",
      {
          leaf(
              "init",
              "start a cluster of this one host: its etcd member, a join token (printed once; `corral "
              "cluster "
              "token` shows it again) and its host in AZ (default az1)",
              {}, "[--az AZ]",
              [](po::options_description& options) {
                addAzOption(options, "this host's availability zone (default az1)");
              },
              [](const Invocation& invocation) {
                api::InitCluster request;
                if (auto az = invocation.value("az")) request.az = *az;
                return respond(invocation, request, [](const json& answer) {
                  fmt::print("cluster started on host {} (az {}), etcd at {}\n",
                             displayText(field(answer, "host")), displayText(field(answer, "az")),
                             displayText(field(answer, "client_url")));
                  fmt::print("join token: {}\n", displayText(field(answer, "token")));
                  fmt::print("on another host: corral cluster join {} --token {}\n",
                             displayText(field(answer, "address")), displayText(field(answer, "token")));
                });
              }),
          leaf(
              "join",
              "join the cluster whose etcd listens at ADDR: the token is checked by the cluster itself, then "
              "this host's etcd becomes a member and the host is registered in AZ (default az1)",
              {{"ADDR",
                "a member's address: IP, or IP:PORT (default port: corrald's --cluster-client-port)"}},
              "--token TOKEN [--az AZ]",
              [](po::options_description& options) {
                options.add_options()("token", po::value<std::string>()->value_name("TOKEN"),
                                      "the join token (`corral cluster token` on a host of the cluster)");
                addAzOption(options, "this host's availability zone (default az1)");
              },
              [](const Invocation& invocation) {
                api::JoinCluster request;
                request.address = invocation.arguments[0];
                request.token = invocation.requiredValue("token");
                if (auto az = invocation.value("az")) request.az = *az;
                return respond(invocation, request, [](const json& answer) {
                  fmt::print("host {} joined the cluster (az {}), etcd member {}\n",
                             displayText(field(answer, "host")), displayText(field(answer, "az")),
                             displayText(field(answer, "member_id")));
                });
              }),
          leaf("ls",
               "list the cluster's hosts: address, AZ, health (alive, or lost once its alive key expired), "
               "its etcd member, instances and, on OVN, its Geneve tunnels to the other hosts by state "
               "(--json: "
               "each tunnel's remote host, IPs and state); any host answers the same",
               {}, "", nullptr,
               [](const Invocation& invocation) {
                 return respond(invocation, api::ListClusterHosts{}, [](const json& answer) {
                   Table table({"host", "address", "az", "health", "member", "instances", "tunnels"});
                   for (const json& host : field(answer, "hosts")) {
                     std::string name = displayText(field(host, "name"));
                     if (field(host, "local") == true) name += " *";
                     table.add({name, displayText(field(host, "address")), displayText(field(host, "az")),
                                hostHealth(host), displayText(field(host, "member")),
                                displayText(field(host, "instances")), tunnelSummary(host)});
                   }
                   printList(table, "no host: corral cluster init");
                 });
               }),
          leaf("token", "show the cluster's join token again", {}, "", nullptr,
               [](const Invocation& invocation) {
                 return respond(invocation, api::GetClusterToken{}, [](const json& answer) {
                   fmt::print("{}\n", displayText(field(answer, "token")));
                 });
               }),
          leaf(
              "set", "move a host to another availability zone",
              {{"HOST", "the host's name (corral cluster ls)"}}, "--az AZ",
              [](po::options_description& options) {
                addAzOption(options, "the host's new availability zone");
              },
              [](const Invocation& invocation) {
                api::UpdateClusterHost request{invocation.arguments[0], invocation.requiredValue("az")};
                return respond(invocation, request, [](const json& answer) {
                  fmt::print("host {} is in az {}\n", displayText(field(answer, "name")),
                             displayText(field(answer, "az")));
                });
              }),
          leaf("leave",
               "this host leaves the cluster: its keys are deleted, its etcd member removed and stopped, its "
               "data removed, and it forgets its copy of the cluster's VPCs (their OVN rows stay: they are "
               "the cluster's); refused while it has instances or load balancers in them; the last host "
               "leaving ends the cluster",
               {}, "", nullptr,
               [](const Invocation& invocation) {
                 return respond(invocation, api::LeaveCluster{}, [](const json& answer) {
                   fmt::print(
                       "host {} left the cluster{}\n", displayText(field(answer, "host")),
                       field(answer, "cluster_ended") == true ? " (the last host: the cluster ended)" : "");
                 });
               }),
      });
}

}  // namespace corral::cli
