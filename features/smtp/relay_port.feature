@smtp
Feature: Port 25 takes mail for hosted domains and is no open relay
  Server-to-server SMTP (RFC 5321): mail for the target's own domains is accepted without
  authentication, mail for any other domain is refused unless the client authenticated.

  @port-smtp @rfc5321-4.3.1 @fault-greeting_refused @must
  Scenario: The greeting is a 220 reply
    Given a client connected to the smtp port
    Then the reply code is 220

  @port-smtp @rfc3207-4 @fault-smtp_without_tls @should
  Scenario: EHLO offers STARTTLS
    Given a client connected to the smtp port
    When the client says EHLO
    Then the reply code is 250
    And the server advertises STARTTLS

  @port-smtp @rfc5321-3.3 @fault-discard_mail @must
  Scenario: Mail for a local recipient is accepted without AUTH and delivered
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends a message to {first}
    Then the reply code is 250
    And {first} receives the message

  @port-smtp @rfc5321-3.6.2 @fault-open_relay @must
  Scenario: Mail for a foreign domain is refused without AUTH
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{foreign}>"
    Then the reply is a refusal

  @port-smtp @rfc3463-3.2 @fault-accept_unknown_users @should
  Scenario: An unknown local user is refused with 550 5.1.1
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{unknown}>"
    Then the reply is 550 5.1.1

  @port-smtp @rfc5321-4.5.1 @fault-no_postmaster @must
  Scenario: The postmaster mailbox is accepted, with and without a domain
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<postmaster@{domain}>"
    Then the reply code is 250
    When the client sends "RCPT TO:<Postmaster>"
    Then the reply code is 250

  @port-smtp @rfc5321-4.1.1.1 @fault-helo_refused @must
  Scenario: HELO is answered too
    Given a client connected to the smtp port
    When the client sends "HELO harness.test"
    Then the reply code is 250

  @port-smtp @rfc5321-4.5.3.1.8 @fault-recipient_limit_50 @must
  Scenario: One transaction takes at least 100 recipients
    Given a client connected to the smtp port
    When the client says EHLO
    And the client sends "MAIL FROM:<{sender}>"
    And the client sends "RCPT TO:<{first}>" 100 times
    Then every one of those replies was 250
