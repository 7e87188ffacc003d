// The load balancer vocabulary's names: each enum to and from the text the API and the store use.
#include "schema/load_balancer.h"

#include <fmt/format.h>

namespace corral::schema {

std::string_view loadBalancerTypeName(LoadBalancerType t) {
  return t == LoadBalancerType::Network ? "network" : "application";
}

std::string_view listenerProtocolName(ListenerProtocol p) {
  return p == ListenerProtocol::Tcp ? "tcp" : "http";
}

std::string_view listenerActionTypeName(ListenerActionType a) {
  return a == ListenerActionType::FixedResponse ? "fixed-response" : "forward";
}

std::string_view requestPartName(RequestPart p) {
  switch (p) {
    case RequestPart::Path:
      return "path";
    case RequestPart::Method:
      return "method";
    case RequestPart::Header:
      return "header";
    case RequestPart::Body:
      return "body";
  }
  return "path";
}

Result<LoadBalancerType> parseLoadBalancerType(std::string_view text, std::string_view field) {
  for (auto t : {LoadBalancerType::Application, LoadBalancerType::Network}) {
    if (text == loadBalancerTypeName(t)) return t;
  }
  return fail(invalidField(std::string(field),
                           "\"{}\" is not a load balancer type (expected application or network)", text));
}

Result<ListenerProtocol> parseListenerProtocol(std::string_view text, std::string_view field) {
  for (auto p : {ListenerProtocol::Http, ListenerProtocol::Tcp}) {
    if (text == listenerProtocolName(p)) return p;
  }
  return fail(
      invalidField(std::string(field), "\"{}\" is not a listener protocol (expected http or tcp)", text));
}

Result<ListenerActionType> parseListenerActionType(std::string_view text, std::string_view field) {
  for (auto a : {ListenerActionType::Forward, ListenerActionType::FixedResponse}) {
    if (text == listenerActionTypeName(a)) return a;
  }
  return fail(
      invalidField(std::string(field), "\"{}\" is not an action (expected forward or fixed-response)", text));
}

Result<RequestPart> parseRequestPart(std::string_view text, std::string_view field) {
  for (auto p : {RequestPart::Path, RequestPart::Method, RequestPart::Header, RequestPart::Body}) {
    if (text == requestPartName(p)) return p;
  }
  return fail(invalidField(std::string(field),
                           "\"{}\" is not a request part (expected path, method, header or body)", text));
}

}  // namespace corral::schema
