@dns @relay-env
Feature: A receiving server may check its client in the DNS
  Many MX hosts refuse clients whose address has no forward-confirmed reverse DNS: a PTR name
  that resolves back to the address. Only for targets whose profile says they check
  (relay.checks_client_dns); the harness's DNS gives 127.0.0.1 a confirmed name and
  127.0.0.66 none. Likewise a receiving server may refuse a sender whose domain could not take
  a reply: one with neither MX nor address records (relay.checks_sender_domain).

  @port-smtp @fcrdns @rfc8601-3 @fault-relay_no_fcrdns @should
  Scenario: A client without reverse DNS is refused on port 25
    Given a client connected to the smtp port from an address without reverse DNS
    When the client says EHLO
    Then mail from {sender} to {first} is refused before DATA

  @port-smtp @sender-domain @rfc5321-3.6.2 @fault-relay_no_sender_check @should
  Scenario: A sender in a domain that does not exist is refused on port 25
    Given a client connected to the smtp port
    When the client says EHLO
    Then mail from {nowhere} to {first} is refused before DATA
