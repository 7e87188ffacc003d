// `corral flow-logs VPC|SUBNET|INSTANCE`: which packets the VPC's guards accepted and rejected, one record
// per flow and capture window in AWS's default flow-log format, with the guard that decided at the end (an
// accepted flow: the rules that allowed it).
// corrald reads the kernel and keeps the records (daemon/flow_logs.h); the CLI prints them.
#include <iostream>

#include "cli/cli.h"
#include "core/text.h"

namespace corral::cli {
namespace {

constexpr std::string_view kHeader =
    "version interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status "
    "guard";

void printRecord(const json& record) {
  fmt::print("{}\n", displayText(field(record, "line")));
}

int flowLogs(const Invocation& invocation) {
  api::GetFlowLogs request;
  request.name = invocation.arguments[0];
  if (auto action = invocation.value("action")) request.action = *action;
  if (auto limit = invocation.value("limit")) request.limit = parseCountFlag("--limit", *limit);
  request.follow = invocation.flag("follow");
  if (!request.follow) {
    return respond(invocation, request, [&](const json& answer) {
      const json& records = field(answer, "records");
      if (!records.is_array() || records.empty()) {
        fmt::print("no flow records yet (records appear once a capture window of {} s closes)\n",
                   displayText(field(answer, "window_seconds")));
        return;
      }
      fmt::print("{}\n", kHeader);
      for (const json& record : records) printRecord(record);
    });
  }
  if (!invocation.global.json) fmt::print("{}\n", kHeader);
  std::fflush(stdout);
  api::Client client(invocation.global.socketPath);
  Status followed = client.follow(request, [&](const json& record) {
    if (invocation.global.json) {
      std::cout << record.dump() << "\n";
    } else {
      printRecord(record);
    }
    std::cout.flush();
    std::fflush(stdout);
    return true;
  });
  if (!followed) {
    printError(followed.error());
    return 1;
  }
  return 0;
}

}  // namespace

Command flowLogsCommand() {
  return leaf(
      "flow-logs",
      "which packets the guards of a VPC, subnet or instance accepted and rejected: one record per flow in "
      "AWS's flow-log format, with the guard that decided (security group, network ACL rule, no route, the "
      "gateway refusing unsolicited inbound; for an accepted flow the security group and network ACL rules "
      "that allowed it); SKIPDATA where the capture lost records",
      {{"NAME",
        "a VPC, else a subnet, else an instance (or a load balancer's NIC, LB.SUBNET.lb) of that name"}},
      "[--action accept|reject] [--follow] [--limit N]",
      [](po::options_description& options) {
        options.add_options()  //
            ("action", po::value<std::string>()->value_name("ACTION"),
             "only accepted or only rejected flows")                               //
            ("follow", "keep printing records as they are stored (Ctrl-C stops)")  //
            ("limit", po::value<std::string>()->value_name("N"),
             "at most the newest N records (1-10000, default 1000)");
      },
      flowLogs);
}

}  // namespace corral::cli
