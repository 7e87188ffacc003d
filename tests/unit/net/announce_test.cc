// The gratuitous ARP an attach sends (net/announce.h), read back by the frame decoder a trace uses.
#include "net/announce.h"

#include <gtest/gtest.h>

#include "net/frames.h"

namespace corral::net {
namespace {

TEST(GratuitousArp, IsABroadcastRequestForTheSendersOwnAddress) {
  auto frame = gratuitousArp("02:c0:1a:2b:3c:4d", "10.0.1.12");
  ASSERT_TRUE(frame.has_value()) << frame.error().message();
  EXPECT_EQ(frame->size(), 42u);
  DecodedFrame decoded = decodeFrame(*frame);
  ASSERT_TRUE(decoded.ethernet.has_value()) << decoded.note;
  EXPECT_EQ(decoded.ethernet->destination, "ff:ff:ff:ff:ff:ff");
  EXPECT_EQ(decoded.ethernet->source, "02:c0:1a:2b:3c:4d");
  EXPECT_EQ(decoded.ethernet->etherType, 0x0806);
  ASSERT_TRUE(decoded.arp.has_value()) << decoded.note;
  EXPECT_EQ(decoded.arp->operation, 1) << "a request, as Linux's arp_notify sends";
  EXPECT_EQ(decoded.arp->senderMac, "02:c0:1a:2b:3c:4d");
  EXPECT_EQ(decoded.arp->senderIp, "10.0.1.12");
  EXPECT_EQ(decoded.arp->targetIp, "10.0.1.12") << "gratuitous: it asks for its own address";
  EXPECT_EQ(decoded.arp->targetMac, "00:00:00:00:00:00");
}

TEST(GratuitousArp, RefusesWhatIsNotAMacOrAnAddress) {
  for (const char* mac :
       {"", "02:c0:1a:2b:3c", "02:c0:1a:2b:3c:4d:5e", "02-c0-1a-2b-3c-4d", "02:c0:1a:2b:3c:zz"}) {
    auto frame = gratuitousArp(mac, "10.0.1.12");
    ASSERT_FALSE(frame.has_value()) << mac;
    EXPECT_EQ(frame.error().field(), "mac") << mac;
  }
  auto frame = gratuitousArp("02:c0:1a:2b:3c:4d", "10.0.1");
  ASSERT_FALSE(frame.has_value());
  EXPECT_EQ(frame.error().field(), "address");
}

}  // namespace
}  // namespace corral::net
