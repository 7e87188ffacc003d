// Rendering, diffing and replaying nftables tables held as structured data (net/firewall.h).
#include "net/firewall.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace corral::net {
namespace {

bool isNote(const std::string& rule) {
  return rule.starts_with("#");
}

// "10.0.1.5 comment \"web-1\" : jump sg-egress-web", as inside `elements = { ... }`.
std::string elementText(const std::string& key, const NftElement& element) {
  std::string text = key;
  if (!element.comment.empty()) text += fmt::format(" comment \"{}\"", element.comment);
  if (!element.value.empty()) text += fmt::format(" : {}", element.value);
  return text;
}

std::string typeText(const NftSet& set) {
  return set.isMap() ? fmt::format("{} : {}", set.keyType, set.valueType) : set.keyType;
}

// The chains, sets and counters a rule or a map value names: "jump X", "goto X", "@X", counter name "X".
struct References {
  std::vector<std::string> chains;
  std::vector<std::string> sets;
  std::vector<std::string> counters;
};

References referencesOf(std::string_view text) {
  References refs;
  auto word = [&](size_t from) {
    size_t end = text.find_first_of(" ,}", from);
    return std::string(
        text.substr(from, end == std::string_view::npos ? std::string_view::npos : end - from));
  };
  for (std::string_view verb : {"jump ", "goto "}) {
    for (size_t at = text.find(verb); at != std::string_view::npos; at = text.find(verb, at + 1)) {
      refs.chains.push_back(word(at + verb.size()));
    }
  }
  for (size_t at = text.find('@'); at != std::string_view::npos; at = text.find('@', at + 1)) {
    refs.sets.push_back(word(at + 1));
  }
  constexpr std::string_view counter = "counter name \"";
  for (size_t at = text.find(counter); at != std::string_view::npos; at = text.find(counter, at + 1)) {
    size_t from = at + counter.size();
    refs.counters.emplace_back(text.substr(from, text.find('"', from) - from));
  }
  return refs;
}

template <class Pick>
bool referencedAnywhere(const NftTable& table, const std::string& name, Pick pick) {
  for (const auto& [chainName, chain] : table.chains) {
    for (const std::string& rule : chain.rules) {
      if (isNote(rule)) continue;
      const References refs = referencesOf(rule);
      const std::vector<std::string>& names = pick(refs);
      if (std::find(names.begin(), names.end(), name) != names.end()) return true;
    }
  }
  for (const auto& [setName, set] : table.sets) {
    for (const auto& [key, element] : set.elements) {
      const References refs = referencesOf(element.value);
      const std::vector<std::string>& names = pick(refs);
      if (std::find(names.begin(), names.end(), name) != names.end()) return true;
    }
  }
  return false;
}

Status checkReferencesExist(const NftTable& table, std::string_view text, std::string_view what) {
  References refs = referencesOf(text);
  for (const std::string& chain : refs.chains) {
    if (!table.chains.contains(chain)) return fail(notFound("{}: chain {} does not exist", what, chain));
  }
  for (const std::string& set : refs.sets) {
    if (!table.sets.contains(set)) return fail(notFound("{}: set {} does not exist", what, set));
  }
  for (const std::string& counter : refs.counters) {
    if (!table.counters.contains(counter))
      return fail(notFound("{}: counter {} does not exist", what, counter));
  }
  return {};
}

}  // namespace

