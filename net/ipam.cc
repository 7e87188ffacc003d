// Per-subnet address allocation with AWS's five reserved addresses, and the lease objects that hand an
// address back when dropped.
#include "net/ipam.h"

#include <fmt/format.h>

namespace corral::net {

// ---- IpLease ----

IpLease::IpLease(IpLease&& other) noexcept : pool_(std::move(other.pool_)), address_(other.address_) {
  other.pool_.reset();
}

IpLease& IpLease::operator=(IpLease&& other) noexcept {
  if (this != &other) {
    giveBack();
    pool_ = std::move(other.pool_);
    other.pool_.reset();
    address_ = other.address_;
  }
  return *this;
}

IpLease::~IpLease() {
  giveBack();
}

Ipv4Address IpLease::keep() {
  pool_.reset();
  return address_;
}

void IpLease::giveBack() {
  // The pool may be gone already (the weak_ptr then fails to lock); a lease must never touch freed memory.
  if (std::shared_ptr<SubnetIpam*> pool = pool_.lock()) {
    // The address can only be missing if someone released it by hand; nothing is left to give back then.
    (void)(*pool)->release(address_);
  }
  pool_.reset();
}

// ---- SubnetIpam ----

namespace {

// The first address after the four reserved at the bottom (network, router, DNS, future use).
constexpr uint32_t kReservedAtBottom = 4;
// Those four plus the broadcast address.
constexpr uint64_t kReservedCount = 5;

}  // namespace

SubnetIpam::SubnetIpam(Cidr subnet) : subnet_(subnet), self_(std::make_shared<SubnetIpam*>(this)) {}

Ipv4Address SubnetIpam::router() const {
  return Ipv4Address(subnet_.network().value() + 1);
}

Ipv4Address SubnetIpam::dns() const {
  return Ipv4Address(subnet_.network().value() + 2);
}

uint64_t SubnetIpam::usableCount() const {
  return subnet_.size() > kReservedCount ? subnet_.size() - kReservedCount : 0;
}

uint64_t SubnetIpam::freeCount() const {
  return usableCount() - allocated_.size();
}

std::vector<Ipv4Address> SubnetIpam::allocated() const {
  std::vector<Ipv4Address> addresses;
  addresses.reserve(allocated_.size());
  for (uint32_t value : allocated_) addresses.emplace_back(value);
  return addresses;
}

namespace {

// Why an address of `subnet` is never handed out, or empty if it may be.
std::string_view reservationOf(const Cidr& subnet, Ipv4Address address) {
  uint64_t offset = uint64_t{address.value()} - subnet.network().value();
  if (offset == 0) return "the network address";
  if (address == subnet.broadcast()) return "the broadcast address";
  if (offset == 1) return "the router";
  if (offset == 2) return "DNS";
  if (offset == 3) return "future use";
  return {};
}

}  // namespace

bool SubnetIpam::isReserved(Ipv4Address address) const {
  return subnet_.contains(address) && !reservationOf(subnet_, address).empty();
}

bool SubnetIpam::isAllocated(Ipv4Address address) const {
  return allocated_.contains(address.value());
}

Result<IpLease> SubnetIpam::allocate() {
  if (usableCount() == 0 || allocated_.size() >= usableCount()) {
    return fail(
        conflict("subnet {} is full: all {} usable addresses are allocated", subnet_.str(), usableCount()));
  }
  // allocated_ is ordered, so walking it from the first usable address finds the lowest gap.
  uint32_t candidate = subnet_.network().value() + kReservedAtBottom;
  for (auto it = allocated_.lower_bound(candidate); it != allocated_.end() && *it == candidate; ++it) {
    ++candidate;
  }
  allocated_.insert(candidate);
  return IpLease(self_, Ipv4Address(candidate));
}

namespace {

Status checkAssignable(const Cidr& subnet, const std::set<uint32_t>& allocated, Ipv4Address wanted) {
  if (!subnet.contains(wanted)) {
    return fail(invalidField("address", "{} is outside the subnet {}", wanted.str(), subnet.str()));
  }
  if (std::string_view reservation = reservationOf(subnet, wanted); !reservation.empty()) {
    return fail(invalidField("address", "{} is reserved for {} in subnet {}", wanted.str(), reservation,
                             subnet.str()));
  }
  if (allocated.contains(wanted.value())) {
    return fail(conflict("{} is already allocated in subnet {}", wanted.str(), subnet.str()));
  }
  return {};
}

}  // namespace

Result<IpLease> SubnetIpam::allocate(Ipv4Address wanted) {
  if (Status ok = checkAssignable(subnet_, allocated_, wanted); !ok) return fail(std::move(ok.error()));
  allocated_.insert(wanted.value());
  return IpLease(self_, wanted);
}

Status SubnetIpam::restore(Ipv4Address address) {
  if (Status ok = checkAssignable(subnet_, allocated_, address); !ok) {
    return fail(std::move(ok.error()).wrap("restore address"));
  }
  allocated_.insert(address.value());
  return {};
}

Status SubnetIpam::release(Ipv4Address address) {
  if (allocated_.erase(address.value()) == 0) {
    return fail(notFound("{} is not allocated in subnet {}", address.str(), subnet_.str()));
  }
  return {};
}

}  // namespace corral::net
