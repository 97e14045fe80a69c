@dns @relay-env @fault-discard_mail
Feature: The route to a domain comes from its MX records
  RFC 5321 5.1: the MX records of the recipient's domain name the hosts to try, most preferred
  (lowest number) first, the next ones when it cannot be reached; a domain with no MX but an
  address record is its own mail host (implicit MX); a null MX (RFC 7505) or a domain that does
  not exist means the mail cannot be delivered, which the sender is told at once.

  @port-submission @rfc5321-5.1 @fault-relay_ignores_mx_preference @must
  Scenario: The most preferred MX gets the mail
    Given a remote domain with these MX records:
      | preference | host |
      | 20         | mx2  |
      | 10         | mx1  |
    And an authenticated client on the submission port
    When the client sends a message to {remote}
    Then the reply code is 250
    And the harness's MX receives the message within 15 seconds
    And the message reached the harness's MX at mx1

  @port-submission @rfc5321-5.1 @fault-relay_first_mx_only @must
  Scenario: When the most preferred MX is down, the next one gets the mail
    Given a remote domain with these MX records:
      | preference | host        |
      | 10         | unreachable |
      | 20         | mx2         |
    And an authenticated client on the submission port
    When the client sends a message to {remote}
    Then the reply code is 250
    And the harness's MX receives the message within 15 seconds
    And the message reached the harness's MX at mx2

  @port-submission @rfc5321-5.1 @fault-relay_no_implicit_mx @must
  Scenario: A domain with no MX gets the mail at its address record
    Given a remote domain with no MX but an address record at the harness
    And an authenticated client on the submission port
    When the client sends a message to {remote}
    Then the reply code is 250
    And the harness's MX receives the message within 15 seconds

  @port-submission @rfc7505-4.2 @fault-relay_no_bounce @fault-dsn_plain_bounces @must
  Scenario: Mail for a null-MX domain is refused or bounced at once
    Given a remote domain with a null MX
    And an authenticated client on the submission port
    When the client tries to send a message to {remote}
    Then {first} is told the remote recipient cannot be reached, at RCPT or by a delivery status notification within 15 seconds

  @port-submission @rfc5321-5.1 @fault-relay_no_bounce @fault-dsn_plain_bounces @must
  Scenario: Mail for a domain that does not exist is refused or bounced
    Given a remote domain that does not exist
    And an authenticated client on the submission port
    When the client tries to send a message to {remote}
    Then {first} is told the remote recipient cannot be reached, at RCPT or by a delivery status notification within 15 seconds
