@submission
Feature: Port 587 submission: STARTTLS first, then AUTH, then mail
  Message submission (RFC 6409) with the policy of RFC 8314 section 3.3: credentials never travel
  in clear text, and nothing is accepted from a client that has not authenticated.

  @port-submission @rfc3207-4 @rfc4954-4 @fault-auth_before_tls @security @should
  Scenario: Before STARTTLS, EHLO offers STARTTLS and no AUTH
    Given a client connected to the submission port
    When the client says EHLO
    Then the server advertises STARTTLS
    And the server does not advertise AUTH

  @port-submission @rfc3207-4 @fault-auth_before_tls @security @should
  Scenario: AUTH before STARTTLS is refused
    Given a client connected to the submission port
    When the client says EHLO
    And the client sends "AUTH PLAIN"
    Then the reply is a permanent failure

  @port-submission @rfc4954-4 @fault-starttls_after_tls @fault-auth_not_advertised @must
  Scenario: After STARTTLS, EHLO offers AUTH PLAIN and no STARTTLS
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    Then the server advertises AUTH PLAIN
    And the server does not advertise STARTTLS

  @port-submission @rfc4954-6 @fault-mail_without_auth @must
  Scenario: Mail is refused before AUTH
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    Then mail from {first} to {second} is refused before DATA

  @port-submission @rfc4954-6 @fault-any_password @must
  Scenario: A wrong password is refused with 535 5.7.8
    Given a client connected to the submission port
    When the client says EHLO
    And the client starts TLS
    And the client says EHLO
    And the client authenticates with PLAIN as the first account with a wrong password
    Then the reply is 535 5.7.8

  @port-submission @rfc4954-4 @rfc4616-2 @fault-discard_mail @must
  Scenario: AUTH PLAIN, then a message for a local recipient is delivered
    Given an authenticated client on the submission port
    When the client sends a message to {second}
    Then the reply code is 250
    And {second} receives the message
