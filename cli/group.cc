// `corral group`: groups of cattle (auto scaling). corrald keeps a group's desired number of healthy
// members, replacing the ones that die and adding or removing members as it is scaled.
#include <sstream>

#include "cli/cli.h"

namespace corral::cli {
namespace {

std::vector<std::string> splitList(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) items.push_back(item);
  return items;
}

std::string membersText(const json& group) {
  std::string text;
  for (const json& member : field(group, "members")) {
    if (!text.empty()) text += ", ";
    text += fmt::format("{} ({}, {}", displayText(field(member, "name")), displayText(field(member, "state")),
                        displayText(field(member, "subnet")));
    // On a cluster: another host's member names its host.
    text += member.contains("host") ? fmt::format(", on host {})", displayText(field(member, "host"))) : ")";
  }
  return text.empty() ? "-" : text;
}

// A policy's target as typed: 120, not 120.0.
std::string targetText(const json& value) {
  return value.is_number() ? fmt::format("{:g}", value.get<double>()) : displayText(value);
}

// "average CPU 50%", "100 requests per target per minute", or "-".
std::string policyText(const json& policy) {
  if (policy.is_null()) return "-";
  if (policy.contains("requests_per_target"))
    return fmt::format("{} requests per target per minute", targetText(field(policy, "requests_per_target")));
  return fmt::format("average CPU {}%", targetText(field(policy, "cpu_target")));
}

void printGroup(const json& group) {
  const json& policy = field(group, "policy");
  const json& requests = field(group, "requests_per_target");
  std::vector<std::pair<std::string, std::string>> fields = {
      {"name", displayText(field(group, "name"))},
      {"image", displayText(field(field(group, "template"), "image"))},
      {"kind", displayText(field(field(group, "template"), "kind"))},
      {"subnets", displayText(field(group, "subnets"))},
      {"min / desired / max",
       fmt::format("{} / {} / {}", displayText(field(group, "min")), displayText(field(group, "desired")),
                   displayText(field(group, "max")))},
      {"healthy", displayText(field(group, "healthy"))},
      {"health", displayText(field(group, "health"))},
      {"target group", displayText(field(group, "target_group"))},
      {"policy", policyText(policy)},
      {"cpu (last period)", field(group, "cpu_percent").is_null()
                                ? "-"
                                : fmt::format("{:.1f}%", field(group, "cpu_percent").get<double>())},
      {"requests/target/min (last period)",
       requests.is_number() ? fmt::format("{:.1f}", requests.get<double>()) : "-"},
      {"members", membersText(group)},
      {"created", displayTime(field(group, "created_at"))},
  };
  // On a cluster: the host that keeps the group (its controller launches and replaces the members).
  if (group.contains("host")) fields.insert(fields.begin() + 1, {"host", displayText(field(group, "host"))});
  printFields(fields);
}

std::string eventTime(const json& atMs) {
  if (!atMs.is_number_integer()) return "-";
  const int64_t ms = atMs.get<int64_t>();
  return fmt::format("{}.{:03d}", displayTime(json(ms / 1000)), static_cast<int>(ms % 1000));
}

int createGroup(const Invocation& invocation) {
  schema::GroupSpec spec;
  spec.name = invocation.arguments[0];
  spec.launch = specFromFlags(invocation);
  spec.launch.name.clear();
  spec.subnets = splitList(invocation.requiredValue("subnets"));
  spec.min = parseIntegerFlag("--min", invocation.requiredValue("min"));
  spec.max = parseIntegerFlag("--max", invocation.requiredValue("max"));
  if (auto desired = invocation.value("desired")) spec.desired = parseIntegerFlag("--desired", *desired);
  if (auto health = invocation.value("health")) {
    auto parsed = schema::parseGroupHealth(*health, "--health");
    if (!parsed) throw UsageError(parsed.error().message());
    spec.health = *parsed;
  }
  spec.targetGroup = invocation.value("target-group").value_or("");
  return respond(invocation, api::CreateGroup{spec}, [](const json& group) {
    fmt::print("created group {} (its members start in the background: corral group show {})\n",
               displayText(field(group, "name")), displayText(field(group, "name")));
    printGroup(group);
  });
}

}  // namespace

