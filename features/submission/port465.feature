@submission
Feature: Port 465 submissions: implicit TLS, then AUTH
  Submission over TLS from the first byte (RFC 8314 section 3.3), with the same AUTH policy as
  port 587.

  @port-submissions @rfc8314-3.3 @fault-submissions_plaintext @must
  Scenario: TLS starts with the first byte and the greeting comes inside it
    Given a client connected to the submissions port
    Then the reply code is 220
    And TLS is active

  @port-submissions @rfc8314-3.3 @fault-submissions_plaintext @must
  Scenario: A plain-text client gets no greeting
    Given a plain-text client connected to the submissions port
    Then no plain-text greeting arrives

  @port-submissions @rfc4954-4 @fault-submissions_plaintext @fault-auth_not_advertised @must
  Scenario: EHLO offers AUTH and no STARTTLS
    Given a client connected to the submissions port
    When the client says EHLO
    Then the server advertises AUTH PLAIN
    And the server does not advertise STARTTLS

  @port-submissions @rfc4954-6 @fault-submissions_plaintext @fault-mail_without_auth @security @must
  Scenario: Mail is refused before AUTH
    Given a client connected to the submissions port
    When the client says EHLO
    Then mail from {first} to {second} is refused before DATA

  @port-submissions @rfc4954-4 @fault-submissions_plaintext @fault-discard_mail @must
  Scenario: An authenticated message is delivered
    Given an authenticated client on the submissions port
    When the client sends a message to {first}
    Then the reply code is 250
    And {first} receives the message