std::string renderTable(const NftTable& table) {
  std::string out;
  if (!table.header.empty()) out += fmt::format("# {}\n", table.header);
  out += fmt::format("table {} {} {{\n", table.family, table.name);
  for (const std::string& counter : table.counters) out += fmt::format("  counter {} {{ }}\n", counter);
  for (const auto& [name, set] : table.sets) {
    out += fmt::format("  {} {} {{\n", set.isMap() ? "map" : "set", name);
    out += fmt::format("    type {}\n", typeText(set));
    if (set.counter) out += "    counter\n";
    if (!set.elements.empty()) {
      out += "    elements = {\n";
      size_t left = set.elements.size();
      for (const auto& [key, element] : set.elements) {
        out += fmt::format("      {}{}\n", elementText(key, element), --left > 0 ? "," : "");
      }
      out += "    }\n";
    }
    out += "  }\n";
  }
  // Regular chains before the base chains that reach them, each group by name.
  for (bool base : {false, true}) {
    for (const auto& [name, chain] : table.chains) {
      if (chain.hook.empty() == base) continue;
      out += fmt::format("  chain {} {{\n", name);
      if (base) out += fmt::format("    {}\n", chain.hook);
      for (const std::string& rule : chain.rules) out += fmt::format("    {}\n", rule);
      out += "  }\n";
    }
  }
  out += "}\n";
  return out;
}

std::string NftDelta::text() const {
  const std::string where = fmt::format("{} {}", family, table);
  std::string out;
  for (size_t i = 0; i < commands.size(); ++i) {
    const NftCommand& command = commands[i];
    switch (command.kind) {
      case NftCommand::Kind::AddCounter:
        out += fmt::format("add counter {} {}\n", where, command.name);
        break;
      case NftCommand::Kind::AddSet:
        out += fmt::format("add {} {} {} {{ type {};{} }}\n", command.set.isMap() ? "map" : "set", where,
                           command.name, typeText(command.set), command.set.counter ? " counter;" : "");
        break;
      case NftCommand::Kind::AddChain:
        if (command.text.empty()) {
          out += fmt::format("add chain {} {}\n", where, command.name);
        } else {
          out += fmt::format("add chain {} {} {{ {} }}\n", where, command.name, command.text);
        }
        break;
      case NftCommand::Kind::FlushChain:
        out += fmt::format("flush chain {} {}\n", where, command.name);
        break;
      case NftCommand::Kind::AddRule:
        if (isNote(command.text)) {
          out += command.text + "\n";  // a comment line: nft reads past it
        } else {
          out += fmt::format("add rule {} {} {}\n", where, command.name, command.text);
        }
        break;
      case NftCommand::Kind::DeleteElement:
      case NftCommand::Kind::AddElement: {
        // Consecutive element commands of one kind on one set go as one command.
        const bool add = command.kind == NftCommand::Kind::AddElement;
        std::string elements = add ? elementText(command.key, command.element) : command.key;
        while (i + 1 < commands.size() && commands[i + 1].kind == command.kind &&
               commands[i + 1].name == command.name) {
          ++i;
          elements += ", ";
          elements += add ? elementText(commands[i].key, commands[i].element) : commands[i].key;
        }
        out +=
            fmt::format("{} element {} {} {{ {} }}\n", add ? "add" : "delete", where, command.name, elements);
        break;
      }
      case NftCommand::Kind::DeleteChain:
        out += fmt::format("delete chain {} {}\n", where, command.name);
        break;
      case NftCommand::Kind::DeleteSet:
        out += fmt::format("delete {} {} {}\n", command.set.isMap() ? "map" : "set", where, command.name);
        break;
      case NftCommand::Kind::DeleteCounter:
        out += fmt::format("delete counter {} {}\n", where, command.name);
        break;
    }
  }
  return out;
}

