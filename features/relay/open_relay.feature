@relay
Feature: Relay to other domains only for authenticated clients
  A server relays mail to domains it does not host only for clients that authenticated
  (RFC 5321 3.6.2, RFC 6409): without AUTH, port 25 takes mail for its own domains only and
  the submission ports take none. With AUTH, mail for another domain is handed to that
  domain's MX, found in the DNS: here the harness's DNS, which names the harness's own MX.

  @port-smtp @rfc5321-3.6.2 @fault-open_relay @security @must
  Scenario: Port 25 without AUTH refuses the remote domain
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{foreign}>"
    Then the reply is a refusal

  @port-submission @rfc6409-4.3 @fault-mail_without_auth @security @must
  Scenario: Port 587 without AUTH takes no mail at all
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    Then mail from {first} to {second} is refused before DATA

  @port-submission @relay-env @rfc6409-3.1 @fault-discard_mail @must
  Scenario: Port 587 after AUTH relays to the remote domain's MX
    Given a remote domain whose MX is the harness
    And an authenticated client on the submission port
    When the client sends a message to {remote}
    Then the reply code is 250
    And the harness's MX receives the message within 15 seconds

  @port-submissions @relay-env @rfc8314-3.3 @fault-discard_mail @fault-submissions_plaintext @must
  Scenario: Port 465 after AUTH relays to the remote domain's MX
    Given a remote domain whose MX is the harness
    And an authenticated client on the submissions port
    When the client sends a message to {remote}
    Then the reply code is 250
    And the harness's MX receives the message within 15 seconds

  @port-smtp @needs-AUTH @relay-env @rfc4954-1 @fault-discard_mail @should
  Scenario: Port 25 after STARTTLS and AUTH relays too
    Given a remote domain whose MX is the harness
    And an authenticated client on the smtp port
    When the client sends a message to {remote}
    Then the reply code is 250
    And the harness's MX receives the message within 15 seconds
