// An nftables table as structured data (counters, sets and maps with their elements, chains with their
// rules), rendered whole for a full load and diffed into one batch of commands for an incremental one.
// Pure: the unit tests replay a delta on the model (applyDelta) and check it reaches the same table as a
// whole render; net/nft.h builds the tables corral loads and applies the batches through libnftables.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace corral::net {

struct NftElement {
  std::string value;    // a map's value ("jump sg-egress-web", "10.0.1.5"); empty in a set
  std::string comment;  // shown in nft's listing next to the element; may be empty
  bool operator==(const NftElement&) const = default;
};

// A named set (valueType empty) or map (valueType "verdict", "ipv4_addr", ...).
struct NftSet {
  std::string keyType;  // "ipv4_addr", "ipv4_addr . inet_proto . inet_service"
  std::string valueType;
  // Each element carries its own counter (`counter;` in the declaration): a lookup that matches counts the
  // packet on the element. nft keeps the count as long as the element stays.
  bool counter = false;
  std::map<std::string, NftElement> elements;  // by key as nft spells it ("10.0.1.5", "tcp . 8080")
  bool isMap() const { return !valueType.empty(); }
  bool operator==(const NftSet&) const = default;
};

struct NftChain {
  std::string hook;  // "type filter hook forward priority filter; policy accept;"; empty for a regular chain
  // Rules as nft spells them; a line starting with '#' is a note for the reader (kept in the text, not a
  // kernel object).
  std::vector<std::string> rules;
  bool operator==(const NftChain&) const = default;
};

struct NftTable {
  std::string family;                  // "inet", "bridge"
  std::string name;                    // "corral"
  std::string header;                  // the comment line above the table in the rendered text
  std::set<std::string> counters;      // named counters ("counter spoof-crlv0badf00d-ip { }")
  std::map<std::string, NftSet> sets;  // sets and maps, by name
  std::map<std::string, NftChain> chains;
  bool operator==(const NftTable&) const = default;
};

// The whole table as nft's input language: header, counters, sets and maps, regular chains, base chains.
std::string renderTable(const NftTable& table);

// One command of a delta. Elements of a map carry their value; a rule may be a note ('#').
struct NftCommand {
  enum class Kind {
    AddCounter,     // name
    AddSet,         // name, set (declaration: types only)
    AddChain,       // name, hook
    FlushChain,     // name
    AddRule,        // name (chain), text
    DeleteElement,  // name (set or map), key
    AddElement,     // name, key, element
    DeleteChain,    // name (flushed first)
    DeleteSet,      // name
    DeleteCounter,  // name
  };
  Kind kind = Kind::AddRule;
  std::string name;
  std::string text;  // AddChain: the hook line; AddRule: the rule
  std::string key;
  NftElement element;
  NftSet set;  // AddSet: the types
  bool operator==(const NftCommand&) const = default;
};

// What turns one table into another, in an order nft accepts (nothing refers to a chain, set or counter
// that does not exist yet or any more): counters, sets and chains are declared first, changed chains
// flushed and refilled, elements deleted then added, and only then are chains, sets and counters that are
// no longer wanted deleted. Applied as one transaction, so the kernel goes from the old table to the new
// one at once.
struct NftDelta {
  std::string family;
  std::string table;
  std::vector<NftCommand> commands;
  bool empty() const { return commands.empty(); }
  std::string text() const;  // the nft batch ("add element inet corral sg-egress { ... }\n" ...)
};

// The delta from `before` to `after`; nullopt when only a whole replace can get there (another table, a
// set whose types changed, a base chain whose hook changed). Equal tables: an empty delta.
std::optional<NftDelta> diffTables(const NftTable& before, const NftTable& after);

// The incremental planner's two moves for NICs coming and going, without the whole table: `part` is the
// table built for those NICs alone from the same model (vpcFirewall or portGuardTable over them), so its
// elements are theirs, and so are the regular chains its elements jump to that `table` does not hold yet.
// - addPartDelta: the delta that adds `part` to `table` (its elements, its counters, and the chains its
//   elements need that are new);
// - removePartDelta: the delta that takes `part` (NICs `table` holds) out of `table` (its elements and
//   counters, and the chains only its elements jumped to).
// Every other chain of `part` must be in `table` as it is, and every set with the same types, else the
// part does not fit (the model changed in more than these NICs; a chain of the part holds a note about a
// NIC, which only the whole plan can take out again): nullopt,
// and the caller plans the table whole. Applying the delta gives what a whole plan with (without) the
// NICs gives; the unit tests check that on random sequences.
std::optional<NftDelta> addPartDelta(const NftTable& table, const NftTable& part);
std::optional<NftDelta> removePartDelta(const NftTable& table, const NftTable& part);

// Replays `delta` on `table` as nft would, refusing what nft would refuse (a reference to a missing chain,
// set or counter, deleting something still referred to, adding an element whose key exists, deleting one
// that does not). The unit tests' model of the kernel.
Status applyDelta(NftTable& table, const NftDelta& delta);

}  // namespace corral::net