std::optional<NftDelta> diffTables(const NftTable& before, const NftTable& after) {
  if (before.family != after.family || before.name != after.name) return std::nullopt;
  for (const auto& [name, set] : after.sets) {
    auto old = before.sets.find(name);
    if (old != before.sets.end() &&
        (old->second.keyType != set.keyType || old->second.valueType != set.valueType ||
         old->second.counter != set.counter))
      return std::nullopt;
  }
  for (const auto& [name, chain] : after.chains) {
    auto old = before.chains.find(name);
    if (old != before.chains.end() && old->second.hook != chain.hook) return std::nullopt;
  }

  NftDelta delta{.family = after.family, .table = after.name, .commands = {}};
  auto add = [&](NftCommand::Kind kind, const std::string& name) -> NftCommand& {
    delta.commands.push_back(
        NftCommand{.kind = kind, .name = name, .text = {}, .key = {}, .element = {}, .set = {}});
    return delta.commands.back();
  };
  for (const std::string& counter : after.counters) {
    if (!before.counters.contains(counter)) add(NftCommand::Kind::AddCounter, counter);
  }
  for (const auto& [name, set] : after.sets) {
    if (before.sets.contains(name)) continue;
    NftCommand& command = add(NftCommand::Kind::AddSet, name);
    command.set.keyType = set.keyType;
    command.set.valueType = set.valueType;
    command.set.counter = set.counter;
  }
  for (bool base : {false, true}) {
    for (const auto& [name, chain] : after.chains) {
      if (chain.hook.empty() == base || before.chains.contains(name)) continue;
      add(NftCommand::Kind::AddChain, name).text = chain.hook;
    }
  }
  for (const auto& [name, chain] : after.chains) {
    auto old = before.chains.find(name);
    if (old != before.chains.end()) {
      if (old->second.rules == chain.rules) continue;
      add(NftCommand::Kind::FlushChain, name);
    }
    for (const std::string& rule : chain.rules) add(NftCommand::Kind::AddRule, name).text = rule;
  }
  for (const auto& [name, set] : before.sets) {
    auto now = after.sets.find(name);
    if (now == after.sets.end()) continue;  // goes whole, below
    for (const auto& [key, element] : set.elements) {
      auto kept = now->second.elements.find(key);
      if (kept != now->second.elements.end() && kept->second == element) continue;
      NftCommand& command = add(NftCommand::Kind::DeleteElement, name);
      command.key = key;
      command.set.valueType = set.valueType;
    }
  }
  for (const auto& [name, set] : after.sets) {
    auto old = before.sets.find(name);
    for (const auto& [key, element] : set.elements) {
      if (old != before.sets.end()) {
        auto had = old->second.elements.find(key);
        if (had != old->second.elements.end() && had->second == element) continue;
      }
      NftCommand& command = add(NftCommand::Kind::AddElement, name);
      command.key = key;
      command.element = element;
      command.set.valueType = set.valueType;
    }
  }
  // What goes: chains emptied first (so no rule of theirs holds a set, counter or other chain), then the
  // sets and maps (whose elements may jump to those chains), then the chains, then the counters.
  for (const auto& [name, chain] : before.chains) {
    if (!after.chains.contains(name)) add(NftCommand::Kind::FlushChain, name);
  }
  for (const auto& [name, set] : before.sets) {
    if (after.sets.contains(name)) continue;
    add(NftCommand::Kind::DeleteSet, name).set.valueType = set.valueType;
  }
  for (const auto& [name, chain] : before.chains) {
    if (!after.chains.contains(name)) add(NftCommand::Kind::DeleteChain, name);
  }
  for (const std::string& counter : before.counters) {
    if (!after.counters.contains(counter)) add(NftCommand::Kind::DeleteCounter, counter);
  }
  return delta;
}

namespace {

// The chains `part`'s elements jump to.
std::set<std::string> elementTargets(const NftTable& part) {
  std::set<std::string> targets;
  for (const auto& [name, set] : part.sets) {
    for (const auto& [key, element] : set.elements) {
      for (std::string& chain : referencesOf(element.value).chains) targets.insert(std::move(chain));
    }
  }
  return targets;
}

bool sameDeclaration(const NftSet& a, const NftSet& b) {
  return a.keyType == b.keyType && a.valueType == b.valueType && a.counter == b.counter;
}

NftCommand& addCommand(NftDelta& delta, NftCommand::Kind kind, const std::string& name) {
  delta.commands.push_back(
      NftCommand{.kind = kind, .name = name, .text = {}, .key = {}, .element = {}, .set = {}});
  return delta.commands.back();
}

}  // namespace