Command groupCommand() {
  Command create = leaf(
      "create",
      "create a group of cattle: corrald keeps DESIRED healthy members (NAME-1, NAME-2, ...; a number is\n"
      "never reused), spread over the subnets (the one with the fewest members first, like AZs), and\n"
      "replaces a member that exits, is killed or fails to start. The members are ordinary instances made\n"
      "from the template flags (those of corral run); `corral ps` shows them. On a cluster the host the\n"
      "group is created on keeps it; each member runs on a host of its subnet's availability zone, and a\n"
      "lost host's members are replaced in a zone that has a live host.",
      {{"NAME", "the group's name: 1-55 of a-z, 0-9 and '-'"}},
      "--subnets S1[,S2...] --min N --max M [--desired D] [--target-group TG [--health instance|elb]] "
      "[--container | --vm] "
      "[--image NAME] [--memory SIZE] [--cpus N] [--env K=V]... [--sg GROUP]... [...corral run's flags] "
      "[-- CMD [ARGS...]]",
      [](po::options_description& options) {
        options.add_options()  //
            ("subnets", po::value<std::string>()->value_name("S1,S2"),
             "the subnets (floors, \"AZs\") the members are spread over, comma-separated, all in one VPC")  //
            ("min", po::value<std::string>()->value_name("N"), "the fewest members (0..max)")               //
            ("max", po::value<std::string>()->value_name("M"), "the most members (1..100)")                 //
            ("desired", po::value<std::string>()->value_name("D"), "members to keep now (default: min)")    //
            ("health", po::value<std::string>()->value_name("instance|elb"),
             "how a member's health is judged: instance (it runs; the default) or elb (also: the target "
             "group's health check has not marked it DOWN; needs --target-group)")  //
            ("target-group", po::value<std::string>()->value_name("TG"),
             "register each running member in this target group (in the subnets' VPC) and deregister it "
             "before it is removed, so the load balancers forwarding to it send it requests");
        addInstanceTemplateOptions(options);
      },
      createGroup);
  create.takesCommand = true;
  create.commandOptional = true;
  return group(
      "group",
      "groups of cattle (auto scaling): instances managed in bulk, added when needed and removed when not\n"
      "(elasticity), healed without a person nursing each one",
      {
          create,
          leaf("ls", "list the groups: desired, healthy and bounds", {}, "", nullptr,
               [](const Invocation& invocation) {
                 return respond(invocation, api::ListGroups{}, [](const json& answer) {
                   // On a cluster each group names the host that keeps it (a lost host's: its reason).
                   bool clustered = false;
                   for (const json& group : field(answer, "groups")) clustered = clustered || group.contains("host");
                   std::vector<std::string> columns{"name",    "image",  "min",    "desired",
                                                    "max",     "healthy", "policy", "subnets"};
                   if (clustered) columns.insert(columns.begin() + 1, "host");
                   Table table(columns);
                   for (const json& group : field(answer, "groups")) {
                     const json& policy = field(group, "policy");
                     std::vector<std::string> row{displayText(field(group, "name")),
                                displayText(field(field(group, "template"), "image")),
                                displayText(field(group, "min")), displayText(field(group, "desired")),
                                displayText(field(group, "max")), displayText(field(group, "healthy")),
                                policy.is_null() ? "-"
                                : policy.contains("requests_per_target")
                                    ? fmt::format("{} req/target/min",
                                                  targetText(field(policy, "requests_per_target")))
                                    : fmt::format("cpu {}%", targetText(field(policy, "cpu_target"))),
                                displayText(field(group, "subnets"))};
                     if (clustered)
                       row.insert(row.begin() + 1, group.contains("lost_reason")
                                                       ? fmt::format("{} (lost: {})", displayText(field(group, "host")),
                                                                     displayText(field(group, "lost_reason")))
                                                       : displayText(field(group, "host")));
                     table.add(std::move(row));
                   }
                   printList(
                       table,
                       "create one with: corral group create web --subnets a,b --min 2 --max 4 -- sleep 1d");
                 });
               }),
          leaf("show", "show one group: its bounds, policy and members", {{"NAME", "the group"}}, "", nullptr,
               [](const Invocation& invocation) {
                 return respond(invocation, api::GetGroup{invocation.arguments[0]}, printGroup);
               }),
          leaf(
              "scale", "set how many members the group keeps (within min and max)", {{"NAME", "the group"}},
              "--desired K",
              [](po::options_description& options) {
                options.add_options()("desired", po::value<std::string>()->value_name("K"),
                                      "members to keep; scaling in removes the newest first");
              },
              [](const Invocation& invocation) {
                const int64_t desired = parseIntegerFlag("--desired", invocation.requiredValue("desired"));
                return respond(invocation, api::ScaleGroup{invocation.arguments[0], desired},
                               [](const json& group) {
                                 fmt::print("group {}: desired {}\n", displayText(field(group, "name")),
                                            displayText(field(group, "desired")));
                               });
              }),
          leaf(
              "policy",
              "target tracking, one policy at a time: keep the members' average CPU near PERCENT (of\n"
              "one CPU each; containers only, a VM's CPU is not sampled yet), or keep the requests per\n"
              "target near N per minute (the requests the load balancers forwarded to the group's target\n"
              "group over the period, divided by its healthy targets, like AWS's\n"
              "ALBRequestCountPerTarget; needs --target-group). Sampled every period (10 s, corrald\n"
              "--group-policy-period): out after 2 periods above, in after 3 below half, within min and\n"
              "max, 3 periods apart at least.",
              {{"NAME", "the group"}}, "--cpu-target PERCENT | --requests-per-target N | --none",
              [](po::options_description& options) {
                options.add_options()("cpu-target", po::value<std::string>()->value_name("PERCENT"),
                                      "the average CPU to keep, 1..1000")  //
                    ("requests-per-target", po::value<std::string>()->value_name("N"),
                     "the requests per healthy target per minute to keep, 1..1000000")  //
                    ("none", "remove the policy (desired stays where it is)");
              },
              [](const Invocation& invocation) {
                auto chosen = oneOf(invocation, {"cpu-target", "requests-per-target", "none"}, true);
                std::optional<schema::ScalingPolicy> policy;
                if (*chosen == "cpu-target")
                  policy = schema::ScalingPolicy{
                      static_cast<double>(parseIntegerFlag("--cpu-target", *invocation.value("cpu-target"))),
                      schema::PolicyMetric::cpu};
                if (*chosen == "requests-per-target")
                  policy = schema::ScalingPolicy{
                      static_cast<double>(parseIntegerFlag("--requests-per-target",
                                                           *invocation.value("requests-per-target"))),
                      schema::PolicyMetric::requestsPerTarget};
                return respond(invocation, api::SetGroupPolicy{invocation.arguments[0], policy}, printGroup);
              }),
          leaf("events", "what the group did and why: launched, terminated, scaled, launch-failed",
               {{"NAME", "the group"}}, "", nullptr,
               [](const Invocation& invocation) {
                 return respond(
                     invocation, api::GetGroupEvents{invocation.arguments[0]}, [](const json& answer) {
                       Table table({"time", "event", "instance", "why"});
                       for (const json& event : field(answer, "events"))
                         table.add({eventTime(field(event, "at_ms")), displayText(field(event, "kind")),
                                    displayText(field(event, "instance")),
                                    displayText(field(event, "message"))});
                       printList(table, "no events yet");
                     });
               }),
          leaf(
              "rm", "remove a group (refused while it has members, unless --force removes them too)",
              {{"NAME", "the group"}}, "[--force]",
              [](po::options_description& options) {
                options.add_options()("force,f", "remove its members as well");
              },
              [](const Invocation& invocation) {
                // Removing many members takes a while (each one's kill and cleanup).
                api::Client patient(invocation.global.socketPath, std::chrono::seconds(300));
                Result<json> answer =
                    patient.call(api::RemoveGroup{invocation.arguments[0], invocation.flag("force")});
                if (!answer) {
                  printError(answer.error());
                  return 1;
                }
                if (invocation.global.json) {
                  fmt::print("{}\n", answer->dump(2));
                  return 0;
                }
                const json& deleted = field(*answer, "deleted");
                fmt::print("removed group {} ({} member(s) removed)\n", displayText(field(deleted, "name")),
                           field(deleted, "members_removed").size());
                return 0;
              }),
      });
}

}  // namespace corral::cli