std::optional<NftDelta> addPartDelta(const NftTable& table, const NftTable& part) {
  if (table.family != part.family || table.name != part.name) return std::nullopt;
  const std::set<std::string> targets = elementTargets(part);
  NftDelta delta{.family = table.family, .table = table.name, .commands = {}};
  for (const std::string& counter : part.counters) {
    if (table.counters.contains(counter)) return std::nullopt;
    addCommand(delta, NftCommand::Kind::AddCounter, counter);
  }
  std::vector<const std::pair<const std::string, NftChain>*> newChains;
  for (const auto& entry : part.chains) {
    const auto& [name, chain] = entry;
    auto held = table.chains.find(name);
    if (held != table.chains.end()) {
      if (held->second != chain) return std::nullopt;
      continue;
    }
    if (!chain.hook.empty() || !targets.contains(name)) return std::nullopt;
    newChains.push_back(&entry);
  }
  for (const auto* entry : newChains) addCommand(delta, NftCommand::Kind::AddChain, entry->first);
  for (const auto* entry : newChains) {
    for (const std::string& rule : entry->second.rules)
      addCommand(delta, NftCommand::Kind::AddRule, entry->first).text = rule;
  }
  for (const auto& [name, set] : part.sets) {
    auto held = table.sets.find(name);
    if (held == table.sets.end() || !sameDeclaration(held->second, set)) return std::nullopt;
    for (const auto& [key, element] : set.elements) {
      if (held->second.elements.contains(key)) return std::nullopt;
      NftCommand& command = addCommand(delta, NftCommand::Kind::AddElement, name);
      command.key = key;
      command.element = element;
      command.set.valueType = set.valueType;
    }
  }
  return delta;
}

std::optional<NftDelta> removePartDelta(const NftTable& table, const NftTable& part) {
  if (table.family != part.family || table.name != part.name) return std::nullopt;
  NftDelta delta{.family = table.family, .table = table.name, .commands = {}};
  for (const auto& [name, set] : part.sets) {
    auto held = table.sets.find(name);
    if (held == table.sets.end() || !sameDeclaration(held->second, set)) return std::nullopt;
    for (const auto& [key, element] : set.elements) {
      auto kept = held->second.elements.find(key);
      if (kept == held->second.elements.end() || kept->second != element) return std::nullopt;
      NftCommand& command = addCommand(delta, NftCommand::Kind::DeleteElement, name);
      command.key = key;
      command.set.valueType = set.valueType;
    }
  }
  // A chain the part's elements jumped to goes when nothing left in the table jumps to it: neither a
  // rule nor an element of another NIC (the maps' values are scanned, the keys being the part's are not).
  std::set<std::string> going = elementTargets(part);
  for (const auto& [name, chain] : part.chains) {
    auto held = table.chains.find(name);
    if (held == table.chains.end() || held->second != chain) return std::nullopt;
    // A note is what a chain says about a NIC (vpcFirewall's unused public address or published port): it
    // would have to go with the NIC, which only a whole plan knows.
    if (std::any_of(chain.rules.begin(), chain.rules.end(), isNote)) return std::nullopt;
  }
  for (auto it = going.begin(); it != going.end();) {
    it = part.chains.contains(*it) ? std::next(it) : going.erase(it);
  }
  for (const auto& [name, set] : table.sets) {
    if (going.empty()) break;
    if (set.valueType != "verdict") continue;
    auto removed = part.sets.find(name);
    for (const auto& [key, element] : set.elements) {
      // Usually the first other NIC of the same groups keeps the chain: no pass over all of them.
      if (going.empty()) break;
      if (removed != part.sets.end() && removed->second.elements.contains(key)) continue;
      for (const std::string& chain : referencesOf(element.value).chains) going.erase(chain);
    }
  }
  for (const auto& [name, chain] : table.chains) {
    for (const std::string& rule : chain.rules) {
      if (going.empty()) break;
      if (isNote(rule) || going.contains(name)) continue;
      for (const std::string& target : referencesOf(rule).chains) going.erase(target);
    }
  }
  for (const std::string& name : going) addCommand(delta, NftCommand::Kind::FlushChain, name);
  for (const std::string& name : going) addCommand(delta, NftCommand::Kind::DeleteChain, name);
  for (const std::string& counter : part.counters) {
    if (!table.counters.contains(counter)) return std::nullopt;
    addCommand(delta, NftCommand::Kind::DeleteCounter, counter);
  }
  return delta;
}

Status applyDelta(NftTable& table, const NftDelta& delta) {
  if (delta.family != table.family || delta.table != table.name) {
    return fail(invalidField("table", "delta for {} {} applied to {} {}", delta.family, delta.table,
                             table.family, table.name));
  }
  for (const NftCommand& command : delta.commands) {
    const std::string& name = command.name;
    switch (command.kind) {
      case NftCommand::Kind::AddCounter:
        if (!table.counters.insert(name).second) return fail(conflict("add counter {}: exists", name));
        break;
      case NftCommand::Kind::AddSet: {
        NftSet set{.keyType = command.set.keyType,
                   .valueType = command.set.valueType,
                   .counter = command.set.counter,
                   .elements = {}};
        if (!table.sets.emplace(name, std::move(set)).second)
          return fail(conflict("add set {}: exists", name));
        break;
      }
      case NftCommand::Kind::AddChain:
        if (!table.chains.emplace(name, NftChain{.hook = command.text, .rules = {}}).second)
          return fail(conflict("add chain {}: exists", name));
        break;
      case NftCommand::Kind::FlushChain: {
        auto chain = table.chains.find(name);
        if (chain == table.chains.end()) return fail(notFound("flush chain {}: no such chain", name));
        chain->second.rules.clear();
        break;
      }
      case NftCommand::Kind::AddRule: {
        auto chain = table.chains.find(name);
        if (chain == table.chains.end()) return fail(notFound("add rule to chain {}: no such chain", name));
        if (!isNote(command.text)) {
          if (auto ok = checkReferencesExist(table, command.text, fmt::format("rule \"{}\"", command.text));
              !ok)
            return ok;
        }
        chain->second.rules.push_back(command.text);
        break;
      }
      case NftCommand::Kind::DeleteElement: {
        auto set = table.sets.find(name);
        if (set == table.sets.end()) return fail(notFound("delete element of {}: no such set", name));
        if (set->second.elements.erase(command.key) == 0)
          return fail(notFound("delete element {} of {}: not there", command.key, name));
        break;
      }
      case NftCommand::Kind::AddElement: {
        auto set = table.sets.find(name);
        if (set == table.sets.end()) return fail(notFound("add element to {}: no such set", name));
        if (auto ok =
                checkReferencesExist(table, command.element.value, fmt::format("element {}", command.key));
            !ok)
          return ok;
        if (!set->second.elements.emplace(command.key, command.element).second)
          return fail(conflict("add element {} to {}: exists", command.key, name));
        break;
      }
      case NftCommand::Kind::DeleteChain: {
        auto chain = table.chains.find(name);
        if (chain == table.chains.end()) return fail(notFound("delete chain {}: no such chain", name));
        if (!chain->second.rules.empty()) return fail(conflict("delete chain {}: it still has rules", name));
        if (referencedAnywhere(
                table, name, [](const References& r) -> const auto& { return r.chains; }))
          return fail(conflict("delete chain {}: still referred to", name));
        table.chains.erase(chain);
        break;
      }
      case NftCommand::Kind::DeleteSet:
        if (!table.sets.contains(name)) return fail(notFound("delete set {}: no such set", name));
        if (referencedAnywhere(
                table, name, [](const References& r) -> const auto& { return r.sets; }))
          return fail(conflict("delete set {}: still referred to", name));
        table.sets.erase(name);
        break;
      case NftCommand::Kind::DeleteCounter:
        if (!table.counters.contains(name)) return fail(notFound("delete counter {}: no such counter", name));
        if (referencedAnywhere(
                table, name, [](const References& r) -> const auto& { return r.counters; }))
          return fail(conflict("delete counter {}: still referred to", name));
        table.counters.erase(name);
        break;
    }
  }
  return {};
}

}  // namespace corral::net
